"""Refreshes: one schedule's window re-read now, because the EHR said it changed.

:func:`request_refresh` is the coalescing front door (webhook, poller): it
enqueues a refresh only if none is already queued for that schedule and window.
:func:`refresh_schedule` is the worker side: it takes the schedule lock, drops
the queued marker (later notifications queue anew) and snapshot-replaces the
window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import suppress
from datetime import UTC, datetime, timedelta

from app.cache import repository as repo
from app.cache.db import transaction
from app.ehr.client import can_filter_to

from .chunk import Chunk, ChunkResult, sync_chunk
from .context import SyncContext
from .coordination import Coordinator, Holder, ScheduleBusy, lock_names
from .discovery import discover_schedules
from .dispatch import Dispatcher
from .windows import DAY, align, days_in

log = logging.getLogger(__name__)


def pending_key(subject: str, start: datetime, end: datetime) -> str:
    return f"pending:{subject}:{start:%Y%m%d}:{end:%Y%m%d}"


def request_refresh(
    coord: Coordinator,
    dispatcher: Dispatcher,
    schedule_id: str,
    window: tuple[datetime, datetime],
    *,
    ttl: float,
    heard_at: datetime | None = None,
) -> bool:
    """Enqueue a refresh unless an identical one is still queued; True if enqueued.

    ``heard_at``: when the change was heard. It goes on the queued refresh's claim,
    so that the refresh can tell whether a later fetch has read the change already
    (see :func:`refresh_schedule`); None means "unknown": it is always read."""
    key = pending_key(f"schedule:{schedule_id}", *window)
    stamp = None if heard_at is None else heard_at.timestamp()
    if not coord.claim(key, ttl, stamp):
        return False
    _enqueue(coord, key, lambda: dispatcher.refresh(schedule_id, *window))
    return True


def request_actor_refresh(
    coord: Coordinator,
    dispatcher: Dispatcher,
    actor_ref: str,
    window: tuple[datetime, datetime],
    *,
    ttl: float,
) -> bool:
    """:func:`request_refresh` for every schedule of an actor."""
    key = pending_key(f"actor:{actor_ref}", *window)
    if not coord.claim(key, ttl):
        return False
    _enqueue(coord, key, lambda: dispatcher.refresh_actor(actor_ref, *window))
    return True


def _enqueue(coord: Coordinator, key: str, enqueue: Callable[[], object]) -> None:
    """Run ``enqueue`` for the claim on ``key``; if it fails (broker down) the claim is
    given back: a claim without a queued refresh would coalesce every redelivery of
    the notification into nothing."""
    try:
        enqueue()
    except Exception:
        with suppress(Exception):  # best effort: the enqueue's own error is what matters
            coord.release(key)
        raise


# The API's and the workers' clocks may differ by up to this much: a fetch counts as
# having seen a notified change only if it started at least this long after it was heard.
CLOCK_MARGIN = timedelta(seconds=1)


def refresh_schedule(
    ctx: SyncContext, schedule_id: str, start: datetime, end: datetime
) -> ChunkResult:
    """Replace the schedule's window with the EHR's current answer (idempotent).

    The queued claim is taken once the schedule lock is held: notifications after
    that queue a refresh of their own, those before it are covered by the fetch about
    to start. The claim's stamp says when the latest of them was heard; if every day
    of the window has since been written by a fetch that started later (another
    refresh, a load chunk), that fetch saw the changes and this one reads nothing. A
    backlog of refreshes after a burst of notifications thus drains at the cost of a
    query each, not an EHR read each. Without a claim (a retry, a booking's refresh)
    the window is always read.

    A schedule that STU3 ``$prefetch`` cannot name (a device's) is read in unfiltered
    answers holding every schedule, so it is refreshed day by day for all schedules
    at that same cost (see :func:`_refresh_whole_days`).

    If this attempt fails, the claim is dropped all the same: a notification must
    never be coalesced into an attempt that is going to be retried later. Recording a
    final failure is the caller's (the task knows its budget).
    """
    marker = pending_key(f"schedule:{schedule_id}", start, end)
    try:
        if _unnamed(ctx, schedule_id):
            return _refresh_whole_days(ctx, schedule_id, start, end, marker)
        chunk = Chunk((schedule_id,), start, end)
        with ctx.coord.hold(
            lock_names(chunk.schedule_ids),
            ttl=ctx.settings.schedule_lock_seconds,
            wait=ctx.lock_wait,
        ) as holder:
            # From here on the fetch starts after any notification already received.
            heard = ctx.coord.take(marker)
            if heard is not None and _seen_since(ctx, schedule_id, start, end, heard):
                return COVERED
            return _sync(ctx, chunk, holder)
    except Exception:
        with suppress(Exception):  # Redis away: the marker expires on its own
            ctx.coord.release(marker)
        raise


COVERED = ChunkResult(seen=0, upserted=0, deleted=0, unchanged=0, covered=True)


def _sync(ctx: SyncContext, chunk: Chunk, holder: Holder) -> ChunkResult:
    return sync_chunk(
        ctx.engine,
        ctx.client,
        chunk,
        clock=ctx.clock,
        on_page=holder.extend,
        refetch_attempts=ctx.settings.ehr_refetch_attempts,
    )


def _unnamed(ctx: SyncContext, schedule_id: str) -> bool:
    """Whether the EHR can only answer this schedule's slots together with all others'."""
    if ctx.client.version.names_schedules:
        return False
    with transaction(ctx.engine) as session:
        schedule = repo.schedules_by_id(session, [schedule_id]).get(schedule_id)
    return schedule is None or not can_filter_to(schedule, ctx.client.version)


def _refresh_whole_days(
    ctx: SyncContext, schedule_id: str, start: datetime, end: datetime, marker: str
) -> ChunkResult:
    """Refresh every schedule, one day at a time, the days no later fetch has read.

    Each day is an unfiltered read of the whole organisation's day, so days are
    locked (not schedules) and read once for every such refresh queued: a second
    refresh of the same day waits for the first and then finds it covered. A first
    pass takes only the days nobody is reading, so that two refreshes of overlapping
    windows share the days instead of queueing behind each other.
    """
    heard = ctx.coord.take(marker)  # every fetch below starts after this
    results: list[ChunkResult] = []
    waiting: list[datetime] = []
    for day in days_in(start, end):
        done = _refresh_day(ctx, schedule_id, day, heard, wait=0.0)
        if done is None:
            waiting.append(day)
        else:
            results.append(done)
    for day in waiting:
        done = _refresh_day(ctx, schedule_id, day, heard, wait=ctx.lock_wait)
        assert done is not None  # with a wait, a busy lock raises ScheduleBusy
        results.append(done)
    return ChunkResult(
        seen=sum(r.seen for r in results),
        upserted=sum(r.upserted for r in results),
        deleted=sum(r.deleted for r in results),
        unchanged=sum(r.unchanged for r in results),
        skipped_days=sum(r.skipped_days for r in results),
        rejected=sum(r.rejected for r in results),
        covered=all(r.covered for r in results),
    )


def _refresh_day(
    ctx: SyncContext, schedule_id: str, day: datetime, heard: float | None, *, wait: float
) -> ChunkResult | None:
    """One whole day for every schedule, unless already read since ``heard``; None if
    its lock stayed busy for ``wait`` = 0 (with a wait, that raises ScheduleBusy)."""
    try:
        with ctx.coord.hold(
            [f"day:{day:%Y%m%d}"], ttl=ctx.settings.schedule_lock_seconds, wait=wait
        ) as holder:
            if heard is not None and _seen_since(ctx, schedule_id, day, day + DAY, heard):
                return COVERED
            return _sync(ctx, Chunk(None, day, day + DAY), holder)
    except ScheduleBusy:
        if wait > 0:
            raise
        return None


def _seen_since(
    ctx: SyncContext, schedule_id: str, start: datetime, end: datetime, heard: float
) -> bool:
    """Whether every day of the window was written by a fetch started after ``heard``."""
    since = datetime.fromtimestamp(heard, UTC) + CLOCK_MARGIN
    with transaction(ctx.engine) as session:
        fresher = repo.fresher_days(session, {schedule_id}, start, end, since)
    return all((schedule_id, day) in fresher for day in days_in(start, end))


def refresh_windows(
    ctx: SyncContext, windows: Iterable[tuple[str, datetime, datetime]]
) -> list[ChunkResult]:
    """Refresh (schedule, start, end) windows now, each widened to whole days (the
    booking service calls this after the EHR said a slot changed under it)."""
    limits = ctx.horizon()
    results = []
    for schedule_id, start, end in windows:
        window = align(start, end, limits)
        if window is not None:
            results.append(refresh_schedule(ctx, schedule_id, *window))
    return results


def refresh_actor(
    ctx: SyncContext, actor_ref: str, start: datetime, end: datetime
) -> list[ChunkResult]:
    """Refresh every schedule of an actor; an actor the cache does not know is looked up."""
    ctx.coord.release(pending_key(f"actor:{actor_ref}", start, end))
    with transaction(ctx.engine) as session:
        ids = repo.schedule_ids_for_actors(session, [[actor_ref]]) or set()
    if not ids:
        ids = set(discover_schedules(ctx, actor=actor_ref))
        if not ids:
            log.warning("notification for %s, which has no schedule in the EHR", actor_ref)
    return [refresh_schedule(ctx, sid, start, end) for sid in sorted(ids)]
