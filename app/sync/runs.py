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

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from app.cache import repository as repo
from app.cache import runs as runs_repo
from app.cache.db import transaction
from app.cache.runs import ChunkOutcome, ChunkSpec
from app.domain import Schedule
from app.ehr.client import PROVIDER_TYPES
from app.ehr.errors import EhrAuthError, EhrProtocolError, EhrUnavailable
from app.fhir.parse import FhirParseError
from app.settings import Settings

from .chunk import Chunk, ChunkResult, sync_chunk
from .context import SyncContext
from .coordination import ScheduleBusy, lock_names
from .discovery import DiscoveryUnsupported, discover_schedules
from .windows import align, split

log = logging.getLogger(__name__)

TRANSIENT = (
    EhrUnavailable,
    EhrProtocolError,
    EhrAuthError,
    FhirParseError,
    ScheduleBusy,
    OperationalError,
)


def is_transient(exc: BaseException) -> bool:
    """Worth another try later: the EHR, the network, a lock or the database hiccupped."""
    return isinstance(exc, TRANSIENT)


def describe_error(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"[:2000]


@dataclass(frozen=True, slots=True)
class ResyncRequest:
    """What to reload: everything, some schedules, or one actor's schedules; a window."""

    kind: str = "resync"  # initial-load | resync
    schedule_ids: tuple[str, ...] | None = None
    actor: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    @property
    def everything(self) -> bool:
        return self.schedule_ids is None and self.actor is None

    def scope(self, chunking: str) -> str:
        if self.actor:
            return f"actor:{self.actor}"
        if self.schedule_ids is not None:
            return ",".join(self.schedule_ids)[:1000]
        return "*" if chunking == "schedule" else "*:window"


@dataclass(frozen=True, slots=True)
class PlannedRun:
    run_id: int
    seqs: list[int]  # the chunks still pending


@dataclass(frozen=True, slots=True)
class ChunkRun:
    status: str  # ok | skipped (already done) | failed
    result: ChunkResult | None = None
    error: str | None = None
    run_finished: str | None = None


def group_schedules(
    schedules: Sequence[Schedule], per_chunk: int, fhir_version: str
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
        if fhir_version == "stu3" and key == (False, False):
            unnamed.append(schedule.id)
        else:
            by_kind.setdefault(key if fhir_version == "stu3" else (True, True), []).append(
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
    if settings.ehr_fhir_version != "stu3":
        return False
    named = {*PROVIDER_TYPES, "Location"}
    return any(not {r.split("/", 1)[0] for r in s.actor_refs} & named for s in schedules)


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
    """Record a run and its chunks; idempotent per ``token`` (a redelivered planner task)."""
    if token is not None:
        with transaction(ctx.engine) as session:
            existing = runs_repo.run_by_token(session, token)
            if existing is not None:
                return PlannedRun(existing.id, runs_repo.pending_chunks(session, existing.id))
    window = align(request.start, request.end, ctx.horizon())
    if window is None:
        raise ValueError("the requested window lies outside the cached horizon")
    started = ctx.clock()
    settings = ctx.settings
    chunking = settings.load_chunking
    ids: list[str] | None = None
    if request.actor:
        ids = discover_schedules(ctx, actor=request.actor)
    elif request.schedule_ids is not None:
        ids = sorted(set(request.schedule_ids))
    elif chunking != "window":
        try:
            ids = discover_schedules(ctx)
        except DiscoveryUnsupported as exc:
            log.warning("no Schedule search (%s): loading whole windows instead", exc)
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
                schedules, settings.load_schedules_per_chunk, settings.ehr_fhir_version
            )
    chunking = "window" if groups is None else "schedule"
    days = settings.load_bulk_window_days if groups is None else settings.load_window_days
    specs = build_chunks(split(*window, days), groups)
    try:
        with transaction(ctx.engine) as session:
            run_id = runs_repo.start_run(
                session,
                kind=request.kind,
                scope=request.scope(chunking),
                window=window,
                started_at=started,
                token=token,
            )
            runs_repo.add_chunks(session, run_id, specs)
            if not specs:
                runs_repo.finish_run(session, run_id, status="ok", finished_at=ctx.clock())
    except IntegrityError:
        if token is None:
            raise
        return plan_run(ctx, request, token=token)  # a twin planner got there first
    return PlannedRun(run_id, [s.seq for s in specs])


def execute_chunk(ctx: SyncContext, run_id: int, seq: int, *, final_attempt: bool) -> ChunkRun:
    """Run one chunk of a run. Transient failures raise (the caller retries) unless this
    is the final attempt, which records the chunk as failed instead."""
    with transaction(ctx.engine) as session:
        row = runs_repo.get_chunk(session, run_id, seq)
        if row is None:
            raise LookupError(f"no chunk {seq} in run {run_id}")
        if row.status != "pending":
            return ChunkRun(status="skipped")
        runs_repo.count_attempt(session, run_id, seq)
        spec = runs_repo.chunk_spec(row)
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
        with ctx.coord.hold(
            lock_names(chunk.schedule_ids),
            ttl=ctx.settings.schedule_lock_seconds,
            wait=ctx.lock_wait,
        ) as holder:
            result = sync_chunk(
                ctx.engine,
                ctx.client,
                chunk,
                clock=ctx.clock,
                on_page=holder.extend,
                in_transaction=count,
            )
    except Exception as exc:
        error = describe_error(exc)
        log.warning("chunk %s/%s (%s) failed: %s", run_id, seq, chunk.describe(), error)
        if chunk.schedule_ids is not None:
            with transaction(ctx.engine) as session:
                repo.record_schedule_error(session, chunk.schedule_ids, error)
        if is_transient(exc) and not final_attempt:
            raise
        with transaction(ctx.engine) as session:
            outcome = runs_repo.finish_chunk(
                session, run_id, seq, ok=False, finished_at=ctx.clock(), error=error
            )
        _after_run(ctx, run_id, outcome.run_finished)
        return ChunkRun(status="failed", error=error, run_finished=outcome.run_finished)
    finished = outcomes[0].run_finished if outcomes else None
    _after_run(ctx, run_id, finished)
    return ChunkRun(status="ok", result=result, run_finished=finished)


def _after_run(ctx: SyncContext, run_id: int, status: str | None) -> None:
    """A complete full load forgets the schedules the EHR no longer lists."""
    if status != "ok":
        return
    with transaction(ctx.engine) as session:
        run = runs_repo.get_run(session, run_id)
        if run is None or run.kind != "initial-load" or run.scope != "*":
            return
        gone = repo.delete_schedules_not_in(session, (), older_than=run.started_at)
    if gone:
        log.info("run %s: %s schedules no longer in the EHR were removed", run_id, gone)


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
    attempts: int = 3,
    backoff: float = 1.0,
    stop: threading.Event | None = None,
    on_chunk: Callable[[ChunkRun], None] | None = None,
) -> None:
    """Execute chunks one after the other here, retrying transient failures.

    Once ``stop`` is set the remaining chunks stay pending: a shutting-down process
    must not wait out their backoff.
    """
    stop = stop or threading.Event()
    for seq in seqs:
        for attempt in range(1, attempts + 1):
            if stop.is_set():
                return
            try:
                outcome = execute_chunk(ctx, run_id, seq, final_attempt=attempt == attempts)
                break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                stop.wait(backoff * attempt)
        if on_chunk is not None:
            on_chunk(outcome)


def run_in_process(
    ctx: SyncContext,
    request: ResyncRequest,
    *,
    on_planned: Callable[[PlannedRun], None] | None = None,
    on_chunk: Callable[[ChunkRun], None] | None = None,
    backoff: float = 1.0,
) -> RunSummary:
    """Plan and execute a run here, chunk after chunk (the CLI)."""
    planned = plan_run(ctx, request)
    if on_planned is not None:
        on_planned(planned)
    execute_chunks(ctx, planned.run_id, planned.seqs, backoff=backoff, on_chunk=on_chunk)
    return summary(ctx, planned.run_id)
