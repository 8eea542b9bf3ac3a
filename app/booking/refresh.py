"""Re-reading schedule windows from the EHR right after a write changed them.

After a conflict (the EHR says a slot is gone) or a confirmed cancellation the
cache must catch up now, not at the next notification. The service hands the
affected (schedule, start, end) windows to a ``refresh`` callable; the default
here queues a refresh of each schedule's whole UTC days on the sync pipeline,
exactly as a notification would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from app.sync.coordination import Coordinator
from app.sync.dispatch import Dispatcher
from app.sync.refresh import request_refresh

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


def refresh_through_sync(
    coord: Coordinator, dispatcher: Dispatcher, windows: Sequence[Window], *, ttl: float
) -> None:
    """Queue a coalesced refresh of each schedule's affected days on the sync pipeline.

    The same path as a notification: works for both EHR flavours, runs on the
    workers (or the local pool in embedded mode), and merges with any refresh of
    the same days already queued.
    """
    by_schedule: dict[str, list[Window]] = {}
    for w in windows:
        by_schedule.setdefault(w.schedule_id, []).append(w)
    for schedule_id, own in sorted(by_schedule.items()):
        for start, end in day_windows(own):
            request_refresh(coord, dispatcher, schedule_id, (start, end), ttl=ttl)


def refresh_quietly(refresh: Callable[[Sequence[Window]], None], windows: Sequence[Window]) -> None:
    """Run ``refresh`` and log a failure: the write already happened, the sync catches up."""
    if not windows:
        return
    try:
        refresh(windows)
    except Exception:
        log.warning("refresh of %d window(s) after a write failed", len(windows), exc_info=True)
