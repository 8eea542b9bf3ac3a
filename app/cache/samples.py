"""The recorded history of the cache's size and freshness (``sync_samples``).

One small row every few minutes; reads are by the primary key's order, so the last
24 hours are a range scan of a few hundred rows whatever the size of the cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .models import SyncSampleRow


@dataclass(frozen=True, slots=True)
class Sample:
    sampled_at: datetime
    slots_cached: int
    schedules: int
    max_lag_seconds: float | None
    stale_schedules: int
    claims_held: int = 0
    claims_booked: int = 0


def _sample(row: SyncSampleRow) -> Sample:
    return Sample(
        sampled_at=row.sampled_at,
        slots_cached=row.slots_cached,
        schedules=row.schedules,
        max_lag_seconds=row.max_lag_seconds,
        stale_schedules=row.stale_schedules,
        claims_held=row.claims_held,
        claims_booked=row.claims_booked,
    )


def record(session: Session, sample: Sample) -> None:
    """Add a sample (a second one at the same instant replaces the first)."""
    session.merge(
        SyncSampleRow(
            sampled_at=sample.sampled_at,
            slots_cached=sample.slots_cached,
            schedules=sample.schedules,
            max_lag_seconds=sample.max_lag_seconds,
            stale_schedules=sample.stale_schedules,
            claims_held=sample.claims_held,
            claims_booked=sample.claims_booked,
        )
    )


def since(session: Session, start: datetime) -> list[Sample]:
    rows = session.scalars(
        select(SyncSampleRow)
        .where(SyncSampleRow.sampled_at >= start)
        .order_by(SyncSampleRow.sampled_at)
    )
    return [_sample(row) for row in rows]


def latest(session: Session) -> Sample | None:
    row = session.scalars(
        select(SyncSampleRow).order_by(SyncSampleRow.sampled_at.desc()).limit(1)
    ).first()
    return _sample(row) if row else None


def prune(session: Session, older_than: datetime) -> int:
    done = session.execute(delete(SyncSampleRow).where(SyncSampleRow.sampled_at < older_than))
    return int(getattr(done, "rowcount", 0) or 0)
