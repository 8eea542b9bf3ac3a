"""Times as FHIR and our JSON write them: every FHIR instant format we use, in one place.

UTC is written ``Z``. Three precisions, each for a reason: as given (sync cursors and
status), seconds (appointment times, remembered: answers repeat the same slot times),
milliseconds (the SMART feed, whose ``_since`` must round-trip a ``transactionTime``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


def fhir_instant(value: datetime) -> str:
    """``2030-01-07T09:00:00Z`` (microseconds kept if any): a FHIR instant/dateTime."""
    return value.isoformat().replace("+00:00", "Z")


def optional_instant(value: datetime | None) -> str | None:
    return fhir_instant(value) if value is not None else None


@lru_cache(maxsize=1 << 16)
def second_instant(moment: datetime) -> str:
    """``2030-01-07T09:00:00Z``: UTC, seconds precision. Remembered: answers repeat the
    same slot times, and formatting one costs more than finding it."""
    if moment.tzinfo is None:
        raise ValueError("appointment times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def millisecond_instant(value: datetime) -> str:
    """``2030-01-07T09:00:00.000Z``: UTC with milliseconds (a naive time is UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
