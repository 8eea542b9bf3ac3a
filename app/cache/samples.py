"""The recorded history of the cache's size and freshness (``sync_samples``).

One small row a minute; reads are by the primary key's order, so the last 24 hours
are a range scan of at most 1,440 rows whatever the size of the cache. They are read
as plain rows, not ORM objects: the ops console reads them on every page view, and
1,440 ORM instances a request cost more than the rest of the overview together (and,
living through the request, pushed the process into full garbage collections).
"""

from __future__ import annotations

import itertools
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


_COLUMNS = (
    SyncSampleRow.sampled_at,
    SyncSampleRow.slots_cached,
    SyncSampleRow.schedules,
    SyncSampleRow.max_lag_seconds,
    SyncSampleRow.stale_schedules,
    SyncSampleRow.claims_held,
    SyncSampleRow.claims_booked,
)


def since(session: Session, start: datetime) -> list[Sample]:
    """The samples from ``start`` on, oldest first."""
    rows = (
        session.connection()
        .execute(
            select(*_COLUMNS)
            .where(SyncSampleRow.sampled_at >= start)
            .order_by(SyncSampleRow.sampled_at)
        )
        .all()
    )
    return list(itertools.starmap(Sample, rows))


def latest(session: Session) -> Sample | None:
    row = session.execute(
        select(*_COLUMNS).order_by(SyncSampleRow.sampled_at.desc()).limit(1)
    ).first()
    return Sample(*row) if row else None


def prune(session: Session, older_than: datetime) -> int:
    done = session.execute(delete(SyncSampleRow).where(SyncSampleRow.sampled_at < older_than))
    return int(getattr(done, "rowcount", 0) or 0)
