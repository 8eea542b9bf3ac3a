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
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import httpx
import jwt
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.concurrency import run_in_threadpool

from app.core.errors import SlotsyncError
from app.fhir.media import PLAIN_JSON
from app.settings import Settings

from .auth_throttle import FailedAuthThrottle

log = logging.getLogger(__name__)

APPOINTMENT_READ = "system/Appointment.read"
APPOINTMENT_WRITE = "system/Appointment.write"
PATIENT_WRITE = "system/Patient.write"
COVERAGE_WRITE = "system/Coverage.write"

API_KEY_HEADER = "X-API-Key"
WEBHOOK_SECRET_HEADER = "X-Webhook-Secret"

ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
SHARED_KEY_ALGORITHMS = ("HS256", "HS384", "HS512")

# SMART v2 permission letters equivalent to the v1 ``read``/``write`` we require.
_V2_EQUIVALENT = {"read": frozenset("rs"), "write": frozenset("cu")}


def scope_grants(held: Iterable[str], required: str) -> bool:
    """Whether any held scope grants ``required`` (``system/<Type>.<read|write>`` or a plain name).

    SMART wildcards (``system/*.read``, ``system/Appointment.*``) and v2 permission
    letters (``system/Appointment.rs`` for read, ``.cu``/``.cud``/``.cruds`` for write)
    are honoured. Names outside that pattern (the admin scope) only match exactly, so
    no wildcard ever makes a consumer an administrator.
    """
    context, slash, rest = required.partition("/")
    resource, dot, permission = rest.rpartition(".")
    smart = bool(slash and dot and resource and permission in _V2_EQUIVALENT)
    for scope in held:
        if scope == required:
            return True
        if not smart:
            continue
        h_context, h_slash, h_rest = scope.partition("/")
        h_resource, h_dot, h_permission = h_rest.rpartition(".")
        if not (h_slash and h_dot and h_context == context and h_resource in (resource, "*")):
            continue
        if h_permission in ("*", permission):
            return True
        letters = frozenset(h_permission.split("?", 1)[0])
        if letters <= frozenset("cruds") and _V2_EQUIVALENT[permission] <= letters:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``subject`` is safe to log (client id or key fingerprint)."""

    subject: str
    scopes: frozenset[str]
    method: Literal["jwt", "api-key"]

    def has(self, scope: str) -> bool:
        return scope_grants(self.scopes, scope)


def unauthorized(message: str, *, error: str = "invalid_token") -> HTTPException:
    return HTTPException(
        401,
        message,
        headers={"WWW-Authenticate": f'Bearer realm="slotsync", error="{error}"'},
    )


def forbidden(missing: Iterable[str]) -> HTTPException:
    needed = " ".join(missing)
    return HTTPException(
        403,
        f"insufficient scope: this request needs {needed}",
        headers={
            "WWW-Authenticate": f'Bearer realm="slotsync", error="insufficient_scope", '
            f'scope="{needed}"'
        },
    )


def _keys_unavailable() -> HTTPException:
    return HTTPException(503, "token signing keys are unavailable; retry later")


class KeysUnavailable(SlotsyncError):
    """The JWKS could not be fetched and no earlier copy is at hand."""


class JwksKeys:
    """The issuer's signing keys by ``kid``, fetched over HTTP and kept for ``ttl`` seconds.

    An unknown ``kid`` triggers at most one refetch per ``min_refresh`` seconds, so a
    stream of forged tokens cannot turn into a stream of requests to the issuer.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 300.0,
        min_refresh: float = 30.0,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.ttl = ttl
        self.min_refresh = min_refresh
        self._clock = clock
        self._http = httpx.Client(timeout=timeout, transport=transport)
        self._lock = threading.Lock()
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None

    @property
    def has_keys(self) -> bool:
        return bool(self._keys)

    def key_for(self, kid: str | None) -> jwt.PyJWK | None:
        key = self._keys.get(kid)
        if key is None and kid is None and len(self._keys) == 1:
            key = next(iter(self._keys.values()))
        return key

    def wants_refresh(self, kid: str | None) -> bool:
        """True when the keys expired, or ``kid`` is unknown and a refetch is allowed now."""
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at > self.ttl:
            return self._attempted_at is None or now - self._attempted_at >= min(
                self.min_refresh, self.ttl
            )
        if self.key_for(kid) is not None:
            return False
        return self._attempted_at is None or now - self._attempted_at >= self.min_refresh

    def refresh(self) -> None:
        """Fetch the JWKS (blocking; call off the event loop). Keeps old keys on failure."""
        with self._lock:
            self._attempted_at = self._clock()
            try:
                response = self._http.get(self.url, headers={"Accept": PLAIN_JSON})
                response.raise_for_status()
                keyset = jwt.PyJWKSet.from_dict(response.json())
            except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
                log.warning("JWKS fetch failed: %s", exc.__class__.__name__)
                if not self._keys:
                    raise KeysUnavailable(str(exc)) from None
                return
            self._keys = {
                key.key_id: key
                for key in keyset.keys
                if key.algorithm_name in ASYMMETRIC_ALGORITHMS
                and (key.public_key_use in (None, "sig"))
            }
            self._fetched_at = self._clock()

    def close(self) -> None:
        self._http.close()


