"""Authentication to the EHR: a static bearer token or SMART Backend Services.

SMART Backend Services (client-credentials grant with a signed JWT assertion,
RS384 or ES384): the access token is requested once and reused until shortly
before it expires; a 401 from the EHR discards it and the request is retried
once with a fresh token. Both schemes are ``httpx.Auth`` so the read client and
the write gateway share them unchanged.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass

import httpx

from app.fhir.media import PLAIN_JSON

from .errors import EhrAuthError

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 300  # the SMART spec caps assertions at five minutes
EXPIRY_MARGIN_SECONDS = 30  # renew this long before the EHR would refuse the token


class BearerAuth(httpx.Auth):
    """A fixed token configured by the operator."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str
    expires_at: float  # time.monotonic() seconds

    def usable(self, now: float) -> bool:
        return now < self.expires_at - EXPIRY_MARGIN_SECONDS


class SmartBackendAuth(httpx.Auth):
    """SMART Backend Services: client credentials with a private-key JWT assertion."""

    def __init__(
        self,
        *,
        client_id: str,
        token_url: str,
        private_key: str,
        key_id: str | None = None,
        algorithm: str = "RS384",
        scope: str = "system/Slot.read",
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_id = client_id
        self.token_url = token_url
        self.scope = scope
        self._key = private_key
        self._kid = key_id
        self._alg = algorithm
        self._clock = clock
        self._token: AccessToken | None = None
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def assertion(self) -> str:
        """The signed JWT that proves who we are to the token endpoint."""
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "exp": now + ASSERTION_LIFETIME_SECONDS,
            "iat": now,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self._kid} if self._kid else None
        # imported here, not above: PyJWT and cryptography are 14 MB that a process never
        # signing for SMART Backend Services (a bearer token or no EHR auth) need not hold
        import jwt

        return jwt.encode(claims, self._key, algorithm=self._alg, headers=headers)

    def token(self) -> str:
        """A valid access token, fetched only when the cached one is (nearly) expired."""
        with self._lock:
            if self._token is None or not self._token.usable(self._clock()):
                self._token = self._fetch_token()
            return self._token.value

    def invalidate(self, value: str) -> None:
        with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    def _fetch_token(self) -> AccessToken:
        started = self._clock()
        try:
            response = self._http.post(
                self.token_url,
                data={
                    "grant_type": "client_credentials",
                    "scope": self.scope,
                    "client_assertion_type": CLIENT_ASSERTION_TYPE,
                    "client_assertion": self.assertion(),
                },
                headers={"Accept": PLAIN_JSON},
            )
        except httpx.HTTPError as exc:
            raise EhrAuthError(f"token endpoint unreachable: {exc}", url=self.token_url) from exc
        if response.status_code != 200:
            raise EhrAuthError(
                f"token endpoint answered {response.status_code}",
                status=response.status_code,
                url=self.token_url,
            )
        try:
            body = response.json()
            value = body["access_token"]
            lifetime = float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError) as exc:
            raise EhrAuthError("token endpoint sent no access_token", url=self.token_url) from exc
        if not isinstance(value, str) or not value:
            raise EhrAuthError("token endpoint sent an empty access_token", url=self.token_url)
        return AccessToken(value=value, expires_at=started + lifetime)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        value = self.token()
        request.headers["Authorization"] = f"Bearer {value}"
        response = yield request
        if response.status_code == 401:
            # revoked or expired early: one retry with a fresh token, then the 401 stands
            self.invalidate(value)
            request.headers["Authorization"] = f"Bearer {self.token()}"
            yield request
