"""Time windows of sync work: whole UTC days, so every write lines up with the day marks.

Notification periods, admin windows and load windows all become half-open
``[00:00 UTC, 00:00 UTC)`` ranges clipped to the horizon; a day is the unit the
cache records confirmations for (``sync_marks``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

DAY = timedelta(days=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


def day_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def day_end(moment: datetime) -> datetime:
    """The first midnight at or after ``moment`` (an exact midnight stays put)."""
    start = day_start(moment)
    return start if start == moment else start + DAY


def is_midnight(moment: datetime) -> bool:
    return moment.tzinfo is not None and day_start(moment) == moment


def days_in(start: datetime, end: datetime) -> list[datetime]:
    """The UTC midnights of every day in the day-aligned window [start, end)."""
    days = []
    cursor = day_start(start)
    while cursor < end:
        days.append(cursor)
        cursor += DAY
    return days


def horizon_windows(
    start: datetime, horizon_days: int, window_days: int
) -> Iterator[tuple[datetime, datetime]]:
    """Consecutive half-open windows covering [start, start + horizon)."""
    end = start + timedelta(days=horizon_days)
    step = timedelta(days=window_days)
    cursor = start
    while cursor < end:
        yield cursor, min(cursor + step, end)
        cursor += step


def horizon(now: datetime, horizon_days: int) -> tuple[datetime, datetime]:
    """The cached span: from the start of today (UTC) for ``horizon_days`` days."""
    start = day_start(now)
    return start, start + timedelta(days=horizon_days)


def align(
    start: datetime | None, end: datetime | None, limits: tuple[datetime, datetime]
) -> tuple[datetime, datetime] | None:
    """A period widened to whole days and clipped to ``limits``; None if nothing is left.

    A missing bound means "from/to the edge of the horizon".
    """
    lo = max(day_start(start), limits[0]) if start else limits[0]
    hi = min(day_end(end), limits[1]) if end else limits[1]
    if start and end and start == end:  # a one-instant period still names its day
        hi = min(day_start(end) + DAY, limits[1])
    return (lo, hi) if lo < hi else None


def split(start: datetime, end: datetime, window_days: int) -> list[tuple[datetime, datetime]]:
    """A day-aligned span cut into windows of at most ``window_days``."""
    days = (end - start).days
    return list(horizon_windows(start, days, window_days))
