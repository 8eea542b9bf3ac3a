"""From a request's credential headers to a :class:`Principal`: API keys looked up by
digest, bearer tokens handed to the :class:`TokenVerifier`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import httpx

from app.settings import Settings

from .auth_scopes import Principal, unauthorized

if TYPE_CHECKING:
    from .auth_tokens import TokenVerifier


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
            # imported only here: PyJWT and cryptography are 14 MB that every API process
            # of a deployment taking API keys alone would hold for nothing
            from .auth_tokens import JwksKeys, TokenVerifier

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

    def api_key_subjects(self, scope: str) -> frozenset[str]:
        """The subjects of the API keys that grant ``scope`` (the console checks that its
        session's key still does: a key taken out of the settings ends its sessions)."""
        return frozenset(p.subject for p in self._api_keys.values() if scope in p.scopes)

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