class TokenVerifier:
    """Validates JWT access tokens: signature, ``exp``/``nbf``, issuer, audience; reads scopes."""

    def __init__(
        self,
        *,
        jwks: JwksKeys | None = None,
        shared_key: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = 30.0,
    ) -> None:
        if (jwks is None) == (shared_key is None):
            raise ValueError("exactly one of jwks and shared_key is needed")
        self.jwks = jwks
        self.shared_key = shared_key
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        # never both families: an HS256 token "signed" with a public key must not verify
        self.algorithms = SHARED_KEY_ALGORITHMS if shared_key else ASYMMETRIC_ALGORITHMS

    async def _key(self, header: Mapping[str, Any]) -> jwt.PyJWK | str:
        if self.shared_key is not None:
            return self.shared_key
        assert self.jwks is not None
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise unauthorized("token header 'kid' is not a string")
        if self.jwks.wants_refresh(kid):
            try:
                await run_in_threadpool(self.jwks.refresh)
            except KeysUnavailable:
                raise _keys_unavailable() from None
        if not self.jwks.has_keys:
            raise _keys_unavailable()
        key = self.jwks.key_for(kid)
        if key is None:
            raise unauthorized("token signed with an unknown key")
        return key

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise unauthorized("bearer token is not a well-formed JWT") from None
        if header.get("alg") not in self.algorithms:
            raise unauthorized("token algorithm is not accepted")
        key = await self._key(header)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(self.algorithms),
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": ["exp"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise unauthorized("token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise unauthorized("token audience is not this server") from None
        except jwt.InvalidIssuerError:
            raise unauthorized("token issuer is not trusted") from None
        except jwt.InvalidTokenError:
            raise unauthorized("token signature or claims are invalid") from None
        return Principal(
            subject=str(claims.get("client_id") or claims.get("sub") or "unknown")[:200],
            scopes=_claim_scopes(claims),
            method="jwt",
        )


def _claim_scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    raw = claims.get("scope", claims.get("scp", ()))
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list):
        return frozenset(s for s in raw if isinstance(s, str))
    return frozenset()


def _fingerprint(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class Authenticator:
    """Turns the request's credential headers into a :class:`Principal` (or a 401)."""

    def __init__(
        self, *, api_keys: Mapping[str, Iterable[str]], tokens: TokenVerifier | None = None
    ) -> None:
        # keyed by digest: the lookup cost does not depend on how much of a key is right
        self._api_keys = {
            _fingerprint(key): Principal(
                subject=f"api-key:{_fingerprint(key).hex()[:12]}",
                scopes=frozenset(scopes),
                method="api-key",
            )
            for key, scopes in api_keys.items()
        }
        self.tokens = tokens

    @classmethod
    def from_settings(
        cls, settings: Settings, *, jwks_transport: httpx.BaseTransport | None = None
    ) -> Authenticator:
        tokens = None
        if settings.jwt_shared_key is not None or settings.jwt_jwks_url:
            jwks = None
            if settings.jwt_shared_key is None and settings.jwt_jwks_url:
                jwks = JwksKeys(
                    settings.jwt_jwks_url,
                    ttl=settings.jwks_cache_seconds,
                    transport=jwks_transport,
                )
            tokens = TokenVerifier(
                jwks=jwks,
                shared_key=(
                    settings.jwt_shared_key.get_secret_value() if settings.jwt_shared_key else None
                ),
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                leeway=settings.jwt_leeway_seconds,
            )
        return cls(api_keys=settings.api_keys, tokens=tokens)

    def close(self) -> None:
        if self.tokens is not None and self.tokens.jwks is not None:
            self.tokens.jwks.close()

    def _api_key(self, key: str) -> Principal:
        principal = self._api_keys.get(_fingerprint(key.strip()))
        if principal is None:
            raise unauthorized("API key is not valid")
        return principal

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        if authorization and api_key:
            raise unauthorized("send one credential: Authorization or X-API-Key, not both")
        if api_key:
            return self._api_key(api_key)
        if not authorization:
            raise unauthorized("credentials are required", error="invalid_request")
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if not credential:
            raise unauthorized("Authorization header has no credential", error="invalid_request")
        if scheme.lower() == "apikey":
            return self._api_key(credential)
        if scheme.lower() != "bearer":
            raise unauthorized("use 'Authorization: Bearer <token>'", error="invalid_request")
        if self.tokens is None:
            raise unauthorized("bearer tokens are not configured on this server; use an API key")
        return await self.tokens.verify(credential)


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
