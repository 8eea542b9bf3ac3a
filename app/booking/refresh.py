"""Re-reading schedule windows from the EHR right after a write changed them.

After a conflict (the EHR says a slot is gone) or a confirmed cancellation the
cache must catch up now, not at the next notification. The service hands the
affected (schedule, start, end) windows to a ``refresh`` callable; the default
here re-reads whole UTC days through the initial-load path. The sync pipeline's
per-schedule refresh can replace it without touching the service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Engine

from app.ehr.client import EhrClient
from app.sync.load import load_window

log = logging.getLogger(__name__)


class Window(NamedTuple):
    schedule_id: str
    start: datetime
    end: datetime


def day_windows(windows: Iterable[Window]) -> list[tuple[datetime, datetime]]:
    """The distinct whole UTC days the windows touch, merged into contiguous ranges."""
    days: set[datetime] = set()
    for w in windows:
        day = w.start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        while day < w.end:
            days.add(day)
            day += timedelta(days=1)
    ranges: list[tuple[datetime, datetime]] = []
    for day in sorted(days):
        if ranges and ranges[-1][1] == day:
            ranges[-1] = (ranges[-1][0], day + timedelta(days=1))
        else:
            ranges.append((day, day + timedelta(days=1)))
    return ranges


def refresh_with_load(engine: Engine, client: EhrClient, windows: Sequence[Window]) -> None:
    """Snapshot-replace every day the windows touch (all schedules of those days)."""
    for start, end in day_windows(windows):
        load_window(engine, client, start, end)


def refresh_quietly(refresh: Callable[[Sequence[Window]], None], windows: Sequence[Window]) -> None:
    """Run ``refresh`` and log a failure: the write already happened, the sync catches up."""
    if not windows:
        return
    try:
        refresh(windows)
    except Exception:
        log.warning("refresh of %d window(s) after a write failed", len(windows), exc_info=True)
