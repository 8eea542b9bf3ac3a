"""Configuration: environment variables with prefix ``SLOTSYNC_`` (pydantic-settings).

The only place that reads the environment. Unset database/Redis URLs select the
embedded mode (SQLite file, in-process tasks) so that ``make demo`` needs nothing.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLOTSYNC_", env_file=None, extra="ignore")

    data_dir: Path = Field(default=Path(".slotsync"), description="where the SQLite cache lives")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset = SQLite file in data_dir"
    )
    redis_url: str | None = Field(
        default=None, description="Celery broker and locks; unset = embedded in-process tasks"
    )
    ehr_base_url: str = "http://127.0.0.1:8100/fhir"
    ehr_fhir_version: Literal["stu3", "r4"] = "stu3"
    ehr_timeout_seconds: float = 30.0
    rules_path: Path | None = Field(
        default=None, description="business-rules file; unset = the bundled multi-clinic example"
    )
    proposal_secret: SecretStr = Field(
        default=SecretStr("development-proposal-secret-change-me"),
        description="HMAC key that signs $find appointment ids so any replica can rebuild them",
    )
    stale_warning_seconds: int = Field(
        default=26 * 3600, ge=1, description="$find warns when data is older than this"
    )
    stale_refuse_seconds: int = Field(
        default=0, ge=0, description="$find answers 503 when data is older than this; 0 = never"
    )
    horizon_days: int = Field(default=30, ge=1, le=730)
    daily_load_at: str = Field(
        default="03:00",
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="UTC HH:MM of the daily resync",
    )
    load_window_days: int = Field(
        default=30, ge=1, le=90, description="days per load chunk of a few schedules"
    )
    load_bulk_window_days: int = Field(
        default=1, ge=1, le=90, description="days per load chunk of every schedule"
    )
    load_chunking: Literal["auto", "schedule", "window"] = Field(
        default="auto",
        description="full-load unit: (schedule group x window) chunks, every schedule x window,"
        " or auto: by schedule unless STU3 $prefetch cannot name some schedules",
    )
    load_schedules_per_chunk: int = Field(
        default=4, ge=1, le=200, description="schedules fetched together in one load chunk"
    )

    # -- EHR access --------------------------------------------------------------
    ehr_page_size: int | None = Field(default=None, ge=1, description="_count asked of the EHR")
    ehr_retry_attempts: int = Field(
        default=5, ge=1, le=20, description="tries per EHR request (transient failures)"
    )
    ehr_prefetch_method: Literal["GET", "POST"] = "GET"
    ehr_auth: Literal["none", "bearer", "smart"] = "none"
    ehr_bearer_token: SecretStr | None = None
    ehr_client_id: str | None = Field(default=None, description="SMART backend services client")
    ehr_token_url: str | None = None
    ehr_private_key: SecretStr | None = Field(default=None, description="PEM of the JWT key")
    ehr_private_key_path: Path | None = None
    ehr_key_id: str | None = None
    ehr_jwt_alg: Literal["RS384", "ES384"] = "RS384"
    ehr_scope: str = "system/Slot.read system/Schedule.read system/Practitioner.read"

    # -- notifications, polling, workers ------------------------------------------
    webhook_secret: SecretStr | None = Field(
        default=None, description="shared secret the EHR sends with every notification"
    )
    public_base_url: str | None = Field(
        default=None, description="our URL as the EHR sees it; unset = no subscription, poll"
    )
    subscription_topic: str = Field(
        default="http://slotsync.example/fhir/SubscriptionTopic/slot-changes",
        description="R4 backport topic canonical of slot/schedule changes",
    )
    heartbeat_seconds: int = Field(default=60, ge=5, description="heartbeat period asked for")
    heartbeat_grace: float = Field(
        default=2.5, ge=1.0, description="feed is stale after this many silent periods"
    )
    poll_interval_seconds: int = Field(default=60, ge=5, description="polling while stale")
    poll_near_days: int = Field(default=7, ge=1, description="STU3 poll: re-prefetch this far")
    watchdog_seconds: int = Field(default=15, ge=1, description="how often the watchdog looks")
    subscription_renew_seconds: int = Field(default=3600, ge=60)
    refresh_coalesce_seconds: int = Field(
        default=300, ge=1, description="expiry of a queued refresh's dedupe key"
    )
    schedule_lock_seconds: int = Field(
        default=60, ge=5, description="expiry of a schedule lock (extended while pages arrive)"
    )
    broker_visibility_timeout_seconds: int = Field(
        default=3600, ge=5, description="unacked task redelivery; longer than any task"
    )
    task_time_limit_seconds: int = Field(default=900, ge=5, description="hard limit per task")
    task_max_retries: int = Field(
        default=6, ge=0, le=20, description="task retries after transient failures"
    )
    worker_queues: str = Field(default="sync,load", description="queues a worker consumes")

    @model_validator(mode="after")
    def _visibility_outlasts_tasks(self) -> Settings:
        # A task still running when its message becomes visible again would run twice at once.
        if self.broker_visibility_timeout_seconds <= self.task_time_limit_seconds:
            raise ValueError(
                "BROKER_VISIBILITY_TIMEOUT_SECONDS must be longer than TASK_TIME_LIMIT_SECONDS"
            )
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'cache.sqlite3').resolve()}"

    @property
    def effective_rules_path(self) -> Path:
        """The configured rules file, or the bundled example matching the sandbox EHR."""
        if self.rules_path:
            return self.rules_path
        return Path(__file__).resolve().parent.parent / "rules" / "examples" / "multi-clinic.yaml"

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: tasks run in process."""
        return not self.redis_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
