"""FHIR JSON responses serialised with orjson (no per-request model validation)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

FHIR_JSON = "application/fhir+json"
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_EXTENSION = "http://slotsync.example/fhir/StructureDefinition/request-id"


class FhirResponse(Response):
    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def operation_outcome(
    severity: str, code: str, diagnostics: str, *, expression: str | None = None
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}
