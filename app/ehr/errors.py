"""One exception hierarchy for everything that can go wrong talking to the EHR."""

from __future__ import annotations


class EhrError(Exception):
    """Base of EHR failures; ``status`` is the EHR's HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None):
        super().__init__(message)
        self.status = status
        self.url = url


class EhrUnavailable(EhrError):
    """Transient: connection failure, 5xx or 429 after the retries were used up."""


class EhrTimeout(EhrUnavailable):
    """The EHR did not answer in time."""


class EhrRejected(EhrError):
    """The EHR understood and refused (4xx other than 429); not retried."""

    def __init__(self, message: str, *, status: int, url: str | None = None, outcome=None):
        super().__init__(message, status=status, url=url)
        self.outcome = outcome


class EhrProtocolError(EhrError):
    """The EHR answered something we cannot use (not JSON, not a Bundle, truncated)."""


class EhrAuthError(EhrError):
    """We could not obtain credentials for the EHR (token endpoint refused or failed)."""
