"""The sync runs' recovery side: follow-up runs of what failed, and what the reaper
looks for (stuck runs, pending chunks of dead workers, unresolved failures).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.orm import Session

from .models import SyncChunkRow, SyncRunRow
from .runs import ChunkSpec, chunk_spec

ACTIVE = ("planning", "running")


def child_of(session: Session, run_id: int) -> SyncRunRow | None:
    return session.scalars(
        select(SyncRunRow).where(SyncRunRow.parent_run_id == run_id).limit(1)
    ).first()


def set_generation(session: Session, run_id: int, generation: int) -> None:
    session.execute(update(SyncRunRow).where(SyncRunRow.id == run_id).values(generation=generation))


def failed_chunk_specs(session: Session, run_id: int) -> list[ChunkSpec]:
    rows = session.scalars(
        select(SyncChunkRow)
        .where(SyncChunkRow.run_id == run_id, SyncChunkRow.status == "failed")
        .order_by(SyncChunkRow.seq)
    )
    return [chunk_spec(row) for row in rows]


def mark_recovered(session: Session, run_id: int, now: datetime) -> None:
    """Every window the run failed has since been synced by its follow-ups."""
    session.execute(
        update(SyncRunRow)
        .where(SyncRunRow.id == run_id, SyncRunRow.recovered_at.is_(None))
        .values(recovered_at=now)
    )


def due_follow_ups(session: Session, now: datetime) -> list[int]:
    return list(
        session.scalars(
            select(SyncRunRow.id)
            .where(SyncRunRow.status == "scheduled", SyncRunRow.due_at <= now)
            .order_by(SyncRunRow.due_at)
        )
    )


def start_scheduled(session: Session, run_id: int, now: datetime) -> bool:
    """A due follow-up begins (exactly one reaper wins); its chunks are then sent."""
    moved: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(SyncRunRow)
        .where(SyncRunRow.id == run_id, SyncRunRow.status == "scheduled")
        .values(status="running", started_at=now, progress_at=now)
    )
    return moved.rowcount == 1


def active_runs(session: Session) -> list[SyncRunRow]:
    return list(
        session.scalars(
            select(SyncRunRow).where(SyncRunRow.status.in_(ACTIVE)).order_by(SyncRunRow.id)
        )
    )


def scheduled_runs(session: Session) -> list[SyncRunRow]:
    return list(
        session.scalars(
            select(SyncRunRow).where(SyncRunRow.status == "scheduled").order_by(SyncRunRow.due_at)
        )
    )


@dataclass(frozen=True, slots=True)
class PendingChunk:
    seq: int
    claimed: bool
    heartbeat_at: datetime | None
    next_attempt_at: datetime | None
    dispatched_at: datetime | None


def pending_chunk_states(session: Session, run_id: int) -> list[PendingChunk]:
    rows = session.execute(
        select(
            SyncChunkRow.seq,
            SyncChunkRow.claim_token,
            SyncChunkRow.heartbeat_at,
            SyncChunkRow.next_attempt_at,
            SyncChunkRow.dispatched_at,
        )
        .where(SyncChunkRow.run_id == run_id, SyncChunkRow.status == "pending")
        .order_by(SyncChunkRow.seq)
    )
    return [
        PendingChunk(seq, token is not None, hb, nxt, sent) for seq, token, hb, nxt, sent in rows
    ]


def stuck_runs(session: Session, now: datetime, stall_seconds: float) -> list[SyncRunRow]:
    """Active runs whose work showed no sign of life for ``stall_seconds`` (and whose
    chunks no live lease holds): what the reaper fails and replans, and status shows."""
    cutoff = now - timedelta(seconds=stall_seconds)
    live = (
        select(SyncChunkRow.run_id)
        .where(
            SyncChunkRow.status == "pending",
            SyncChunkRow.claim_token.is_not(None),
            SyncChunkRow.heartbeat_at >= cutoff,
        )
        .scalar_subquery()
    )
    return list(
        session.scalars(
            select(SyncRunRow)
            .where(
                SyncRunRow.status.in_(ACTIVE),
                or_(SyncRunRow.progress_at.is_(None), SyncRunRow.progress_at < cutoff),
                SyncRunRow.id.not_in(live),
            )
            .order_by(SyncRunRow.id)
        )
    )


def failed_chunk_count(session: Session, run_ids: Sequence[int]) -> int:
    if not run_ids:
        return 0
    return int(
        session.scalar(
            select(func.count())
            .select_from(SyncChunkRow)
            .where(SyncChunkRow.run_id.in_(run_ids), SyncChunkRow.status == "failed")
        )
        or 0
    )


def unresolved_failures(session: Session) -> list[SyncRunRow]:
    """Failed runs not yet repaired: a failed run counts until a follow-up of its chain
    succeeds; while its own follow-up is scheduled or running it still counts (the
    windows still differ), and once that follow-up fails too, the follow-up counts
    instead (one entry per chain)."""
    followed = select(SyncRunRow.parent_run_id).where(
        SyncRunRow.parent_run_id.is_not(None), SyncRunRow.status == "failed"
    )
    return list(
        session.scalars(
            select(SyncRunRow)
            .where(
                SyncRunRow.status == "failed",
                SyncRunRow.recovered_at.is_(None),
                SyncRunRow.id.not_in(followed),
                or_(
                    SyncRunRow.root_run_id.is_(None),
                    SyncRunRow.root_run_id.not_in(
                        select(SyncRunRow.id).where(SyncRunRow.recovered_at.is_not(None))
                    ),
                ),
            )
            .order_by(SyncRunRow.id.desc())
            .limit(100)
        )
    )


def changes_floor(session: Session) -> datetime | None:
    """Since when changes must be looked for when no poll has succeeded yet: the start of
    the oldest full load still at work (its pages may predate a change), else of the
    last full load that completed; None without any."""
    active = session.scalar(
        select(func.min(SyncRunRow.started_at)).where(
            SyncRunRow.kind == "initial-load", SyncRunRow.status.in_(ACTIVE)
        )
    )
    if active is not None:
        return active
    return session.scalar(
        select(func.max(SyncRunRow.started_at)).where(
            SyncRunRow.kind == "initial-load",
            or_(SyncRunRow.status == "ok", SyncRunRow.recovered_at.is_not(None)),
        )
    )
