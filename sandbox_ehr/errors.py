"""One exception type for every FHIR-facing failure, rendered as an OperationOutcome.

Handlers raise :class:`FhirError` with the HTTP status and the issue code; the
app's exception handlers turn it (and framework errors such as unknown routes)
into ``application/fhir+json`` OperationOutcomes, so no client ever sees a bare
500 or an HTML page.
"""

from __future__ import annotations

import msgspec

FHIR_JSON = "application/fhir+json"


class FhirError(Exception):
    def __init__(
        self,
        status: int,
        diagnostics: str,
        code: str = "invalid",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics
        self.code = code
        self.headers = headers or {}


def bad_request(diagnostics: str) -> FhirError:
    return FhirError(400, diagnostics, "invalid")


def not_found(what: str) -> FhirError:
    return FhirError(404, f"{what} is not known", "not-found")


def conflict(diagnostics: str) -> FhirError:
    return FhirError(409, diagnostics, "conflict")


def unprocessable(diagnostics: str, code: str = "business-rule") -> FhirError:
    return FhirError(422, diagnostics, code)


def outcome(diagnostics: str, code: str = "invalid", severity: str = "error") -> dict:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def outcome_bytes(diagnostics: str, code: str = "invalid", severity: str = "error") -> bytes:
    return msgspec.json.encode(outcome(diagnostics, code, severity))
