"""Configuration: environment variables with prefix ``SLOTSYNC_`` (pydantic-settings).

The only place that reads the environment. Unset database/Redis URLs select the
embedded mode (SQLite file, in-process tasks) so that ``make demo`` needs nothing.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
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
    find_max_results: int = Field(
        default=200,
        ge=1,
        le=1000,
        description="$find answers at most this many appointments when _count is not given",
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
        default=7, ge=1, le=90, description="initial load chunk: one schedule x this many days"
    )

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
