"""One exception hierarchy for everything that can go wrong talking to the EHR."""

from __future__ import annotations

from typing import Any

from app.core.errors import SlotsyncError


class EhrError(SlotsyncError):
    """Base of EHR failures; ``status`` is the EHR's HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None):
        super().__init__(message)
        self.status = status
        self.url = url
        # OperationOutcome issues a caller adds on the way up (e.g. "the reschedule's
        # cancel step already happened"), reported after the EHR's own.
        self.issues: list[dict[str, object]] = []


class EhrUnavailable(EhrError):
    """Transient: connection failure, 5xx or 429 after the retries were used up."""


class EhrTimeout(EhrUnavailable):
    """The EHR did not answer in time."""


class EhrNotProcessed(EhrUnavailable):
    """The request certainly did nothing: it never reached the EHR, or the EHR throttled it."""


class EhrRejected(EhrError):
    """The EHR understood and refused (4xx other than 429); not retried."""

    def __init__(self, message: str, *, status: int, url: str | None = None, outcome=None):
        super().__init__(message, status=status, url=url)
        self.outcome = outcome


class EhrProtocolError(EhrError):
    """The EHR answered something we cannot use (not JSON, not a Bundle, truncated)."""


class EhrAuthError(EhrError):
    """We could not obtain credentials for the EHR (token endpoint refused or failed)."""


class EhrConflict(EhrRejected):
    """The EHR refused because a slot or the appointment is no longer in the needed state
    (409/412, or an Appointment answered ``cancelled``)."""


class EhrOutcomeUnknown(EhrUnavailable):
    """A write reached the EHR and no definite answer came back: it may have been applied.

    Raised only for writes that are not safe to repeat; the caller reads the EHR's
    state back before deciding anything.
    """


class EhrWriteTimeout(EhrOutcomeUnknown, EhrTimeout):
    """A non-repeatable write timed out after it was sent."""


_ISSUE_FIELDS = ("severity", "code", "details", "diagnostics", "expression", "location")


def outcome_issues(body: Any) -> list[dict[str, Any]]:
    """The issues of an OperationOutcome body (none for anything else)."""
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return [i for i in body.get("issue") or () if isinstance(i, dict)]
    return []


def ehr_issues(exc: EhrError) -> list[dict[str, Any]]:
    """The issues of the EHR's OperationOutcome for a refusal, trimmed to the standard
    fields: what we pass on to the consumer of the EHR's own reasons."""
    return [
        {k: issue[k] for k in _ISSUE_FIELDS if k in issue}
        for issue in outcome_issues(getattr(exc, "outcome", None))
        if issue.get("severity") and issue.get("code")
    ]
