"""Configuration: environment variables with prefix ``SLOTSYNC_`` (pydantic-settings).

The only place that reads the environment. Unset database/Redis URLs select the
embedded mode (SQLite file, in-process tasks) so that ``make demo`` needs nothing.
Secrets may also come as files (compose secrets): ``slotsync_webhook_secret`` and so
on in ``SLOTSYNC_SECRETS_DIR`` (default ``/run/secrets``), read by pydantic-settings'
own secrets source; an environment variable of the same name wins over the file.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from sqlalchemy.engine import make_url

# Development defaults: they make `make demo` work out of the box and are refused in production.
DEV_WEBHOOK_SECRET = "dev-webhook-secret-change-me"
DEV_PROPOSAL_SECRET = "development-proposal-secret-change-me"
DEMO_API_KEY = "slotsync-demo-key"
ADMIN_SCOPE = "slotsync/admin"
METRICS_SCOPE = "slotsync/metrics"
DEMO_SCOPES = [
    "system/Appointment.read",
    "system/Appointment.write",
    "system/Patient.write",
    "system/Coverage.write",
    ADMIN_SCOPE,
    METRICS_SCOPE,
]
MIN_SECRET_LENGTH = 24
DEV_EHR_BASE_URL = "http://127.0.0.1:8100/fhir"
# Where compose mounts secrets; read before Settings exists, so not a setting itself.
SECRETS_DIR_VARIABLE = "SLOTSYNC_SECRETS_DIR"
DEFAULT_SECRETS_DIR = Path("/run/secrets")
# Fragments of the placeholders that example files and older instructions carried
# ("change-me-to-a-long-random-password", "replace-with-a-random-secret-..."): a
# value containing one was copied, not generated.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "replace-with", "replace-me")


class UnsafeSettings(RuntimeError):
    """Production settings that must not be served (raised as is, never echoing secrets)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLOTSYNC_", env_file=None, extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """pydantic-settings' order (arguments, environment, secret files), with the
        secrets directory taken from ``SLOTSYNC_SECRETS_DIR`` and left out when absent."""
        if isinstance(file_secret_settings, SecretsSettingsSource) and (
            file_secret_settings.secrets_dir is not None  # Settings(_secrets_dir=...)
        ):
            return init_settings, env_settings, dotenv_settings, file_secret_settings
        return init_settings, env_settings, dotenv_settings, *secret_files(settings_cls)

    data_dir: Path = Field(default=Path(".slotsync"), description="where the SQLite cache lives")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset = SQLite file in data_dir"
    )
    redis_url: str | None = Field(
        default=None, description="Celery broker and locks; unset = embedded in-process tasks"
    )
    database_password: SecretStr | None = Field(
        default=None,
        description="password put into DATABASE_URL (replacing any there); a secret file in"
        " compose, shared with PostgreSQL's POSTGRES_PASSWORD_FILE",
    )
    redis_password: SecretStr | None = Field(
        default=None,
        description="password put into REDIS_URL (replacing any there); a secret file in"
        " compose, shared with Redis' requirepass",
    )
    ehr_base_url: str = DEV_EHR_BASE_URL
    ehr_fhir_version: Literal["stu3", "r4"] = "stu3"
    ehr_timeout_seconds: float = 30.0
    ehr_booking: Literal["auto", "operations", "appointment"] = Field(
        default="auto",
        description="how holds and bookings reach the EHR: operations = $hold/$book,"
        " appointment = a pending or booked POST Appointment (re-checked first),"
        " auto = what the EHR's CapabilityStatement declares (operations where it lists"
        " $hold and $book; before it is read: operations for stu3, appointment for r4)",
    )
    ehr_mark_slots_busy: bool = Field(
        default=False,
        description="on the appointment booking path: also write each booked Slot busy at the"
        " EHR (and free again when we cancel), for servers whose other clients read only"
        " Slot.status; the EHR must allow Slot updates",
    )
    rules_path: Path | None = Field(
        default=None,
        description="business-rules file; unset = the bundled multi-clinic example (development"
        " only: production refuses to start without one)",
    )
    proposal_secret: SecretStr = Field(
        default=SecretStr(DEV_PROPOSAL_SECRET),
        description="HMAC key that signs $find appointment ids so any replica can rebuild them",
    )
    find_max_results: int = Field(
        default=200,
        ge=1,
        le=1000,
        description="$find's page size when _count is not given (Bundle.total counts"
        " every match; the next link reads on)",
    )
    patient_cache_seconds: int = Field(
        default=300,
        ge=0,
        le=86_400,
        description="how long $find keeps a patient-reference's birth date and gender read"
        " from the EHR (0 = do not read: age and gender rules then skip such patients)",
    )
    patient_read_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="$find waits this long for the EHR's Patient"
    )
    find_warm_up: bool = Field(
        default=True,
        description="read every cached slot, then the offers, into memory at API start-up",
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
    ehr_subscriptions: bool = Field(
        default=True,
        description="subscribe at the EHR for change notifications (to PUBLIC_BASE_URL);"
        " false = rely on polling",
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
    reconcile_seconds: int = Field(
        default=900, ge=60, description="how often the near days are re-read whole (deletions)"
    )
    reconcile_days: int = Field(default=7, ge=1, description="how far the near reconcile reads")
    subscription_renew_seconds: int = Field(default=3600, ge=60)
    refresh_coalesce_seconds: int = Field(
        default=600,
        ge=1,
        description="expiry of a queued refresh's dedupe key: outlasts the longest wait in the"
        " queue, or every repeated notification queues a refresh again (a refresh drops it as"
        " soon as it starts, or fails)",
    )
    schedule_lock_seconds: int = Field(
        default=60, ge=5, description="expiry of a schedule lock (extended while pages arrive)"
    )
    task_time_limit_seconds: int = Field(default=300, ge=5, description="hard limit per task")
    broker_visibility_timeout_seconds: int | None = Field(
        default=None,
        ge=5,
        description="unacked task redelivery; unset = the task time limit + 60 s",
    )
    task_max_retries: int = Field(
        default=12,
        ge=0,
        le=50,
        description="retries of a task after transient failures (EHR, PostgreSQL, Redis);"
        " the one budget Celery and the in-process runner both use",
    )
    task_retry_base_seconds: float = Field(
        default=2.0, gt=0, description="first retry delay; doubles per retry, with jitter"
    )
    task_retry_max_seconds: float = Field(
        default=60.0, gt=0, description="longest delay between two retries of a task"
    )
    chunk_lease_seconds: int = Field(
        default=45,
        ge=5,
        description="a running chunk whose heartbeat is older than this lost its worker",
    )
    reaper_seconds: int = Field(
        default=15, ge=1, description="how often the reaper looks for lost, stuck or due work"
    )
    run_quiet_seconds: int = Field(
        default=30,
        ge=5,
        description="a run with nothing claimed for this long has its due chunks sent again",
    )
    run_stall_seconds: int = Field(
        default=180,
        ge=10,
        description="a run without progress for this long is failed and its rest replanned",
    )
    follow_up_max: int = Field(
        default=6, ge=0, le=20, description="follow-up resyncs of failed windows, at most"
    )
    follow_up_base_seconds: int = Field(
        default=15, ge=1, description="delay of the first follow-up; doubles per follow-up"
    )
    follow_up_max_seconds: int = Field(
        default=600, ge=1, description="longest delay before a follow-up resync"
    )
    ehr_refetch_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="reads of a window from its first page when the EHR changed while paging",
    )
    worker_queues: str = Field(default="sync,load", description="queues a worker consumes")

    @model_validator(mode="after")
    def _visibility_outlasts_tasks(self) -> Settings:
        # A task still running when its message becomes visible again would run twice at once.
        if (
            self.broker_visibility_timeout_seconds is not None
            and self.broker_visibility_timeout_seconds <= self.task_time_limit_seconds
        ):
            raise ValueError(
                "BROKER_VISIBILITY_TIMEOUT_SECONDS must be longer than TASK_TIME_LIMIT_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _stall_outlasts_retry_waits(self) -> Settings:
        # A run whose chunks all wait for their next try is quiet, not stuck.
        if self.run_stall_seconds <= self.task_retry_max_seconds + self.run_quiet_seconds:
            raise ValueError(
                "RUN_STALL_SECONDS must be longer than TASK_RETRY_MAX_SECONDS + RUN_QUIET_SECONDS"
            )
        return self

    @property
    def visibility_timeout_seconds(self) -> int:
        """Sized to the hard time limit: a dead worker's message comes back soon after."""
        if self.broker_visibility_timeout_seconds is not None:
            return self.broker_visibility_timeout_seconds
        return self.task_time_limit_seconds + 60

    hold_overlay_seconds: int = Field(
        default=300,
        ge=1,
        description="how long a held slot stays hidden when the EHR sends no Expires header",
    )
    hold_expiry_seconds: int = Field(
        default=15,
        ge=1,
        description="how often expired holds (pending Appointments, no $hold at the EHR)"
        " are looked for and cancelled at the EHR",
    )
    booked_overlay_seconds: int = Field(
        default=6 * 3600,
        ge=60,
        description="how long a booked slot stays hidden while waiting for the sync to see it busy",
    )

    # -- SMART Scheduling Links feed (see README "SMART Scheduling Links feed") --
    smart_path: str = Field(
        default="/smart/$bulk-publish",
        pattern=r"^(/[A-Za-z0-9._~-]+)*/\$bulk-publish$",
        description="URL path of the feed's manifest (ends in /$bulk-publish); its files"
        " are served under <path without $bulk-publish>files/",
    )
    smart_public: bool = Field(
        default=True,
        description="serve the feed without credentials; false = system/Slot.read needed",
    )
    smart_booking_link: str | None = Field(
        default=None,
        description="booking-deep-link of each free Slot: a URL into the consumer app with"
        " {slot_id} (feed Slot id) and/or {proposal_id} (the $find appointment id for"
        " $hold/$book) filled in; unset = no link",
    )
    smart_booking_phone: str | None = Field(
        default=None, description="booking-phone of each free Slot and Location phone"
    )
    smart_location_url: str | None = Field(
        default=None,
        description="Location.telecom url, {location_id} filled in; unset = public_base_url",
    )
    smart_slots_per_file: int = Field(
        default=50_000, ge=1, le=1_000_000, description="Slot files hold at most this many"
    )
    smart_max_age_seconds: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description="Cache-Control max-age of the feed, and how old its slots may grow"
        " before a refresh (a sync or a rules change refreshes at once)",
    )
    smart_busy_retention_hours: int = Field(
        default=48,
        ge=1,
        description="slots no longer offered stay in the feed as busy this long, so that"
        " _since readers learn of them",
    )

    # -- security (see README "Security model") ---------------------------------
    environment: Literal["development", "production"] = Field(
        default="development", description="production refuses development default secrets"
    )
    public_base_url: str = Field(
        default="http://127.0.0.1:8000", description="URL the EHR and consumers reach us at"
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="proxies whose X-Forwarded-For/-Proto `serve` believes: comma list of"
        " addresses or networks, '*' = any (`serve --forwarded-allow-ips` overrides)",
    )
    webhook_secret: SecretStr = Field(
        default=SecretStr(DEV_WEBHOOK_SECRET), description="shared secret of EHR notifications"
    )
    api_keys: dict[str, list[str]] = Field(
        default_factory=lambda: {DEMO_API_KEY: list(DEMO_SCOPES)},
        repr=False,
        description='JSON {"<key>": "scope scope" | ["scope", ...]}; keys are secrets',
    )
    jwt_jwks_url: str | None = Field(default=None, description="JWKS of the token issuer")
    jwt_shared_key: SecretStr | None = Field(default=None, description="HS256 key instead of JWKS")
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    jwks_cache_seconds: int = Field(default=300, ge=10, le=86_400)
    admin_scope: str = ADMIN_SCOPE
    metrics_scope: str = METRICS_SCOPE
    metrics_public: bool = Field(default=False, description="serve /metrics without credentials")
    auth_failure_limit: int = Field(
        default=20,
        ge=0,
        description="failed authentications per client address within the window before"
        " 429 with Retry-After (0 = never throttle)",
    )
    auth_failure_window_seconds: int = Field(default=60, ge=1, le=86_400)
    api_docs: Literal["auto", "public", "admin", "off"] = Field(
        default="auto",
        description="/openapi.json, /docs and /redoc: public; admin = /openapi.json for the"
        " admin credential only, no docs pages; off = none; auto = public in development,"
        " admin in production",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    max_json_depth: int = Field(default=64, ge=4, le=512)
    max_query_bytes: int = Field(default=8192, ge=256, le=65536, description="414 beyond")

    # -- observability ----------------------------------------------------------
    log_format: Literal["text", "json"] = "text"
    log_level: str = Field(default="INFO", pattern=r"^(?i:debug|info|warning|error|critical)$")
    metrics_multiproc_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("PROMETHEUS_MULTIPROC_DIR", "SLOTSYNC_METRICS_MULTIPROC_DIR"),
        description="prometheus-client multiprocess directory (several uvicorn workers)",
    )
    worker_metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Celery worker /metrics port; unset = none"
    )
    readiness_max_load_age_hours: float = Field(
        default=48.0, ge=0, description="/readyz fails when the last full load is older; 0 = off"
    )
    ops_stale_after_minutes: int = Field(
        default=120, ge=1, description="a schedule not confirmed for this long counts as stale"
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_scope_strings(cls, value: object) -> object:
        """Accept ``"scope scope"`` as well as ``["scope", "scope"]`` per key."""
        if isinstance(value, dict):
            return {k: v.split() if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            problems = production_problems(self)
            if problems:
                raise UnsafeSettings(
                    "refusing to run with SLOTSYNC_ENVIRONMENT=production: " + "; ".join(problems)
                )
        return self

    @property
    def effective_database_url(self) -> str:
        """The database URL with ``DATABASE_PASSWORD`` in it, or the embedded SQLite file."""
        if not self.database_url:
            return f"sqlite:///{(self.data_dir / 'cache.sqlite3').resolve()}"
        password = _secret(self.database_password)
        if not password:
            return self.database_url
        url = make_url(self.database_url).set(password=password)
        return url.render_as_string(hide_password=False)

    @property
    def effective_redis_url(self) -> str | None:
        """The broker URL with ``REDIS_PASSWORD`` in it; None in embedded mode."""
        if not self.redis_url:
            return None
        password = _secret(self.redis_password)
        return _redis_url_with_password(self.redis_url, password) if password else self.redis_url

    @property
    def effective_api_docs(self) -> str:
        if self.api_docs != "auto":
            return self.api_docs
        return "admin" if self.environment == "production" else "public"

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


def production_problems(settings: Settings) -> list[str]:
    """Every reason these settings are unsafe to expose; empty means fine."""
    problems = [
        problem
        for problem in (
            _secret_problem(
                "SLOTSYNC_WEBHOOK_SECRET", settings.webhook_secret, default=DEV_WEBHOOK_SECRET
            ),
            _secret_problem(
                "SLOTSYNC_PROPOSAL_SECRET", settings.proposal_secret, default=DEV_PROPOSAL_SECRET
            ),
            _secret_problem("SLOTSYNC_JWT_SHARED_KEY", settings.jwt_shared_key, min_length=32),
            _secret_problem("SLOTSYNC_DATABASE_PASSWORD", settings.database_password, min_length=1),
            _secret_problem("SLOTSYNC_REDIS_PASSWORD", settings.redis_password, min_length=1),
            _url_password_problem("SLOTSYNC_DATABASE_URL", settings.database_url),
            _url_password_problem("SLOTSYNC_REDIS_URL", settings.redis_url),
        )
        if problem
    ]
    if DEMO_API_KEY in settings.api_keys:
        problems.append("SLOTSYNC_API_KEYS still contains the demo key")
    keys = [k for k in settings.api_keys if k != DEMO_API_KEY]
    if any(_is_placeholder(k) for k in keys):
        problems.append("an API key in SLOTSYNC_API_KEYS is a placeholder, not a secret")
    if any(len(k.strip()) < MIN_SECRET_LENGTH for k in keys):
        problems.append(f"an API key in SLOTSYNC_API_KEYS is shorter than {MIN_SECRET_LENGTH}")
    jwt_configured = bool(settings.jwt_jwks_url or settings.jwt_shared_key)
    if settings.jwt_jwks_url and settings.jwt_shared_key:
        problems.append("set only one of SLOTSYNC_JWT_JWKS_URL and SLOTSYNC_JWT_SHARED_KEY")
    if jwt_configured and not (settings.jwt_issuer and settings.jwt_audience):
        problems.append("JWT validation needs SLOTSYNC_JWT_ISSUER and SLOTSYNC_JWT_AUDIENCE")
    if not jwt_configured and not settings.api_keys:
        problems.append("no consumer credentials: set SLOTSYNC_JWT_JWKS_URL or SLOTSYNC_API_KEYS")
    if "ehr_base_url" not in settings.model_fields_set:
        problems.append(
            "SLOTSYNC_EHR_BASE_URL is not set (its default is the development sandbox's address)"
        )
    elif not settings.ehr_base_url.strip():
        problems.append("SLOTSYNC_EHR_BASE_URL is empty")
    if settings.rules_path is None:
        problems.append(
            "SLOTSYNC_RULES_PATH is not set: production needs the organisation's rules file"
            " (the bundled example rules are for the demo)"
        )
    elif not settings.rules_path.is_file():
        problems.append(f"SLOTSYNC_RULES_PATH names no readable file: {settings.rules_path}")
    return problems


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _is_placeholder(value: str) -> bool:
    lowered = value.lower()
    return any(marker in lowered for marker in PLACEHOLDER_MARKERS)


def _secret_problem(
    name: str,
    value: SecretStr | None,
    *,
    default: str | None = None,
    min_length: int = MIN_SECRET_LENGTH,
) -> str | None:
    """Why a configured secret is unsafe (never quoting it); None when fine or unset."""
    secret = _secret(value)
    if secret is None:
        return None
    if not secret.strip():
        return f"{name} is empty"
    if secret == default:
        return f"{name} still has its development default"
    if _is_placeholder(secret):
        return f"{name} is a placeholder, not a secret"
    if len(secret) < min_length:
        return f"{name} is shorter than {min_length} characters"
    return None


def _url_password_problem(name: str, url: str | None) -> str | None:
    password = urlsplit(url).password if url else None
    if password is not None and _is_placeholder(password):
        return f"the password in {name} is a placeholder, not a secret"
    return None


def _redis_url_with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":  # no host part: redis-py reads ?password=
        query = "&".join(q for q in (parts.query, f"password={quote(password, safe='')}") if q)
        return urlunsplit(parts._replace(query=query))
    userinfo, _, host = parts.netloc.rpartition("@")
    username = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{username}:{quote(password, safe='')}@{host}"))


def secret_files(settings_cls: type[BaseSettings]) -> tuple[PydanticBaseSettingsSource, ...]:
    """pydantic-settings' secrets source over ``SLOTSYNC_SECRETS_DIR`` (default
    ``/run/secrets``, where compose mounts secrets), or none when that default is absent
    (tests, the demo, hosts without secret files). A configured directory must exist."""
    configured = os.environ.get(SECRETS_DIR_VARIABLE)
    directory = Path(configured) if configured else DEFAULT_SECRETS_DIR
    if not directory.is_dir():
        if configured:
            raise SettingsError(f"{SECRETS_DIR_VARIABLE} is not a directory: {directory}")
        return ()
    return (SecretsSettingsSource(settings_cls, secrets_dir=directory),)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
