"""SQL of sync bookkeeping: runs (a load, a resync, a poll) and their chunks.

A chunk's status moves from ``pending`` to ``ok`` or ``failed`` exactly once, by
``UPDATE ... WHERE status = 'pending'`` with a rowcount check; only the caller
that wins that transition adds the chunk to its run's counters, and only the one
that completes the count closes the run. Redelivered or duplicated chunk tasks
therefore cannot count twice or close a run twice.

While pending, an attempt holds its chunk by a lease (:func:`claim_chunk`), kept
alive by heartbeats and given back with the time of the next try
(:func:`release_chunk`). These tables, not the broker, are the source of truth
about what work is left: the reaper (:mod:`app.sync.reaper`) re-derives lost
messages from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from .models import SyncChunkRow, SyncRunRow


@dataclass(frozen=True, slots=True)
class ChunkSpec:
    seq: int
    schedule_ids: tuple[str, ...] | None
    start: datetime
    end: datetime


def start_run(
    session: Session,
    *,
    kind: str,
    scope: str,
    window: tuple[datetime, datetime] | None,
    started_at: datetime,
    token: str | None = None,
    status: str = "running",
    parent: SyncRunRow | None = None,
    due_at: datetime | None = None,
) -> int:
    run = SyncRunRow(
        kind=kind,
        scope=scope,
        window_start=window[0] if window else None,
        window_end=window[1] if window else None,
        started_at=started_at,
        status=status,
        progress_at=started_at,
        parent_run_id=parent.id if parent is not None else None,
        root_run_id=(parent.root_run_id or parent.id) if parent is not None else None,
        generation=parent.generation + 1 if parent is not None else 0,
        due_at=due_at,
        slots_seen=0,
        slots_upserted=0,
        slots_deleted=0,
        chunks_total=0,
        chunks_done=0,
        chunks_failed=0,
        token=token,
    )
    session.add(run)
    session.flush()
    return run.id


def run_by_token(session: Session, token: str) -> SyncRunRow | None:
    return session.scalars(select(SyncRunRow).where(SyncRunRow.token == token)).first()


def get_run(session: Session, run_id: int) -> SyncRunRow | None:
    return session.get(SyncRunRow, run_id)


def finish_run(
    session: Session,
    run_id: int,
    *,
    status: str,
    finished_at: datetime,
    seen: int = 0,
    upserted: int = 0,
    deleted: int = 0,
    error: str | None = None,
) -> None:
    session.execute(
        update(SyncRunRow)
        .where(SyncRunRow.id == run_id)
        .values(
            status=status,
            finished_at=finished_at,
            slots_seen=seen,
            slots_upserted=upserted,
            slots_deleted=deleted,
            error=error,
        )
    )


def note_error(session: Session, run_id: int, error: str, now: datetime) -> None:
    """An attempt at the run's planning failed (it will be retried): show why."""
    session.execute(
        update(SyncRunRow)
        .where(SyncRunRow.id == run_id)
        .values(error=error[:2000], progress_at=now)
    )


def planned(session: Session, run_id: int, *, scope: str, now: datetime) -> None:
    session.execute(
        update(SyncRunRow)
        .where(SyncRunRow.id == run_id, SyncRunRow.status == "planning")
        .values(status="running", scope=scope, error=None, progress_at=now)
    )


def close_planning(session: Session, run_id: int, *, error: str, now: datetime) -> bool:
    """A run that never got planned ends failed; True if this call ended it."""
    closed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(SyncRunRow)
        .where(SyncRunRow.id == run_id, SyncRunRow.status == "planning")
        .values(status="failed", finished_at=now, error=error[:2000])
    )
    return closed.rowcount == 1


def add_chunks(session: Session, run_id: int, chunks: Sequence[ChunkSpec]) -> None:
    rows = [
        {
            "run_id": run_id,
            "seq": c.seq,
            "schedule_ids": list(c.schedule_ids) if c.schedule_ids is not None else None,
            "window_start": c.start,
            "window_end": c.end,
            "status": "pending",
            "attempts": 0,
            "slots_seen": 0,
            "slots_upserted": 0,
            "slots_deleted": 0,
        }
        for c in chunks
    ]
    for i in range(0, len(rows), 2000):
        session.execute(insert(SyncChunkRow), rows[i : i + 2000])
    session.execute(
        update(SyncRunRow)
        .where(SyncRunRow.id == run_id)
        .values(chunks_total=SyncRunRow.chunks_total + len(rows))
    )


