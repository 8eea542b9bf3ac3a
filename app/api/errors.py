"""One place that maps every failure to an OperationOutcome with the right status.

Every answer carries the correlation id (header and OperationOutcome extension)
so that a caller's bug report leads straight to the server's log lines. Nothing
from the exception itself beyond a curated message reaches the client: no stack
traces, no EHR URLs, no resource content.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from app.core.errors import SlotsyncError
from app.ehr.errors import EhrConflict, EhrError, EhrRejected, EhrTimeout, ehr_issues

from .outages import install_outage_handlers
from .responses import REQUEST_ID_HEADER, FhirResponse, operation_outcome, outcome_response

log = logging.getLogger(__name__)

HTTP_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    414: "too-costly",
    415: "not-supported",
    422: "business-rule",
    429: "throttled",
    503: "transient",
}

# EHR answers a consumer may see as they are; any other EHR 4xx (401/403: our own
# credentials at the EHR) is our failure, hence 502.
_PASS_THROUGH_EHR_STATUS = frozenset({400, 404, 409, 410, 412, 422})


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def ehr_error_status(exc: EhrError) -> tuple[int, str, str]:
    """(HTTP status, issue code, diagnostics) for a failure talking to the EHR."""
    if isinstance(exc, EhrConflict):
        return 409, "conflict", "the EHR refused: the slot or appointment is no longer available"
    if isinstance(exc, EhrTimeout):
        return 504, "timeout", "the EHR did not answer in time"
    if isinstance(exc, EhrRejected) and exc.status in _PASS_THROUGH_EHR_STATUS:
        return exc.status, HTTP_ISSUE_CODES.get(exc.status, "processing"), "the EHR refused"
    return 502, "transient", "the EHR is unavailable or answered something unusable"


HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _path_pattern(path: str) -> re.Pattern[str]:
    """An OpenAPI path as a regex whose parameters never match a ``$operation`` segment.

    A FHIR id cannot contain ``$``, so ``/Appointment/{id}`` does not serve
    ``/Appointment/$find`` (the typed ``{id:fhirid}`` route says so; OpenAPI forgets it).
    """
    return re.compile(compile_path(path)[0].pattern.replace("[^/]+", "[^/$][^/]*"))


def _allowed_methods(request: Request) -> list[str]:
    """Every method served at this path, from the OpenAPI document (built once per app).

    Starlette's own 405 names only the first matching route's methods, which is wrong
    for paths like ``$find`` that several routes serve.
    """
    table = getattr(request.app.state, "allow_table", None)
    if table is None:
        table = [
            (_path_pattern(path), {m.upper() for m in ops} & HTTP_METHODS)
            for path, ops in request.app.openapi().get("paths", {}).items()
        ]
        request.app.state.allow_table = table
    path = request.url.path
    return sorted({m for regex, methods in table if regex.match(path) for m in methods})


def _outcome_with(body: dict[str, Any], status: int, request_id: str | None) -> FhirResponse:
    headers = {REQUEST_ID_HEADER: request_id} if request_id else {}
    return FhirResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    install_outage_handlers(app)

    @app.exception_handler(SlotsyncError)
    async def _domain(request: Request, exc: SlotsyncError) -> FhirResponse:
        if exc.http_status >= 500 and type(exc).http_status == SlotsyncError.http_status:
            return await _unexpected(request, exc)  # a fault of ours: no details out
        request_id = _request_id(request)
        if exc.issues:  # e.g. the EHR's own reason, or what a reschedule already did
            body = operation_outcome(
                exc.severity,
                exc.code,
                exc.diagnostics,
                expression=exc.expression,
                request_id=request_id,
            )
            body["issue"].extend(exc.issues)
            return _outcome_with(body, exc.http_status, request_id)
        return outcome_response(
            exc.http_status,
            exc.code,
            exc.diagnostics,
            severity=exc.severity,
            expression=exc.expression,
            request_id=request_id,
        )

    @app.exception_handler(EhrError)
    async def _ehr(request: Request, exc: EhrError) -> FhirResponse:
        status, code, diagnostics = ehr_error_status(exc)
        log.warning(
            "EHR failure answered %d: %s (EHR status %s)",
            status,
            exc.__class__.__name__,
            exc.status,
        )
        request_id = _request_id(request)
        issues = ehr_issues(exc) if status < 500 else []
        if not issues and not exc.issues:
            return outcome_response(status, code, diagnostics, request_id=request_id)
        # the EHR's own explanation of a refusal is the most useful answer
        body = operation_outcome("error", code, diagnostics, request_id=request_id)
        if issues:
            body["issue"] = issues
        body["issue"].extend(exc.issues)
        return _outcome_with(body, status, request_id)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> FhirResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors()
        )
        return outcome_response(400, "invalid", problems, request_id=_request_id(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> FhirResponse:
        code = HTTP_ISSUE_CODES.get(exc.status_code, "exception")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return outcome_response(
            exc.status_code,
            code,
            str(exc.detail),
            request_id=_request_id(request),
            headers=headers or None,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> FhirResponse:
        # runs outside the middleware stack: stamp the id on the record explicitly
        request_id = _request_id(request)
        log.error(
            "unhandled %s", exc.__class__.__name__, exc_info=exc, extra={"request_id": request_id}
        )
        return outcome_response(
            500,
            "exception",
            "internal error; quote the request id when reporting it",
            severity="fatal",
            request_id=request_id,
        )
