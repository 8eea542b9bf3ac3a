"""Domain exceptions that the API turns into OperationOutcome responses.

Services raise these; one handler (app.api.errors) maps them to HTTP. Nothing
here imports web code, so services and workers can raise them freely.
"""

from __future__ import annotations


class SlotsyncError(Exception):
    """Base: an error with an HTTP status and a FHIR issue code."""

    status = 500
    code = "exception"
    severity = "error"

    def __init__(
        self,
        diagnostics: str,
        *,
        expression: str | None = None,
        issues: list[dict[str, object]] | None = None,
    ):
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = expression
        # Further OperationOutcome issues to report after the main one (e.g. the EHR's own).
        self.issues = issues or []


class InvalidParameter(SlotsyncError):
    """A request parameter is missing, malformed or contradictory."""

    status = 400
    code = "invalid"


class NotFound(SlotsyncError):
    status = 404
    code = "not-found"


class Conflict(SlotsyncError):
    status = 409
    code = "conflict"


class UnsupportedMediaType(SlotsyncError):
    status = 415
    code = "not-supported"


class BusinessRuleViolation(SlotsyncError):
    status = 422
    code = "business-rule"


class CacheStale(SlotsyncError):
    """The cache is older than the configured staleness limit."""

    status = 503
    code = "transient"


class EhrNoAnswer(SlotsyncError):
    """The EHR did not answer a write in time; the diagnostics say what is known of its state."""

    status = 504
    code = "timeout"


class EhrBadAnswer(SlotsyncError):
    """The EHR answered a write with something that contradicts the request."""

    status = 502
    code = "exception"