def get_chunk(session: Session, run_id: int, seq: int) -> SyncChunkRow | None:
    return session.get(SyncChunkRow, (run_id, seq))


def chunk_spec(row: SyncChunkRow) -> ChunkSpec:
    ids = tuple(row.schedule_ids) if row.schedule_ids is not None else None
    return ChunkSpec(seq=row.seq, schedule_ids=ids, start=row.window_start, end=row.window_end)


def pending_chunks(session: Session, run_id: int) -> list[int]:
    rows = session.scalars(
        select(SyncChunkRow.seq)
        .where(SyncChunkRow.run_id == run_id, SyncChunkRow.status == "pending")
        .order_by(SyncChunkRow.seq)
    )
    return list(rows)


@dataclass(frozen=True, slots=True)
class Claim:
    """What :func:`claim_chunk` found: ``claimed`` (the caller now holds the lease),
    ``done`` (ok or failed already), ``held`` (a live attempt has it) or ``missing``."""

    state: str
    spec: ChunkSpec | None = None
    attempts: int = 0


def claim_chunk(
    session: Session, run_id: int, seq: int, *, token: str, now: datetime, lease_seconds: float
) -> Claim:
    """Take the chunk's lease (counting an attempt) unless it is finished or held by a
    live attempt; an expired lease (its worker died) is taken over."""
    expired = now - timedelta(seconds=lease_seconds)
    moved: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(SyncChunkRow)
        .where(
            SyncChunkRow.run_id == run_id,
            SyncChunkRow.seq == seq,
            SyncChunkRow.status == "pending",
            or_(SyncChunkRow.claim_token.is_(None), SyncChunkRow.heartbeat_at < expired),
        )
        .values(
            claim_token=token,
            claimed_at=now,
            heartbeat_at=now,
            next_attempt_at=None,
            attempts=SyncChunkRow.attempts + 1,
        )
    )
    row = session.get(SyncChunkRow, (run_id, seq), populate_existing=True)
    if row is None:
        return Claim("missing")
    if moved.rowcount != 1:
        return Claim("done" if row.status != "pending" else "held", attempts=row.attempts)
    touch_run(session, run_id, now)
    return Claim("claimed", chunk_spec(row), row.attempts)


def heartbeat_chunk(session: Session, run_id: int, seq: int, *, token: str, now: datetime) -> bool:
    """Keep the lease alive; False if it was lost (taken over after expiry, or finished)."""
    kept: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(SyncChunkRow)
        .where(
            SyncChunkRow.run_id == run_id,
            SyncChunkRow.seq == seq,
            SyncChunkRow.claim_token == token,
        )
        .values(heartbeat_at=now)
    )
    if kept.rowcount != 1:
        return False
    touch_run(session, run_id, now)  # a chunk still at work is progress: its run is not quiet
    return True


def release_chunk(
    session: Session,
    run_id: int,
    seq: int,
    *,
    token: str,
    now: datetime,
    error: str,
    retry_at: datetime,
) -> None:
    """Give the lease back after a transient failure; the next try is due at ``retry_at``."""
    session.execute(
        update(SyncChunkRow)
        .where(
            SyncChunkRow.run_id == run_id,
            SyncChunkRow.seq == seq,
            SyncChunkRow.claim_token == token,
        )
        .values(claim_token=None, heartbeat_at=None, next_attempt_at=retry_at, error=error[:2000])
    )
    touch_run(session, run_id, now)


def touch_run(session: Session, run_id: int, now: datetime) -> None:
    """Its work showed a sign of life (the reaper's measure of progress)."""
    session.execute(
        update(SyncRunRow)
        .where(
            SyncRunRow.id == run_id,
            or_(SyncRunRow.progress_at.is_(None), SyncRunRow.progress_at < now),
        )
        .values(progress_at=now)
    )


