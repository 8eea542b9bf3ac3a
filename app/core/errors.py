"""The one exception hierarchy: everything slotsync raises on purpose is a SlotsyncError.

Each kind says how the API answers it (``http_status``, a FHIR issue code); one
handler (:mod:`app.api.errors`) maps them to OperationOutcome responses, and the EHR's
failures (:mod:`app.ehr.errors`) by their own rule in the same place. A kind left at
500 is a fault of ours: the client sees only a generic message and the request id.
Nothing here imports web code, so services and workers raise them freely.
"""

from __future__ import annotations


class SlotsyncError(Exception):
    """Base: an error with an HTTP status and a FHIR issue code."""

    http_status = 500
    code = "exception"
    severity = "error"

    def __init__(
        self,
        diagnostics: object = "",
        *,
        expression: str | None = None,
        issues: list[dict[str, object]] | None = None,
    ):
        super().__init__(diagnostics)
        self.diagnostics = str(diagnostics)
        self.expression = expression
        # Further OperationOutcome issues to report after the main one (e.g. the EHR's own).
        self.issues = issues or []


class InvalidParameter(SlotsyncError):
    """A request parameter is missing, malformed or contradictory."""

    http_status = 400
    code = "invalid"


class NotFound(SlotsyncError):
    http_status = 404
    code = "not-found"


class Conflict(SlotsyncError):
    http_status = 409
    code = "conflict"


class UnsupportedMediaType(SlotsyncError):
    http_status = 415
    code = "not-supported"


class BusinessRuleViolation(SlotsyncError):
    http_status = 422
    code = "business-rule"


class CacheStale(SlotsyncError):
    """The cache is older than the configured staleness limit."""

    http_status = 503
    code = "transient"


class EhrNoAnswer(SlotsyncError):
    """The EHR did not answer a write in time; the diagnostics say what is known of its state."""

    http_status = 504
    code = "timeout"


class EhrBadAnswer(SlotsyncError):
    """The EHR answered a write with something that contradicts the request."""

    http_status = 502
    code = "exception"
