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
from datetime import datetime

from app.cache import repository as repo
from app.cache.db import transaction

from .chunk import Chunk, ChunkResult, sync_chunk
from .context import SyncContext
from .coordination import Coordinator, lock_names
from .discovery import discover_schedules
from .dispatch import Dispatcher
from .windows import align

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
) -> bool:
    """Enqueue a refresh unless an identical one is still queued; True if enqueued."""
    return _enqueue_once(
        coord,
        pending_key(f"schedule:{schedule_id}", *window),
        ttl,
        lambda: dispatcher.refresh(schedule_id, *window),
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


def refresh_schedule(
    ctx: SyncContext, schedule_id: str, start: datetime, end: datetime
) -> ChunkResult:
    """Replace the schedule's window with the EHR's current answer (idempotent).

    The queued marker goes once the schedule lock is held (notifications after that
    queue a refresh of their own), and also when this attempt fails, lock or no lock:
    a notification must never be coalesced into an attempt that is going to be retried
    later. Recording a final failure is the caller's (the task knows its budget).
    """
    chunk = Chunk((schedule_id,), start, end)
    marker = pending_key(f"schedule:{schedule_id}", start, end)
    try:
        with ctx.coord.hold(
            lock_names(chunk.schedule_ids),
            ttl=ctx.settings.schedule_lock_seconds,
            wait=ctx.lock_wait,
        ) as holder:
            # From here on the fetch starts after any notification already received.
            ctx.coord.release(marker)
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
