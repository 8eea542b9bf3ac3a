"""Times as FHIR and our JSON write them: ``Z`` for UTC, the offset otherwise."""

from __future__ import annotations

from datetime import datetime


def fhir_instant(value: datetime) -> str:
    """``2030-01-07T09:00:00Z`` (microseconds kept if any): a FHIR instant/dateTime."""
    return value.isoformat().replace("+00:00", "Z")


def optional_instant(value: datetime | None) -> str | None:
    return fhir_instant(value) if value is not None else None
