"""One place that maps every failure to an OperationOutcome with the right status.

Every error answer carries a correlation id (``X-Request-ID`` header and an
OperationOutcome extension): the one the request brought, else a fresh one that
is also logged, so a caller's report leads to the server's log lines. Nothing
from an exception beyond a curated message reaches the client: no stack traces,
no EHR URLs.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.ehr.errors import EhrConflict, EhrError, EhrRejected, EhrTimeout
from app.ehr.gateway import outcome_issues
from app.errors import SlotsyncError

from .responses import REQUEST_ID_EXTENSION, REQUEST_ID_HEADER, FhirResponse, operation_outcome

log = logging.getLogger(__name__)

HTTP_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "business-rule",
}

# EHR refusals a consumer may see as they are (with the EHR's reason); any other
# EHR 4xx (401/403: our own credentials at the EHR) is our failure, hence 502.
_PASS_THROUGH_EHR_STATUS = frozenset({400, 404, 409, 410, 412, 422})
_ISSUE_FIELDS = ("severity", "code", "details", "diagnostics", "expression", "location")


def request_id(request: Request) -> str:
    """The request's correlation id (set by the middleware, or sent by the caller), or a new one."""
    rid = getattr(request.state, "request_id", None) or request.headers.get(REQUEST_ID_HEADER)
    if not rid:
        rid = uuid.uuid4().hex
        request.state.request_id = rid
    return str(rid)


def ehr_error_status(exc: EhrError) -> tuple[int, str, str]:
    """(HTTP status, issue code, diagnostics) for a failure talking to the EHR."""
    if isinstance(exc, EhrConflict):
        return 409, "conflict", "the EHR refused: the slot or appointment is no longer available"
    if isinstance(exc, EhrTimeout):
        return 504, "timeout", "the EHR did not answer in time"
    if isinstance(exc, EhrRejected) and exc.status in _PASS_THROUGH_EHR_STATUS:
        return exc.status, HTTP_ISSUE_CODES.get(exc.status, "processing"), "the EHR refused"
    return 502, "transient", "the EHR is unavailable or answered something unusable"


def _ehr_issues(exc: EhrError) -> list[dict[str, Any]]:
    return [
        {k: issue[k] for k in _ISSUE_FIELDS if k in issue}
        for issue in outcome_issues(getattr(exc, "outcome", None))
        if issue.get("severity") and issue.get("code")
    ]


def _answer(
    request: Request,
    status: int,
    issues: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
) -> FhirResponse:
    rid = request_id(request)
    body = {
        "resourceType": "OperationOutcome",
        "extension": [{"url": REQUEST_ID_EXTENSION, "valueString": rid}],
        "issue": issues,
    }
    return FhirResponse(
        body, status_code=status, headers={**(headers or {}), REQUEST_ID_HEADER: rid}
    )


def _issue(severity: str, code: str, diagnostics: str, expression: str | None = None) -> dict:
    return operation_outcome(severity, code, diagnostics, expression=expression)["issue"][0]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SlotsyncError)
    async def _domain(request: Request, exc: SlotsyncError) -> FhirResponse:
        main = _issue(exc.severity, exc.code, exc.diagnostics, exc.expression)
        return _answer(request, exc.status, [main, *exc.issues])

    @app.exception_handler(EhrError)
    async def _ehr(request: Request, exc: EhrError) -> FhirResponse:
        status, code, diagnostics = ehr_error_status(exc)
        log.warning(
            "EHR failure answered %d: %s (EHR status %s) [request %s]",
            status,
            exc,
            exc.status,
            request_id(request),
        )
        # The EHR's own explanation of a refusal is the most useful answer.
        issues = (_ehr_issues(exc) if status < 500 else []) or [_issue("error", code, diagnostics)]
        return _answer(request, status, [*issues, *exc.issues])

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> FhirResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors()
        )
        return _answer(request, 400, [_issue("error", "invalid", problems)])

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> FhirResponse:
        code = HTTP_ISSUE_CODES.get(exc.status_code, "exception")
        return _answer(
            request,
            exc.status_code,
            [_issue("error", code, str(exc.detail))],
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> FhirResponse:
        log.exception("unhandled error [request %s]", request_id(request))
        return _answer(
            request,
            500,
            [
                _issue(
                    "fatal", "exception", "internal error; quote the request id when reporting it"
                )
            ],
        )
