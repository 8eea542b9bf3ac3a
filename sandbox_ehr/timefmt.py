"""FHIR date/time parsing and fast local-time rendering of epoch minutes.

Slots are stored as UTC epoch minutes; FHIR output shows them in the clinic's
local offset (``2026-11-26T09:00:00-05:00``) as real EHRs do. Rendering a
million of them must not build a ``datetime`` each, so offsets are cached per
(zone, UTC hour) and dates per local day.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BadDateTime(ValueError):
    """A request carried a date/time FHIR would not accept."""


@lru_cache(maxsize=65536)
def offset_minutes(tz: str, utc_hour: int) -> int:
    """UTC offset of ``tz`` during the given UTC hour since the epoch."""
    moment = _EPOCH + timedelta(hours=utc_hour)
    off = moment.astimezone(ZoneInfo(tz)).utcoffset()
    return int(off.total_seconds() // 60) if off is not None else 0


@lru_cache(maxsize=4096)
def _day_text(day_number: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day_number)).isoformat()


@lru_cache(maxsize=64)
def offset_text(minutes: int) -> str:
    """``-300`` -> ``-05:00``."""
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def local_iso(minute: int, offset: int) -> str:
    """Epoch minute rendered at a fixed offset, seconds included."""
    local = minute + offset
    day, rem = divmod(local, 1440)
    return f"{_day_text(day)}T{rem // 60:02d}:{rem % 60:02d}:00{offset_text(offset)}"


def utc_iso(minute: int) -> str:
    """Epoch minute as ``YYYY-MM-DDTHH:MM:SSZ`` (the ground-truth format)."""
    day, rem = divmod(minute, 1440)
    return f"{_day_text(day)}T{rem // 60:02d}:{rem % 60:02d}:00Z"


def local_date(tz: str, minute: int) -> date:
    local = minute + offset_minutes(tz, minute // 60)
    return date(1970, 1, 1) + timedelta(days=local // 1440)


@lru_cache(maxsize=65536)
def instant_ms(ms: int) -> str:
    """Milliseconds since the epoch as a FHIR instant (``...T10:00:00.123Z``)."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def now_instant() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_datetime(text: str) -> tuple[datetime, datetime]:
    """A FHIR date/dateTime/instant -> the [start, end) range it denotes, in UTC.

    ``2026-11-26`` is the whole UTC day, ``2026-11`` the whole month, a full
    dateTime a single instant (start == end). Naive times are taken as UTC.
    """
    text = text.strip()
    try:
        if len(text) == 4 and text.isdigit():
            lo = datetime(int(text), 1, 1, tzinfo=UTC)
            return lo, lo.replace(year=lo.year + 1)
        if len(text) == 7:
            y, m = int(text[:4]), int(text[5:7])
            lo = datetime(y, m, 1, tzinfo=UTC)
            return lo, (lo + timedelta(days=32)).replace(day=1)
        if len(text) == 10:
            lo = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return lo, lo + timedelta(days=1)
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadDateTime(f"not a FHIR date/dateTime: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment, moment


def ceil_minute(moment: datetime) -> int:
    """Smallest epoch minute m with m*60s >= moment (so ``start >= moment`` <=> ``m >= this``)."""
    return math.ceil((moment - _EPOCH).total_seconds() / 60)


def to_ms(moment: datetime) -> int:
    return int((moment - _EPOCH).total_seconds() * 1000)


def minute_to_datetime(minute: int) -> datetime:
    return _EPOCH + timedelta(minutes=minute)


def http_date(moment: datetime) -> str:
    """RFC 9110 date for the ``Expires`` header."""
    return moment.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
