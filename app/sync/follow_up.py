"""Follow-ups: what failed for good is synced again later, exactly the windows that failed.

When a run ends ``failed`` (chunks out of retries, a planner that never reached the
EHR, a run the reaper found stalled) or a notification refresh runs out of retries,
a run of kind ``follow-up`` is recorded with exactly the failed windows, ``scheduled``
for later: 15 s, 30 s, 1 min, ... (``FOLLOW_UP_BASE_SECONDS`` doubling up to
``FOLLOW_UP_MAX_SECONDS``), at most ``FOLLOW_UP_MAX`` deep. The reaper starts it when
it is due. A follow-up that succeeds marks the run it repaired ``recovered``; one
that fails is followed up in turn, until the bound, after which the failure stays
visible in status until the next full load.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.cache import recovery
from app.cache import repository as repo
from app.cache import runs as runs_repo
from app.cache.db import transaction
from app.cache.models import SyncRunRow
from app.cache.runs import ChunkSpec

from .context import SyncContext
from .retry import Backoff
from .windows import split

log = logging.getLogger(__name__)

KIND = "follow-up"


def delay_seconds(ctx: SyncContext, generation: int) -> float:
    """How long before follow-up number ``generation`` (1 = the first) is due."""
    settings = ctx.settings
    schedule = Backoff(
        retries=settings.follow_up_max,
        base=settings.follow_up_base_seconds,
        cap=settings.follow_up_max_seconds,
    )
    return schedule.ceiling(generation - 1)


def run_ended(ctx: SyncContext, run_id: int, status: str) -> int | None:
    """Bookkeeping once a run has ended; returns the id of a follow-up it scheduled."""
    now = ctx.clock()
    with transaction(ctx.engine) as session:
        run = runs_repo.get_run(session, run_id)
        if run is None:
            return None
        if status == "ok":
            if run.root_run_id is not None:
                recovery.mark_recovered(session, run.root_run_id, now)
            return None
        if run.generation >= ctx.settings.follow_up_max:
            log.error(
                "run %s failed and was followed up %s times: giving up until the next full load",
                run_id,
                run.generation,
            )
            return None
        if recovery.child_of(session, run_id) is not None:
            return None
        specs = recovery.failed_chunk_specs(session, run_id)
        if not specs and run.window_start is not None and run.window_end is not None:
            # it never got planned: every schedule, whole windows (no discovery needed)
            windows = split(run.window_start, run.window_end, ctx.settings.load_bulk_window_days)
            specs = [ChunkSpec(i, None, start, end) for i, (start, end) in enumerate(windows)]
        if not specs:
            return None
        follow_up = _schedule(ctx, session, specs, scope=run.scope or "*", parent=run, now=now)
    log.warning("run %s failed: follow-up run %s scheduled", run_id, follow_up)
    return follow_up


def refresh_failed(
    ctx: SyncContext, schedule_id: str, start: datetime, end: datetime, error: str
) -> int:
    """A notification refresh ran out of retries: record it and follow the window up."""
    now = ctx.clock()
    with transaction(ctx.engine) as session:
        repo.record_schedule_error(session, [schedule_id], error)
        spec = ChunkSpec(0, (schedule_id,), start, end)
        follow_up = _schedule(ctx, session, [spec], scope=schedule_id, parent=None, now=now)
    log.warning("refresh of %s failed for good: follow-up run %s scheduled", schedule_id, follow_up)
    return follow_up


def _schedule(
    ctx: SyncContext,
    session: Session,
    specs: Sequence[ChunkSpec],
    *,
    scope: str,
    parent: SyncRunRow | None,
    now: datetime,
) -> int:
    generation = parent.generation + 1 if parent is not None else 1
    due = now + timedelta(seconds=delay_seconds(ctx, generation))
    renumbered = [ChunkSpec(i, s.schedule_ids, s.start, s.end) for i, s in enumerate(specs)]
    run_id = runs_repo.start_run(
        session,
        kind=KIND,
        scope=scope,
        window=(min(s.start for s in specs), max(s.end for s in specs)),
        started_at=now,
        status="scheduled",
        parent=parent,
        due_at=due,
    )
    if parent is None:
        recovery.set_generation(session, run_id, generation)
    runs_repo.add_chunks(session, run_id, renumbered)
    return run_id
