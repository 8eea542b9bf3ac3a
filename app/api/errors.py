"""One place that maps every failure to an OperationOutcome with the right status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import SlotsyncError

from .responses import FhirResponse, operation_outcome

log = logging.getLogger(__name__)

HTTP_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "business-rule",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SlotsyncError)
    async def _domain(_request: Request, exc: SlotsyncError) -> FhirResponse:
        body = operation_outcome(exc.severity, exc.code, exc.diagnostics, expression=exc.expression)
        return FhirResponse(body, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> FhirResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors()
        )
        return FhirResponse(operation_outcome("error", "invalid", problems), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> FhirResponse:
        code = HTTP_ISSUE_CODES.get(exc.status_code, "exception")
        return FhirResponse(
            operation_outcome("error", code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> FhirResponse:
        log.exception("unhandled error")
        return FhirResponse(
            operation_outcome("fatal", "exception", "internal error; see server logs"),
            status_code=500,
        )
