"""Runs: a full load or a resync, planned as chunks and executed chunk by chunk.

Planning writes the run and every chunk (schedules x window) to the database;
the chunks then run anywhere (Celery workers in parallel, or one after the other
in this process) and each one counts itself into the run when it commits. A
failed chunk is retried alone; if it still fails it is recorded as failed, its
previous cache content stays, and the run ends ``failed`` with the count.

Two chunkings (``SLOTSYNC_LOAD_CHUNKING``):

- ``schedule``: discover the schedules (``GET Schedule``), then one chunk per
  (schedule group, window). Memory per chunk is independent of the size of the
  organisation, chunks of different schedules never contend, and a failure costs
  one group's window. Used for R4 (``Slot?schedule=``) and STU3 organisations whose
  schedules all have a practitioner or location to filter ``$prefetch`` by.
- ``window``: every schedule x one (short) window per chunk. Used for EHRs without
  a Schedule search, and by ``auto`` (the default) for STU3 organisations with
  schedules ``$prefetch`` cannot name (devices): those would need an unfiltered
  fetch of every window anyway, so this fetches each slot once instead of twice.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.cache import feeds
from app.cache import repository as repo
from app.cache import runs as runs_repo
from app.cache.db import DATABASE_OUTAGES, transaction
from app.cache.runs import ChunkOutcome, ChunkSpec
from app.core.domain import Schedule
from app.ehr.client import PROVIDER_TYPES, can_filter_to
from app.fhir.versions import FhirVersion, fhir_version
from app.settings import Settings

from . import capabilities
from .chunk import Chunk, ChunkResult, sync_chunk
from .context import SyncContext
from .coordination import lock_names
from .discovery import DiscoveryUnsupported, discover_schedules
from .messages import ResyncRequest
from .retry import Backoff, describe_error, is_transient
from .windows import align, split

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PlannedRun:
    run_id: int
    seqs: list[int]  # the chunks still pending


@dataclass(frozen=True, slots=True)
class ChunkRun:
    status: str  # ok | failed | retry (put off) | skipped (already done) | held (elsewhere)
    result: ChunkResult | None = None
    error: str | None = None
    run_finished: str | None = None
    delay: float = 0.0  # with "retry": seconds until the next try is due


def group_schedules(
    schedules: Sequence[Schedule], per_chunk: int, version: FhirVersion
) -> list[tuple[str, ...]]:
    """Schedules fetched together, at most ``per_chunk`` a fetch.

    STU3 ``$prefetch`` filters by practitioner AND location, so only schedules with
    the same kinds of actors can share a fetch (a room's schedule has no
    practitioner to match), and schedules with neither (devices, services) share
    one unfiltered fetch. R4 names schedules directly.
    """
    by_kind: dict[tuple[bool, bool], list[str]] = {}
    unnamed: list[str] = []
    for schedule in sorted(schedules, key=lambda s: s.id):
        kinds = {ref.split("/", 1)[0] for ref in schedule.actor_refs}
        key = (bool(kinds & set(PROVIDER_TYPES)), "Location" in kinds)
        if not can_filter_to(schedule, version):
            unnamed.append(schedule.id)
        else:
            by_kind.setdefault((True, True) if version.names_schedules else key, []).append(
                schedule.id
            )
    groups = [
        tuple(ids[i : i + per_chunk])
        for _, ids in sorted(by_kind.items(), reverse=True)
        for i in range(0, len(ids), per_chunk)
    ]
    if unnamed:
        groups.append(tuple(unnamed))
    return groups


def _unnamed(schedules: Sequence[Schedule], settings: Settings) -> bool:
    """Whether some schedule has neither practitioner nor location (STU3 cannot filter it)."""
    return not all(can_filter_to(s, fhir_version(settings.ehr_fhir_version)) for s in schedules)


def build_chunks(
    windows: Sequence[tuple[datetime, datetime]], groups: Sequence[tuple[str, ...]] | None
) -> list[ChunkSpec]:
    """Window-major order: the near future is loaded first. ``groups=None``: all schedules."""
    specs: list[ChunkSpec] = []
    for start, end in windows:
        for group in groups if groups is not None else [None]:
            specs.append(ChunkSpec(seq=len(specs), schedule_ids=group, start=start, end=end))
    return specs


def plan_run(ctx: SyncContext, request: ResyncRequest, *, token: str | None = None) -> PlannedRun:
    """Record a run and its chunks; idempotent per ``token`` (a redelivered planner task).

    The run is recorded first (status ``planning``), so that a planner that cannot
    reach the EHR shows as a run retrying, and one whose retries run out as a failed
    run with its error (:func:`planning_failed`), never as nothing at all.
    """
    window = align(request.start, request.end, ctx.horizon())
    if window is None:
        raise ValueError("the requested window lies outside the cached horizon")
    settings = ctx.settings
    run_id = _planning_run(ctx, request, window, token)
    if run_id is None:  # planned already (a redelivered planner task)
        assert token is not None
        with transaction(ctx.engine) as session:
            existing = runs_repo.run_by_token(session, token)
            assert existing is not None
            return PlannedRun(existing.id, runs_repo.pending_chunks(session, existing.id))
    chunking = settings.load_chunking
    ids: list[str] | None = None
    try:
        capabilities.discover(ctx)  # what the EHR supports now (it may have changed)
        if request.actor:
            ids = discover_schedules(ctx, actor=request.actor)
        elif request.schedule_ids is not None:
            ids = sorted(set(request.schedule_ids))
        elif chunking != "window":
            try:
                ids = discover_schedules(ctx)
            except DiscoveryUnsupported as exc:
                log.warning("no Schedule search (%s): loading whole windows instead", exc)
    except Exception as exc:
        with transaction(ctx.engine) as session:
            runs_repo.note_error(session, run_id, describe_error(exc), ctx.clock())
        raise
    groups: list[tuple[str, ...]] | None = None
    if ids is not None:
        with transaction(ctx.engine) as session:
            known = repo.schedules_by_id(session, ids)
        schedules = [known.get(sid) or Schedule(id=sid, actor_refs=()) for sid in ids]
        if request.everything and chunking == "auto" and _unnamed(schedules, settings):
            # $prefetch would fetch whole windows for them anyway: fetch each slot once
            log.info("schedules $prefetch cannot name: loading whole windows")
            ids = None
        else:
            groups = group_schedules(
                schedules,
                settings.load_schedules_per_chunk,
                fhir_version(settings.ehr_fhir_version),
            )
    chunking = "window" if groups is None else "schedule"
    days = settings.load_bulk_window_days if groups is None else settings.load_window_days
    specs = build_chunks(split(*window, days), groups)
    with transaction(ctx.engine) as session:
        runs_repo.add_chunks(session, run_id, specs)
        runs_repo.planned(session, run_id, scope=request.scope(chunking), now=ctx.clock())
        if not specs:
            runs_repo.finish_run(session, run_id, status="ok", finished_at=ctx.clock())
    return PlannedRun(run_id, [s.seq for s in specs])


def _planning_run(
    ctx: SyncContext, request: ResyncRequest, window: tuple[datetime, datetime], token: str | None
) -> int | None:
    """The run being planned under ``token`` (created if new); None if already planned."""
    if token is not None:
        with transaction(ctx.engine) as session:
            existing = runs_repo.run_by_token(session, token)
            if existing is not None:
                return existing.id if existing.status == "planning" else None
    try:
        with transaction(ctx.engine) as session:
            return runs_repo.start_run(
                session,
                kind=request.kind,
                scope=request.scope(ctx.settings.load_chunking),
                window=window,
                started_at=ctx.clock(),
                token=token,
                status="planning",
            )
    except IntegrityError:
        if token is None:
            raise
        return _planning_run(ctx, request, window, token)  # a twin planner got there first


def planning_failed(ctx: SyncContext, token: str, error: str) -> None:
    """The planner under ``token`` gave up: its run ends failed and is followed up."""
    with transaction(ctx.engine) as session:
        run = runs_repo.run_by_token(session, token)
        if run is None or run.status != "planning":
            return
        closed = runs_repo.close_planning(session, run.id, error=error, now=ctx.clock())
    if closed:
        after_run(ctx, run.id, "failed")


def execute_chunk(ctx: SyncContext, run_id: int, seq: int) -> ChunkRun:
    """One attempt at one chunk of a run, with its outcome recorded in the database.

    The attempt holds the chunk's lease (a duplicate message finds it held or done and
    leaves it) and keeps it alive from a heartbeat thread, so that the reaper can tell
    a dead worker from a slow one. A transient failure gives the lease back with the
    time of the next try (``status="retry"``); the last attempt of the budget, or a
    permanent failure, records the chunk as failed. Only database or Redis trouble
    around the bookkeeping itself raises (the caller retries; the reaper is the net).
    """
    backoff = Backoff.from_settings(ctx.settings)
    token = uuid.uuid4().hex
    with transaction(ctx.engine) as session:
        claim = runs_repo.claim_chunk(
            session,
            run_id,
            seq,
            token=token,
            now=ctx.clock(),
            lease_seconds=ctx.settings.chunk_lease_seconds,
        )
    if claim.state == "missing":
        raise LookupError(f"no chunk {seq} in run {run_id}")
    if claim.state != "claimed" or claim.spec is None:
        return ChunkRun(status="skipped" if claim.state == "done" else "held")
    spec = claim.spec
    chunk = Chunk(spec.schedule_ids, spec.start, spec.end)
    outcomes: list[ChunkOutcome] = []

    def count(session: Session, result: ChunkResult) -> None:
        outcomes.append(
            runs_repo.finish_chunk(
                session,
                run_id,
                seq,
                ok=True,
                finished_at=ctx.clock(),
                seen=result.seen,
                upserted=result.upserted,
                deleted=result.deleted,
            )
        )

    try:
        with (
            Heartbeat(ctx, run_id, seq, token),
            ctx.coord.hold(
                lock_names(chunk.schedule_ids),
                ttl=ctx.settings.schedule_lock_seconds,
                wait=ctx.lock_wait,
            ) as holder,
        ):
            result = sync_chunk(
                ctx.engine,
                ctx.client,
                chunk,
                clock=ctx.clock,
                on_page=holder.extend,
                in_transaction=count,
                refetch_attempts=ctx.settings.ehr_refetch_attempts,
            )
    except Exception as exc:
        error = describe_error(exc)
        if is_transient(exc) and not backoff.exhausted(claim.attempts):
            delay = backoff.delay(claim.attempts - 1)
            log.info(
                "chunk %s/%s (%s) attempt %s failed, again in %.0fs: %s",
                run_id, seq, chunk.describe(), claim.attempts, delay, error,
            )  # fmt: skip
            now = ctx.clock()
            with transaction(ctx.engine) as session:
                runs_repo.release_chunk(
                    session,
                    run_id,
                    seq,
                    token=token,
                    now=now,
                    error=error,
                    retry_at=now + timedelta(seconds=delay),
                )
            return ChunkRun(status="retry", error=error, delay=delay)
        log.warning(
            "chunk %s/%s (%s) failed for good after %s attempts: %s",
            run_id, seq, chunk.describe(), claim.attempts, error,
        )  # fmt: skip
        with transaction(ctx.engine) as session:
            outcome = runs_repo.finish_chunk(
                session, run_id, seq, ok=False, finished_at=ctx.clock(), error=error
            )
            repo.record_schedule_error(session, chunk.schedule_ids, f"{chunk.describe()}: {error}")
        after_run(ctx, run_id, outcome.run_finished)
        return ChunkRun(status="failed", error=error, run_finished=outcome.run_finished)
    finished = outcomes[0].run_finished if outcomes else None
    after_run(ctx, run_id, finished)
    return ChunkRun(status="ok", result=result, run_finished=finished)


class Heartbeat:
    """Keeps a chunk's lease alive from a thread of its own while the attempt runs.

    A page can take longer than the lease (an EHR retrying with backoff), so beats
    come from a timer, not from the pages. A process that dies stops beating, which
    is exactly what the reaper looks for. A beat that fails (database away) is only
    skipped: the lease may lapse and a second attempt start, which the chunk's
    day marks and its single ``pending`` -> ``ok`` transition make harmless.
    """

    def __init__(self, ctx: SyncContext, run_id: int, seq: int, token: str) -> None:
        self._ctx = ctx
        self._key = (run_id, seq)
        self._token = token
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-{run_id}-{seq}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        period = max(1.0, self._ctx.settings.chunk_lease_seconds / 4)
        while not self._done.wait(period):
            try:
                with transaction(self._ctx.engine) as session:
                    runs_repo.heartbeat_chunk(
                        session, *self._key, token=self._token, now=self._ctx.clock()
                    )
            except Exception as exc:
                log.info("heartbeat of chunk %s/%s skipped: %s", *self._key, describe_error(exc))


def after_run(ctx: SyncContext, run_id: int, status: str | None) -> None:
    """Once a run has ended: a complete full load forgets the schedules the EHR no longer
    lists; a failed run has its failed windows followed up; a follow-up that succeeded
    marks the run it repaired as recovered."""
    if status is None:
        return
    from .follow_up import run_ended  # follow-ups plan runs: imported late (no cycle)

    run_ended(ctx, run_id, status)
    _refresh_statistics(ctx, run_id)
    if status != "ok":
        return
    from .feed import feed_row  # the feed plans no runs, but imports what does (no cycle)

    with transaction(ctx.engine) as session:
        run = runs_repo.get_run(session, run_id)
        if run is None or run.kind != "initial-load" or run.scope != "*":
            return
        gone = repo.delete_schedules_not_in(session, (), older_than=run.started_at)
    feed_row(ctx)
    with transaction(ctx.engine) as session:
        feeds.advance_cursor(session, run.started_at)  # nothing older needs polling for
    if gone:
        log.info("run %s: %s schedules no longer in the EHR were removed", run_id, gone)


def _refresh_statistics(ctx: SyncContext, run_id: int) -> None:
    """After a run over every schedule that wrote slots (a load, the daily resync, ended
    well or not): fresh planner statistics (:func:`repo.refresh_planner_statistics`).
    Worth a warning when it fails, never the run."""
    try:
        with transaction(ctx.engine) as session:
            run = runs_repo.get_run(session, run_id)
            if run is None or not (run.scope or "").startswith("*"):
                return
            if run.slots_upserted or run.slots_deleted:
                repo.refresh_planner_statistics(session)
    except DATABASE_OUTAGES as exc:
        log.warning("run %s: planner statistics not refreshed: %s", run_id, describe_error(exc))


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: int
    status: str
    chunks: int
    failed: int
    seen: int
    upserted: int
    deleted: int


def summary(ctx: SyncContext, run_id: int) -> RunSummary:
    with transaction(ctx.engine) as session:
        run = runs_repo.get_run(session, run_id)
        if run is None:
            raise LookupError(f"no run {run_id}")
        return RunSummary(
            run_id=run.id,
            status=run.status,
            chunks=run.chunks_total,
            failed=run.chunks_failed,
            seen=run.slots_seen,
            upserted=run.slots_upserted,
            deleted=run.slots_deleted,
        )


def execute_chunks(
    ctx: SyncContext,
    run_id: int,
    seqs: Sequence[int],
    *,
    stop: threading.Event | None = None,
    on_chunk: Callable[[ChunkRun], None] | None = None,
) -> None:
    """Execute chunks here until each has its outcome, under the same retry budget as
    the workers. A chunk waiting for its retry does not hold up the others.

    Once ``stop`` is set the remaining chunks stay pending (the reaper of the next
    start-up sends them again): a shutting-down process must not wait out backoff.
    """
    stop = stop or threading.Event()
    backoff = Backoff.from_settings(ctx.settings)
    queue: list[tuple[float, int, int]] = [(0.0, seq, 0) for seq in seqs]  # (due, seq, errors)
    heapq.heapify(queue)
    while queue:
        due, seq, errors = heapq.heappop(queue)
        if stop.wait(max(0.0, due - time.monotonic())):
            return
        try:
            outcome = execute_chunk(ctx, run_id, seq)
        except Exception as exc:
            # the bookkeeping itself failed (database away): the same budget, counted here
            if not is_transient(exc) or errors >= backoff.retries:
                raise
            log.warning("chunk %s/%s: %s; again later", run_id, seq, describe_error(exc))
            heapq.heappush(queue, (time.monotonic() + backoff.delay(errors), seq, errors + 1))
            continue
        if outcome.status == "retry":
            heapq.heappush(queue, (time.monotonic() + outcome.delay, seq, errors))
            continue
        if on_chunk is not None:
            on_chunk(outcome)


def run_in_process(
    ctx: SyncContext,
    request: ResyncRequest,
    *,
    on_planned: Callable[[PlannedRun], None] | None = None,
    on_chunk: Callable[[ChunkRun], None] | None = None,
) -> RunSummary:
    """Plan and execute a run here, chunk after chunk (the CLI)."""
    planned = plan_run(ctx, request)
    if on_planned is not None:
        on_planned(planned)
    execute_chunks(ctx, planned.run_id, planned.seqs, on_chunk=on_chunk)
    return summary(ctx, planned.run_id)
