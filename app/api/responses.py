"""FHIR JSON responses serialised with msgspec (no per-request model validation)."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi.responses import Response

from app.fhir.media import FHIR_JSON, PLAIN_JSON

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_EXTENSION = "http://slotsync.example/fhir/StructureDefinition/request-id"


class JsonResponse(Response):
    """Plain JSON (ops endpoints that answer no FHIR resource), serialised with msgspec."""

    media_type = PLAIN_JSON

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


class FhirResponse(Response):
    """A FHIR resource as JSON; ``bytes`` are taken as the resource already rendered."""

    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return fhir_json(content)


def fhir_json(resource: Any) -> bytes:
    """A resource (plain data) as the bytes of its JSON."""
    return msgspec.json.encode(resource)


def operation_outcome(
    severity: str,
    code: str,
    diagnostics: str,
    *,
    expression: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """An OperationOutcome with one issue; ``request_id`` ties it to the server's log lines."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    outcome: dict[str, Any] = {"resourceType": "OperationOutcome"}
    if request_id:
        outcome["extension"] = [{"url": REQUEST_ID_EXTENSION, "valueString": request_id}]
    outcome["issue"] = [issue]
    return outcome


def outcome_response(
    status: int,
    code: str,
    diagnostics: str,
    *,
    request_id: str | None,
    severity: str = "error",
    expression: str | None = None,
    headers: dict[str, str] | None = None,
) -> FhirResponse:
    """The one shape of every error answer: OperationOutcome, status, correlation id header."""
    all_headers = dict(headers or {})
    if request_id:
        all_headers.setdefault(REQUEST_ID_HEADER, request_id)
    body = operation_outcome(
        severity, code, diagnostics, expression=expression, request_id=request_id
    )
    return FhirResponse(body, status_code=status, headers=all_headers)
