"""The console's login session: a signed cookie, its CSRF token, and the security headers.

The cookie holds who logged in, when, and a random CSRF token, signed (itsdangerous)
with a key derived from the proposal secret, a secret production already refuses to
leave at its default; it is HttpOnly, SameSite=Strict, and Secure when the request
came over TLS (directly, or through a proxy uvicorn trusts, which sets the scheme).
Every POST carries the token in a form field; a mismatch is refused before any work.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from app.settings import Settings

SESSION_COOKIE = "slotsync_console"
LOGIN_COOKIE = "slotsync_console_login"  # the CSRF token of the login form, before a session
SESSION_SECONDS = 8 * 3600
LOGIN_FORM_SECONDS = 3600
PATH = "/console"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    subject: str
    csrf: str


def _serializer(settings: Settings, salt: str) -> URLSafeTimedSerializer:
    secret = settings.proposal_secret.get_secret_value().encode()
    key = hmac.new(secret, b"slotsync-console-session", hashlib.sha256).hexdigest()
    return URLSafeTimedSerializer(key, salt=salt)


def _set(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def current(request: Request, settings: Settings) -> ConsoleSession | None:
    """The logged-in session, or None (no cookie, a forged one, or an expired one)."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        data: Any = _serializer(settings, "session").loads(raw, max_age=SESSION_SECONDS)
    except BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    subject, csrf = data.get("sub"), data.get("csrf")
    if not isinstance(subject, str) or not isinstance(csrf, str):
        return None
    return ConsoleSession(subject=subject, csrf=csrf)


def start(request: Request, response: Response, settings: Settings, subject: str) -> None:
    token = {"sub": subject, "csrf": secrets.token_urlsafe(32)}
    value = _serializer(settings, "session").dumps(token)
    _set(request, response, SESSION_COOKIE, value, SESSION_SECONDS)
    response.delete_cookie(LOGIN_COOKIE, path=PATH)


def end(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=PATH)


def new_login_token() -> str:
    return secrets.token_urlsafe(32)


def remember_login_token(
    request: Request, response: Response, settings: Settings, token: str
) -> None:
    """The login form's CSRF token, signed, in a short-lived cookie of its own."""
    signed = _serializer(settings, "login").dumps(token)
    _set(request, response, LOGIN_COOKIE, signed, LOGIN_FORM_SECONDS)


def login_token_matches(request: Request, settings: Settings, presented: str) -> bool:
    raw = request.cookies.get(LOGIN_COOKIE)
    if not raw or not presented:
        return False
    try:
        expected = _serializer(settings, "login").loads(raw, max_age=LOGIN_FORM_SECONDS)
    except BadSignature:
        return False
    return isinstance(expected, str) and hmac.compare_digest(expected, presented)


def csrf_matches(session: ConsoleSession, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(session.csrf, presented or "")
