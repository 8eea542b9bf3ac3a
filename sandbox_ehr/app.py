"""ASGI application factory: FHIR API under ``/fhir``, control API under ``/_sandbox``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox_ehr import routes_read
from sandbox_ehr.config import SandboxConfig
from sandbox_ehr.errors import FHIR_JSON, FhirError, outcome_bytes
from sandbox_ehr.state import Sandbox

__all__ = ["SandboxConfig", "create_app"]


def create_app(config: SandboxConfig) -> FastAPI:
    app = FastAPI(title="slotsync sandbox EHR", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = Sandbox(config)
    app.include_router(routes_read.router)

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
        code = (
            "not-found"
            if exc.status_code == 404
            else "not-supported"
            if exc.status_code == 405
            else "invalid"
        )
        return Response(
            outcome_bytes(str(exc.detail), code), status_code=exc.status_code, media_type=FHIR_JSON
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        return Response(outcome_bytes(str(exc.errors())), status_code=400, media_type=FHIR_JSON)

    return app
