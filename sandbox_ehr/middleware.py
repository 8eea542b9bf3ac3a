"""ASGI middleware: counts every FHIR request and applies fault rules to it.

Pure ASGI (not Starlette's BaseHTTPMiddleware) so that it can delay, replace or
cut a response byte-wise and drop the TCP connection: uvicorn's raw ``send`` is
stashed in the scope by :class:`sandbox_ehr.app.SandboxApp`, whose transport we
abort with SO_LINGER 0 for a real reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from sandbox_ehr.errors import FHIR_JSON, outcome_bytes

if TYPE_CHECKING:
    from sandbox_ehr.faults import FaultRule
    from sandbox_ehr.state import Sandbox

log = logging.getLogger("sandbox_ehr")
RAW_SEND = "sandbox.raw_send"
INVALID_JSON = b'{"resourceType":"Bundle","type":"searchset","entry":[{"resource":<!-- upstream'
Scope = dict[str, Any]


class FaultMiddleware:
    def __init__(self, app: Any, sandbox_getter: Any) -> None:
        self.app = app
        self.sandbox_getter = sandbox_getter

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not scope["path"].startswith("/fhir"):  # control API: no faults, no counting
            await _guarded(self.app, scope, receive, send)
            return
        sb: Sandbox = self.sandbox_getter()
        method, path = scope["method"], scope["path"]
        sb.stats.paths[f"{method} {path}"] += 1
        latency, delays, rule = sb.faults.for_request(method, path)
        for delay in delays:
            sb.stats.faults[delay.id] += 1
        status_box = [0]

        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
            await send(message)

        try:
            if latency:
                await asyncio.sleep(latency / 1000)
            if rule is None:
                await _guarded(self.app, scope, receive, counting_send)
            else:
                sb.stats.faults[rule.id] += 1
                await self._fault(rule, scope, receive, counting_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", path)
            sb.stats.requests[f"{method} {template}"] += 1
            sb.stats.statuses[f"{method} {template} {status_box[0] or 'dropped'}"] += 1

    async def _fault(self, rule: FaultRule, scope: Scope, receive: Any, send: Any) -> None:
        kind = rule.kind
        if kind in ("error", "429"):
            status = 429 if kind == "429" else int(rule.status)
            headers = [(b"content-type", FHIR_JSON.encode())]
            if kind == "429" or status == 503:
                headers.append((b"retry-after", str(rule.retry_after).encode()))
            code = "throttled" if status == 429 else "transient" if status == 503 else "exception"
            body = outcome_bytes(f"injected fault {rule.id}: HTTP {status}", code)
            await _send_whole(send, status, headers, body)
        elif kind == "timeout":
            await asyncio.sleep(float(rule.hang_seconds))
            _abort(scope)
        elif kind == "reset":
            _abort(scope)
        else:
            status, headers, body = await _capture(self.app, scope, receive)
            if kind == "truncate":
                body = body[: len(body) // 2]
            elif kind == "invalid-json":
                body = INVALID_JSON
            elif kind == "short-page":
                body = _edit_bundle(body, _short_page)
            elif kind == "no-includes":
                body = _edit_bundle(body, _without_includes)
            elif kind == "slow-answer":
                await asyncio.sleep(int(rule.latency_ms) / 1000)
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            await _send_whole(send, status, headers, body)


async def _guarded(app: Any, scope: Scope, receive: Any, send: Any) -> None:
    """Run the app; a bug still answers as an OperationOutcome, never a bare 500 or a reset."""
    started = False

    async def tracking_send(message: dict[str, Any]) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        await app(scope, receive, tracking_send)
    except Exception as exc:
        log.exception("unhandled error on %s %s", scope["method"], scope["path"])
        if started:
            raise
        body = outcome_bytes(f"internal error: {type(exc).__name__}: {exc}", "exception")
        await _send_whole(send, 500, [(b"content-type", FHIR_JSON.encode())], body)


async def _send_whole(
    send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _capture(
    app: Any, scope: Scope, receive: Any
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def grab(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, grab)
    return start.get("status", 500), list(start.get("headers", [])), b"".join(chunks)


def _edit_bundle(body: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """The body with ``edit`` applied when it is a Bundle; anything else as it was."""
    try:
        page = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return body
    if not (isinstance(page, dict) and page.get("resourceType") == "Bundle"):
        return body
    edit(page)
    return msgspec.json.encode(page)


def _short_page(page: dict[str, Any]) -> None:
    entries = page.get("entry") or []
    page["entry"] = entries[: len(entries) // 2]
    page["link"] = [link for link in page.get("link") or [] if link.get("relation") != "next"]


def _without_includes(page: dict[str, Any]) -> None:
    entries = page.get("entry") or []
    page["entry"] = [e for e in entries if (e.get("search") or {}).get("mode") != "include"]


def _abort(scope: Scope) -> None:
    """Reset the client's TCP connection (RST) without a response."""
    raw_send = scope.get(RAW_SEND)
    transport = getattr(getattr(raw_send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionResetError("injected connection reset")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