def mark_dispatched(session: Session, run_id: int, seqs: Sequence[int], now: datetime) -> None:
    for i in range(0, len(seqs), 2000):
        session.execute(
            update(SyncChunkRow)
            .where(SyncChunkRow.run_id == run_id, SyncChunkRow.seq.in_(seqs[i : i + 2000]))
            .values(dispatched_at=now)
        )


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    counted: bool  # this call moved the chunk out of pending
    run_finished: str | None  # the run's final status if this call completed it


def finish_chunk(
    session: Session,
    run_id: int,
    seq: int,
    *,
    ok: bool,
    finished_at: datetime,
    seen: int = 0,
    upserted: int = 0,
    deleted: int = 0,
    error: str | None = None,
) -> ChunkOutcome:
    moved: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(SyncChunkRow)
        .where(
            SyncChunkRow.run_id == run_id,
            SyncChunkRow.seq == seq,
            SyncChunkRow.status == "pending",
        )
        .values(
            status="ok" if ok else "failed",
            slots_seen=seen,
            slots_upserted=upserted,
            slots_deleted=deleted,
            error=error[:2000] if error else None,
            finished_at=finished_at,
            claim_token=None,
            next_attempt_at=None,
        )
    )
    if moved.rowcount != 1:
        return ChunkOutcome(counted=False, run_finished=None)
    totals = session.execute(
        update(SyncRunRow)
        .where(SyncRunRow.id == run_id)
        .values(
            chunks_done=SyncRunRow.chunks_done + (1 if ok else 0),
            chunks_failed=SyncRunRow.chunks_failed + (0 if ok else 1),
            slots_seen=SyncRunRow.slots_seen + seen,
            slots_upserted=SyncRunRow.slots_upserted + upserted,
            slots_deleted=SyncRunRow.slots_deleted + deleted,
            error=error[:2000] if error else SyncRunRow.error,
            progress_at=finished_at,
        )
        .returning(SyncRunRow.chunks_done, SyncRunRow.chunks_failed, SyncRunRow.chunks_total)
    ).one()
    done, failed, total = totals
    if done + failed < total:
        return ChunkOutcome(counted=True, run_finished=None)
    status = "ok" if failed == 0 else "failed"
    closed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(SyncRunRow)
        .where(SyncRunRow.id == run_id, SyncRunRow.status == "running")
        .values(status=status, finished_at=finished_at)
    )
    return ChunkOutcome(counted=True, run_finished=status if closed.rowcount == 1 else None)


def recent_runs(session: Session, limit: int = 20) -> list[SyncRunRow]:
    return list(session.scalars(select(SyncRunRow).order_by(SyncRunRow.id.desc()).limit(limit)))


def running_runs(session: Session) -> list[SyncRunRow]:
    """Runs not ended: being planned, running, or follow-ups scheduled for later."""
    return list(
        session.scalars(
            select(SyncRunRow)
            .where(SyncRunRow.status.in_(("planning", "running", "scheduled")))
            .order_by(SyncRunRow.id)
        )
    )


def last_run(session: Session, kind: str, status: str | None = None) -> SyncRunRow | None:
    stmt = select(SyncRunRow).where(SyncRunRow.kind == kind)
    if status is not None:
        stmt = stmt.where(SyncRunRow.status == status)
    return session.scalars(stmt.order_by(SyncRunRow.id.desc()).limit(1)).first()


def failed_chunks(session: Session, run_id: int, limit: int = 20) -> list[SyncChunkRow]:
    return list(
        session.scalars(
            select(SyncChunkRow)
            .where(SyncChunkRow.run_id == run_id, SyncChunkRow.status == "failed")
            .order_by(SyncChunkRow.seq)
            .limit(limit)
        )
    )


def prune_runs(session: Session, older_than: datetime) -> int:
    """Forget finished runs (and their chunks) older than the retention period."""
    ids = list(
        session.scalars(
            select(SyncRunRow.id).where(
                SyncRunRow.status.in_(("ok", "failed")), SyncRunRow.started_at < older_than
            )
        )
    )
    for i in range(0, len(ids), 2000):
        part = ids[i : i + 2000]
        session.execute(delete(SyncChunkRow).where(SyncChunkRow.run_id.in_(part)))
        session.execute(delete(SyncRunRow).where(SyncRunRow.id.in_(part)))
    return len(ids)
