"""Who may call slotsync and what it accepts: credentials, scopes, limits (see README
"Security model")."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from app.settings.defaults import (
    ADMIN_SCOPE,
    DEMO_API_KEY,
    DEMO_SCOPES,
    DEV_WEBHOOK_SECRET,
    METRICS_SCOPE,
)


class SecuritySettings(BaseSettings):
    """The environment, consumer credentials, webhook secret and request limits."""

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

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_scope_strings(cls, value: object) -> object:
        """Accept ``"scope scope"`` as well as ``["scope", "scope"]`` per key."""
        if isinstance(value, dict):
            return {k: v.split() if isinstance(v, str) else v for k, v in value.items()}
        return value

    @property
    def effective_api_docs(self) -> str:
        if self.api_docs != "auto":
            return self.api_docs
        return "admin" if self.environment == "production" else "public"
