"""ASGI application factory: FHIR API under ``/fhir``, control API under ``/_sandbox``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox_ehr import (
    routes_control,
    routes_plain,
    routes_read,
    routes_subscription,
    routes_write,
)
from sandbox_ehr.config import SandboxConfig
from sandbox_ehr.errors import FHIR_JSON, FhirError, outcome_bytes
from sandbox_ehr.middleware import RAW_SEND, FaultMiddleware
from sandbox_ehr.state import Sandbox

__all__ = ["SandboxApp", "SandboxConfig", "create_app"]
HOLD_SWEEP_SECONDS = 0.5


class SandboxApp(FastAPI):
    """FastAPI that remembers the server's own ``send`` so faults can reset the connection."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND] = send
        await super().__call__(scope, receive, send)


async def _sweep_holds(sb: Sandbox) -> None:
    while True:
        await asyncio.sleep(HOLD_SWEEP_SECONDS)
        sb.appointments.expire_holds()


def create_app(config: SandboxConfig) -> FastAPI:
    sb = Sandbox(config)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await sb.notifier.start()
        sweeper = asyncio.get_running_loop().create_task(_sweep_holds(sb))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await sb.notifier.stop()

    app = SandboxApp(
        title="slotsync sandbox EHR",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.sandbox = sb
    routers = [routes_control.router, routes_subscription.router, routes_write.router]
    if config.plain:  # before routes_read, whose GET /fhir/{rtype}/{rid} would take _history
        routers.append(routes_plain.router)
    for router in [*routers, routes_read.router]:
        app.include_router(router)
    app.add_middleware(FaultMiddleware, sandbox_getter=lambda: app.state.sandbox)

    @app.exception_handler(FhirError)
    async def fhir_error(_: Request, exc: FhirError) -> Response:
        return Response(
            outcome_bytes(exc.diagnostics, exc.code),
            status_code=exc.status,
            media_type=FHIR_JSON,
            headers=exc.headers,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "invalid")
        return Response(
            outcome_bytes(str(exc.detail), code), status_code=exc.status_code, media_type=FHIR_JSON
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        return Response(outcome_bytes(str(exc.errors())), status_code=400, media_type=FHIR_JSON)

    return app
