"""ASGI middleware around every request: correlation id, access log and metrics, body limits,
FHIR content negotiation.

Plain ASGI classes (no ``BaseHTTPMiddleware``): no extra task per request, and the
body is only buffered when a request has one. Every refusal made here is the same
OperationOutcome the route handlers produce, with the correlation id.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.fhir.media import (
    FHIR_JSON,
    FORM,
    JSON_PATCH,
    JSON_TYPES,
    LEGACY_FHIR_JSON,
    PLAIN_JSON,
    accepted_types,
    media_type,
)
from app.observability.context import (
    bind_request_id,
    new_request_id,
    reset_request_id,
    sane_request_id,
)
from app.observability.metrics import UNMATCHED_ROUTE, observe_http
from app.settings import Settings

from .responses import REQUEST_ID_HEADER, outcome_response

log = logging.getLogger("slotsync.access")

# What a /fhir request body may be: FHIR JSON, JSON Patch (PATCH), a form (POST search).
FHIR_REQUEST_TYPES = frozenset({*JSON_TYPES, JSON_PATCH, FORM})
FORMAT_ALIASES = {
    "json": FHIR_JSON,
    FHIR_JSON: FHIR_JSON,
    LEGACY_FHIR_JSON: FHIR_JSON,
    PLAIN_JSON: PLAIN_JSON,
}
ACCEPT_FHIR = frozenset({FHIR_JSON, LEGACY_FHIR_JSON, "*/*", "application/*"})
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _state(scope: Scope) -> dict[str, Any]:
    return scope.setdefault("state", {})  # type: ignore[no-any-return]


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, code: str, diagnostics: str
) -> None:
    response = outcome_response(
        status, code, diagnostics, request_id=_state(scope).get("request_id")
    )
    await response(scope, receive, send)


def has_body(headers: Headers) -> bool:
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


def route_template(scope: Scope) -> str:
    """``/fhir/Appointment/{id}`` for the matched route, whatever router prefix it sits under.

    Routers may report their path without the include prefix; the prefix is the part
    of the real path before the suffix the route's own pattern matches.
    """
    route = scope.get("route")
    pattern = getattr(route, "path_regex", None)
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if pattern is None or not template:
        # a plain Starlette route (/openapi.json, /docs) without parameters: a constant path
        if "endpoint" in scope and not scope.get("path_params"):
            return str(scope.get("path", UNMATCHED_ROUTE))
        return UNMATCHED_ROUTE
    path: str = scope.get("path", "")
    if pattern.match(path):
        return template
    for i, char in enumerate(path):
        if char == "/" and i and pattern.match(path[i:]):
            return path[:i] + template
    return template


class CorrelationIdMiddleware:
    """Accepts a sane ``X-Request-ID`` or makes one; exposes it to logs, handlers and the client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = sane_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))
        request_id = request_id or new_request_id()
        _state(scope)["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if REQUEST_ID_HEADER not in headers:
                    headers.append(REQUEST_ID_HEADER, request_id)
            await send(message)

        token = bind_request_id(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            reset_request_id(token)


class AccessLogMiddleware:
    """One log line and one latency sample per request, labelled by route template;
    the latency is the caller's, from the request to the response's last byte.

    The template (``/fhir/Appointment/{id}``) rather than the path keeps metric
    cardinality bounded and keeps ids and query strings (which may name patients)
    out of the logs.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        sent: float | None = None
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                sent = time.perf_counter()

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            status = 500
            raise
        finally:
            # until the response was sent: a background task run after it (the next
            # minute's $find answer) is not the caller's wait
            seconds = (sent or time.perf_counter()) - started
            route = route_template(scope)
            method = scope["method"]
            observe_http(method, route, status, seconds)
            principal = _state(scope).get("principal")
            log.log(
                logging.DEBUG if scope["path"] in QUIET_PATHS and status < 400 else logging.INFO,
                "%s %s %d %.1fms",
                method,
                route,
                status,
                seconds * 1000,
                extra={
                    "http_method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "caller": getattr(principal, "subject", None),
                },
            )


class FhirContentMiddleware:
    """Content negotiation under ``/fhir``: ``_format`` and ``Accept`` in, ``Content-Type`` out.

    We speak FHIR JSON only: ``application/fhir+json`` by default, ``application/json``
    when that is what the client asked for, 406 for anything else (XML, turtle), and
    415 for request bodies that are not JSON, JSON Patch or a search form.
    """

    def __init__(self, app: ASGIApp, *, prefix: str = "/fhir") -> None:
        self.app = app
        self.prefix = prefix

    def _negotiate(self, scope: Scope, headers: Headers) -> str | None:
        for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
            if name == "_format":
                # an unescaped '+' in a query string arrives as a space
                return FORMAT_ALIASES.get(value.strip().lower().replace(" ", "+"))
        accept = headers.get("accept")
        if not accept:
            return FHIR_JSON
        kinds = accepted_types(accept)
        if kinds & ACCEPT_FHIR:
            return FHIR_JSON
        return PLAIN_JSON if PLAIN_JSON in kinds else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (
            path == self.prefix or path.startswith(self.prefix + "/")
        ):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        answer = self._negotiate(scope, headers)
        if answer is None:
            await _refuse(
                scope,
                receive,
                send,
                406,
                "not-supported",
                f"this server answers only {FHIR_JSON} (or {PLAIN_JSON}); "
                "check the Accept header and _format",
            )
            return
        if has_body(headers) and media_type(headers.get("content-type")) not in FHIR_REQUEST_TYPES:
            await _refuse(
                scope,
                receive,
                send,
                415,
                "not-supported",
                f"request bodies must be {FHIR_JSON} (or JSON Patch for PATCH)",
            )
            return
        if answer == FHIR_JSON:
            await self.app(scope, receive, send)
            return

        async def send_as_json(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                if media_type(out.get("content-type")) == FHIR_JSON:
                    out["content-type"] = PLAIN_JSON
            await send(message)

        await self.app(scope, receive, send_as_json)


def json_too_deep(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest deeper than ``limit`` (iterative: no recursion to exhaust)."""
    if not isinstance(value, dict | list):
        return False  # a scalar body (null, false, 3) has no nesting at all
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


class RequestLimitsMiddleware:
    """Refuses query strings over ``max_query`` (414), bodies over ``max_bytes`` (413) and
    JSON that is broken or nested deeper than ``max_depth`` (400).

    The body is read here once (bounded), checked, then replayed to the application,
    so no handler ever parses an unbounded or pathologically nested document, and no
    query builds an unbounded ``IN (...)`` list.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_depth: int, max_query: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.max_query = max_query

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope.get("query_string", b"")) > self.max_query:
            await _refuse(
                scope,
                receive,
                send,
                414,
                "too-costly",
                f"query string is longer than {self.max_query} bytes; use fewer values",
            )
            return
        headers = Headers(scope=scope)
        if not has_body(headers):
            await self.app(scope, receive, send)
            return
        too_large = f"request body is larger than {self.max_bytes} bytes"
        declared = headers.get("content-length")
        if declared is not None and not declared.isdigit():
            await _refuse(scope, receive, send, 400, "invalid", "Content-Length is not a number")
            return
        if declared is not None and int(declared) > self.max_bytes:
            await _refuse(scope, receive, send, 413, "too-costly", too_large)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await _refuse(scope, receive, send, 413, "too-costly", too_large)
                return
        problem = self._json_problem(bytes(body), headers)
        if problem:
            await _refuse(scope, receive, send, 400, "structure", problem)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _json_problem(self, body: bytes, headers: Headers) -> str | None:
        kind = media_type(headers.get("content-type"))
        if not (kind in JSON_TYPES or kind.endswith("+json")) or not body.strip():
            return None
        try:
            parsed = msgspec.json.decode(body)
        except (msgspec.DecodeError, RecursionError) as exc:
            if isinstance(exc, RecursionError):  # msgspec's limit on nesting
                return f"request body nests deeper than {self.max_depth} levels"
            return "request body is not valid JSON" + _json_position(body)
        if json_too_deep(parsed, self.max_depth):
            return f"request body nests deeper than {self.max_depth} levels"
        return None


def _json_position(body: bytes) -> str:
    """Where the JSON breaks, as line and column (a rules file is edited by hand)."""
    try:
        json.loads(body)
    except json.JSONDecodeError as exc:
        return f": {exc.msg} (line {exc.lineno}, column {exc.colno})"
    except (ValueError, RecursionError):
        return ""
    return ""


def install_middleware(app: FastAPI, settings: Settings) -> None:
    """Adds the stack; the last added runs first: id -> log/metrics -> negotiation -> limits."""
    app.add_middleware(
        RequestLimitsMiddleware,
        max_bytes=settings.max_body_bytes,
        max_depth=settings.max_json_depth,
        max_query=settings.max_query_bytes,
    )
    app.add_middleware(FhirContentMiddleware)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(CorrelationIdMiddleware)
