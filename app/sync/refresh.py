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
from datetime import datetime, timedelta

from app.cache import repository as repo
from app.cache.db import transaction
from app.ehr.client import can_filter_to

from .chunk import Chunk, ChunkResult, sync_chunk
from .context import SyncContext
from .coordination import Coordinator, lock_names
from .discovery import discover_schedules
from .dispatch import Dispatcher
from .windows import align, days_in

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

    ``heard_at``: when the change was heard, so that the refresh can tell whether a
    later fetch has already read it (see :func:`refresh_schedule`)."""
    return _enqueue_once(
        coord,
        pending_key(f"schedule:{schedule_id}", *window),
        ttl,
        lambda: dispatcher.refresh(schedule_id, *window, heard_at),
    )


def request_actor_refresh(
    coord: Coordinator,
    dispatcher: Dispatcher,
    actor_ref: str,
    window: tuple[datetime, datetime],
    *,
    ttl: float,
) -> bool:
    """:func:`request_refresh` for every schedule of an actor."""
    return _enqueue_once(
        coord,
        pending_key(f"actor:{actor_ref}", *window),
        ttl,
        lambda: dispatcher.refresh_actor(actor_ref, *window),
    )


def _enqueue_once(coord: Coordinator, key: str, ttl: float, enqueue: Callable[[], object]) -> bool:
    """Run ``enqueue`` unless ``key`` is claimed (an identical refresh still queued).

    If the enqueue fails (broker down) the claim is given back: a claim without a
    queued refresh would coalesce every redelivery of the notification into nothing."""
    if not coord.claim(key, ttl):
        return False
    try:
        enqueue()
    except Exception:
        with suppress(Exception):  # best effort: the enqueue's own error is what matters
            coord.release(key)
        raise
    return True


# The API's and the workers' clocks may differ by up to this much: a fetch counts as
# having seen a notified change only if it started at least this long after it arrived.
CLOCK_MARGIN = timedelta(seconds=1)


def refresh_schedule(
    ctx: SyncContext,
    schedule_id: str,
    start: datetime,
    end: datetime,
    heard_at: datetime | None = None,
) -> ChunkResult:
    """Replace the schedule's window with the EHR's current answer (idempotent).

    ``heard_at`` is when the change was heard (notification or poll). If every
    day of the window has since been written by a fetch that started later (another
    refresh, a load chunk), that fetch saw the change and this one is skipped: a
    backlog of refreshes after a burst of notifications drains at the cost of a
    query each, not an EHR read each.

    A schedule that STU3 ``$prefetch`` cannot name (a device's) is read in an
    unfiltered answer holding every schedule of the window, so the whole window is
    refreshed for all of them at that same cost (and the other refreshes queued for
    it are skipped as above).

    The queued marker goes once the schedule lock is held (notifications after that
    queue a refresh of their own), and also when this attempt fails, lock or no lock:
    a notification must never be coalesced into an attempt that is going to be retried
    later. Recording a final failure is the caller's (the task knows its budget).
    """
    marker = pending_key(f"schedule:{schedule_id}", start, end)
    try:
        chunk = _refresh_chunk(ctx, schedule_id, start, end)
        with ctx.coord.hold(
            lock_names(chunk.schedule_ids) or [f"window:{start:%Y%m%d}:{end:%Y%m%d}"],
            ttl=ctx.settings.schedule_lock_seconds,
            wait=ctx.lock_wait,
        ) as holder:
            # From here on the fetch starts after any notification already received.
            ctx.coord.release(marker)
            if heard_at is not None and _seen_since(ctx, schedule_id, start, end, heard_at):
                return ChunkResult(seen=0, upserted=0, deleted=0, unchanged=0, covered=True)
            return sync_chunk(
                ctx.engine,
                ctx.client,
                chunk,
                clock=ctx.clock,
                on_page=holder.extend,
                refetch_attempts=ctx.settings.ehr_refetch_attempts,
            )
    except Exception:
        with suppress(Exception):  # Redis away: the marker expires on its own
            ctx.coord.release(marker)
        raise


def _refresh_chunk(ctx: SyncContext, schedule_id: str, start: datetime, end: datetime) -> Chunk:
    """The schedule's window, or the whole window where the EHR cannot filter to it."""
    with transaction(ctx.engine) as session:
        schedule = repo.schedules_by_id(session, [schedule_id]).get(schedule_id)
    unnamed = schedule is None or not can_filter_to(schedule, ctx.client.fhir_version)
    if unnamed and ctx.client.fhir_version == "stu3":
        return Chunk(None, start, end)
    return Chunk((schedule_id,), start, end)


def _seen_since(
    ctx: SyncContext, schedule_id: str, start: datetime, end: datetime, heard: datetime
) -> bool:
    """Whether every day of the window was written by a fetch started after ``heard``."""
    with transaction(ctx.engine) as session:
        fresher = repo.fresher_days(session, {schedule_id}, start, end, heard + CLOCK_MARGIN)
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
