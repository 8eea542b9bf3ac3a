"""Who is calling and what they may do: OAuth2 bearer JWTs, API keys, SMART scopes.

Consumer backends present either a JWT access token (``Authorization: Bearer``;
verified against the issuer's JWKS, or an HS256 shared key in small deployments)
or an API key (``X-API-Key: <key>`` or ``Authorization: ApiKey <key>``) that
settings map to scopes. Routes declare what they need with one dependency::

    @router.post("/Appointment/$book", dependencies=[Depends(require_scopes(APPOINTMENT_WRITE))])
    def book(...): ...

    @router.post("/resync")
    def resync(principal: AdminDep): ...

    @router.post("/subscription")
    def notify(_: WebhookDep): ...

No credential or a bad one -> 401, a good credential without the scope -> 403
(both OperationOutcome via the error handlers). The per-request cost is a dict
lookup (API key) or one signature check with a cached key (JWT): no I/O on the
hot path; the JWKS is fetched off the event loop, at most once per refresh period.

This module is the FastAPI side (installing, dependencies); what a caller may do is in
:mod:`app.api.auth_scopes`, JWT checks in :mod:`app.api.auth_tokens`, the credential
lookup in :mod:`app.api.auth_credentials` and the failure throttle in
:mod:`app.api.auth_throttle`.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPBearer

from app.settings import Settings

from .auth_credentials import Authenticator
from .auth_scopes import (
    APPOINTMENT_READ,
    APPOINTMENT_WRITE,
    COVERAGE_WRITE,
    PATIENT_WRITE,
    Principal,
    forbidden,
    scope_grants,
    unauthorized,
)
from .auth_throttle import FailedAuthThrottle

__all__ = [
    "API_KEY_HEADER",
    "APPOINTMENT_READ",
    "APPOINTMENT_WRITE",
    "COVERAGE_WRITE",
    "PATIENT_WRITE",
    "WEBHOOK_SECRET_HEADER",
    "AdminDep",
    "AppointmentReadDep",
    "AppointmentWriteDep",
    "Authenticator",
    "CoverageWriteDep",
    "MetricsDep",
    "PatientWriteDep",
    "Principal",
    "PrincipalDep",
    "WebhookDep",
    "api_key_scheme",
    "authenticate",
    "bearer_scheme",
    "ensure_admin",
    "get_principal",
    "install_auth",
    "is_operator",
    "require_admin",
    "require_metrics",
    "require_scopes",
    "require_webhook_secret",
    "scope_grants",
    "webhook_scheme",
]

API_KEY_HEADER = "X-API-Key"
WEBHOOK_SECRET_HEADER = "X-Webhook-Secret"


# -- FastAPI dependencies --------------------------------------------------------

# Declared so that OpenAPI (and so /docs and schemathesis) knows the schemes; the
# headers themselves are read by get_principal.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearerToken",
    bearerFormat="JWT",
    description="OAuth2 access token (SMART backend services) with system/ scopes",
)
api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    scheme_name="apiKey",
    description="API key mapped to scopes by SLOTSYNC_API_KEYS",
)
webhook_scheme = APIKeyHeader(
    name=WEBHOOK_SECRET_HEADER,
    auto_error=False,
    scheme_name="webhookSecret",
    description="subscription shared secret (or 'Authorization: Bearer <secret>')",
)


def install_auth(
    app: FastAPI, settings: Settings, *, jwks_transport: httpx.BaseTransport | None = None
) -> Authenticator:
    authenticator = Authenticator.from_settings(settings, jwks_transport=jwks_transport)
    app.state.authenticator = authenticator
    app.state.auth_throttle = FailedAuthThrottle(
        settings.auth_failure_limit, settings.auth_failure_window_seconds
    )
    return authenticator


async def authenticate(request: Request) -> Principal:
    """The caller, authenticated once per request; repeated failures from one client
    address are throttled (429 with Retry-After, see :mod:`app.api.auth_throttle`)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        throttle: FailedAuthThrottle = request.app.state.auth_throttle
        client = request.client.host if request.client else "-"
        wait = throttle.retry_after(client)
        if wait is not None:
            raise HTTPException(
                429,
                "too many failed authentications from this client: wait, then retry with a"
                " valid credential",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        authenticator: Authenticator = request.app.state.authenticator
        try:
            principal = await authenticator.authenticate(
                request.headers.get("authorization"), request.headers.get(API_KEY_HEADER)
            )
        except HTTPException as exc:
            if exc.status_code == 401:
                throttle.failed(client)
            raise
        request.state.principal = principal  # the access log names the caller
    return principal


async def get_principal(
    request: Request,
    _bearer: Annotated[Any, Depends(bearer_scheme)],
    _api_key: Annotated[Any, Depends(api_key_scheme)],
) -> Principal:
    """Any authenticated caller (401 otherwise)."""
    return await authenticate(request)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_scopes(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits callers holding every scope in ``scopes`` (403 otherwise)."""
    if not scopes:
        raise ValueError("require_scopes needs at least one scope")

    async def dependency(principal: PrincipalDep) -> Principal:
        missing = [scope for scope in scopes if not principal.has(scope)]
        if missing:
            raise forbidden(missing)
        return principal

    dependency.__name__ = "require_" + "_".join(
        s.replace("/", "_").replace(".", "_") for s in scopes
    )
    return dependency


async def require_admin(request: Request, principal: PrincipalDep) -> Principal:
    """Admin endpoints: the configured admin scope, exactly (``SLOTSYNC_ADMIN_SCOPE``)."""
    scope = request.app.state.settings.admin_scope
    if scope not in principal.scopes:
        raise forbidden([scope])
    return principal


def ensure_admin(request: Request) -> None:
    """Inside a route already authenticated: 403 unless the caller holds the admin scope
    (for a parameter only administrators may use, such as ``$find``'s ``_explain``)."""
    scope = request.app.state.settings.admin_scope
    principal: Principal = request.state.principal
    if scope not in principal.scopes:
        raise forbidden([scope])


async def require_metrics(
    request: Request,
    _bearer: Annotated[Any, Depends(bearer_scheme)],
    _api_key: Annotated[Any, Depends(api_key_scheme)],
) -> Principal | None:
    """/metrics: open when ``SLOTSYNC_METRICS_PUBLIC``, else the metrics or the admin scope."""
    settings: Settings = request.app.state.settings
    if settings.metrics_public:
        return None
    principal = await authenticate(request)
    if not is_operator(principal, settings):
        raise forbidden([settings.metrics_scope])
    return principal


def is_operator(principal: Principal, settings: Settings) -> bool:
    """Whether the caller may see operational detail (metrics, readiness checks): it holds
    the metrics or the admin scope."""
    return bool(principal.scopes & {settings.metrics_scope, settings.admin_scope})


async def require_webhook_secret(
    request: Request, _secret: Annotated[Any, Depends(webhook_scheme)]
) -> None:
    """The EHR's notifications: ``X-Webhook-Secret`` or ``Authorization: Bearer`` = the secret."""
    presented = request.headers.get(WEBHOOK_SECRET_HEADER)
    if presented is None:
        scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
        presented = value.strip() if scheme.lower() == "bearer" else None
    if not presented:
        raise unauthorized("the subscription secret is required", error="invalid_request")
    expected = request.app.state.settings.webhook_secret.get_secret_value()
    if not hmac.compare_digest(
        presented.encode("utf-8", "surrogateescape"), expected.encode("utf-8")
    ):
        raise unauthorized("the subscription secret is not valid")


AdminDep = Annotated[Principal, Depends(require_admin)]
WebhookDep = Annotated[None, Depends(require_webhook_secret)]
MetricsDep = Annotated[Principal | None, Depends(require_metrics)]
AppointmentReadDep = Annotated[Principal, Depends(require_scopes(APPOINTMENT_READ))]
AppointmentWriteDep = Annotated[Principal, Depends(require_scopes(APPOINTMENT_WRITE))]
PatientWriteDep = Annotated[Principal, Depends(require_scopes(PATIENT_WRITE))]
CoverageWriteDep = Annotated[Principal, Depends(require_scopes(COVERAGE_WRITE))]
