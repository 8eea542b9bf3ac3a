"""The one ``Settings`` object, composed of a part per concern, and the production check."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from pydantic import SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from app.core.errors import SlotsyncError
from app.settings.availability import AvailabilitySettings
from app.settings.booking import BookingSettings
from app.settings.defaults import (
    DEMO_API_KEY,
    DEV_PROPOSAL_SECRET,
    DEV_WEBHOOK_SECRET,
    MIN_SECRET_LENGTH,
    PLACEHOLDER_MARKERS,
)
from app.settings.ehr import EhrAccessSettings, EhrConnectionSettings
from app.settings.observability import ObservabilitySettings
from app.settings.publishing import PublishingSettings
from app.settings.security import SecuritySettings
from app.settings.sources import secret_files
from app.settings.storage import StorageSettings, secret_text
from app.settings.sync import LoadSettings, SyncSettings


class UnsafeSettings(SlotsyncError, RuntimeError):
    """Production settings that must not be served (raised as is, never echoing secrets)."""


# pydantic puts the fields of the last base first: the parts are listed last to first so
# that the fields keep their order (the order `slotsync config` and the README list).
class Settings(
    ObservabilitySettings,
    SecuritySettings,
    PublishingSettings,
    BookingSettings,
    SyncSettings,
    EhrAccessSettings,
    LoadSettings,
    AvailabilitySettings,
    EhrConnectionSettings,
    StorageSettings,
):
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

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            problems = production_problems(self)
            if problems:
                raise UnsafeSettings(
                    "refusing to run with SLOTSYNC_ENVIRONMENT=production: " + "; ".join(problems)
                )
        return self


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
    secret = secret_text(value)
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
