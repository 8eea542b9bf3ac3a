"""JWT access tokens: the issuer's JWKS (cached, refetched sparingly) or an HS256 shared
key, and the checks a token must pass (signature, ``exp``/``nbf``, issuer, audience)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import jwt
from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from app.core.errors import SlotsyncError
from app.fhir.media import PLAIN_JSON

from .auth_scopes import Principal, unauthorized

# named after the module these classes came from, so log filters keep matching
log = logging.getLogger("app.api.auth")

ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
SHARED_KEY_ALGORITHMS = ("HS256", "HS384", "HS512")


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
