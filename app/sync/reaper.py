"""The reaper: PostgreSQL's run tables are the truth about what work is left; the broker
only carries messages, and messages get lost. Every ``REAPER_SECONDS`` (Celery beat,
or the in-process scheduler of embedded mode) it:

1. starts the follow-ups that are due (:mod:`app.sync.follow_up`);
2. sends again every chunk whose lease expired: its worker died (SIGKILL, OOM, a lost
   host), whatever pool it ran, long before the broker's visibility timeout;
3. sends again the chunks of a run that has been quiet for ``RUN_QUIET_SECONDS``
   (nothing claimed, finished or put off) whose next try is due: their messages were
   lost (Redis restarted empty) or never sent (a planner died between plan and send);
4. fails any run without progress for ``RUN_STALL_SECONDS`` (its pending chunks with
   that reason), which schedules the follow-up that replans them.

Sending a chunk twice is harmless: an attempt first takes the chunk's lease, and a
finished chunk is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from app.cache import recovery
from app.cache import runs as runs_repo
from app.cache.db import transaction

from .context import SyncContext
from .dispatch import Dispatcher
from .runs import after_run

log = logging.getLogger(__name__)

CLAIM = "pending:reaper"


@dataclass(frozen=True, slots=True)
class ReapReport:
    started: int = 0  # follow-ups begun
    lost_workers: int = 0  # chunks whose lease expired, sent again
    resent: int = 0  # chunks of quiet runs sent again
    stalled: int = 0  # runs failed for lack of progress
    skipped: bool = False  # another reaper is at it


def send_chunks(ctx: SyncContext, dispatcher: Dispatcher, run_id: int, seqs: Sequence[int]) -> None:
    """Hand chunks to the workers, recording when (the reaper's measure of a lost message)."""
    if not seqs:
        return
    with transaction(ctx.engine) as session:
        runs_repo.mark_dispatched(session, run_id, list(seqs), ctx.clock())
    dispatcher.run_chunks(run_id, seqs)


def reap(ctx: SyncContext, dispatcher: Dispatcher) -> ReapReport:
    settings = ctx.settings
    if not ctx.coord.claim(CLAIM, max(1.0, settings.reaper_seconds * 0.8)):
        return ReapReport(skipped=True)
    now = ctx.clock()
    lease = timedelta(seconds=settings.chunk_lease_seconds)
    quiet = timedelta(seconds=settings.run_quiet_seconds)
    started = 0
    with transaction(ctx.engine) as session:
        due = recovery.due_follow_ups(session, now)
    for run_id in due:
        with transaction(ctx.engine) as session:
            if not recovery.start_scheduled(session, run_id, now):
                continue
            seqs = runs_repo.pending_chunks(session, run_id)
        log.info("follow-up run %s is due: %s chunks", run_id, len(seqs))
        send_chunks(ctx, dispatcher, run_id, seqs)
        started += 1

    with transaction(ctx.engine) as session:
        stuck = {r.id for r in recovery.stuck_runs(session, now, settings.run_stall_seconds)}
        active = [(r.id, r.status, r.progress_at or r.started_at, r.started_at)
                  for r in recovery.active_runs(session)]  # fmt: skip
    lost = resent = stalled = 0
    for run_id, status, progress_at, started_at in active:
        if run_id in stuck:
            stalled += _fail_stalled(ctx, run_id, status, now - progress_at)
            continue
        if status != "running":
            continue  # being planned: its planner task retries, the stall rule is its net
        with transaction(ctx.engine) as session:
            chunks = recovery.pending_chunk_states(session, run_id)
        dead = [c.seq for c in chunks if c.claimed and (c.heartbeat_at or now) < now - lease]
        idle: list[int] = []
        if now - progress_at >= quiet:
            idle = [
                c.seq
                for c in chunks
                if not c.claimed
                and now >= (c.next_attempt_at or c.dispatched_at or started_at) + quiet
            ]
        if dead:
            log.warning("run %s: chunks %s lost their worker; sending them again", run_id, dead)
        if idle:
            log.warning("run %s quiet: sending %s due chunks again", run_id, len(idle))
        send_chunks(ctx, dispatcher, run_id, sorted(set(dead) | set(idle)))
        lost += len(dead)
        resent += len(idle)
    return ReapReport(started=started, lost_workers=lost, resent=resent, stalled=stalled)


def _fail_stalled(ctx: SyncContext, run_id: int, status: str, idle: timedelta) -> int:
    error = f"no progress for {int(idle.total_seconds())} s (work lost or no worker took it)"
    now = ctx.clock()
    finished: str | None = None
    with transaction(ctx.engine) as session:
        if status == "planning":
            finished = (
                "failed"
                if runs_repo.close_planning(session, run_id, error=error, now=now)
                else None
            )
        else:
            for seq in runs_repo.pending_chunks(session, run_id):
                outcome = runs_repo.finish_chunk(
                    session, run_id, seq, ok=False, finished_at=now, error=error
                )
                finished = outcome.run_finished or finished
    if finished is None:
        return 0
    log.error("run %s stalled: %s; failed and replanned", run_id, error)
    after_run(ctx, run_id, finished)
    return 1
