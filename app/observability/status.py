"""Sync health at a glance: one snapshot shared by /readyz, /metrics and ``slotsync status``.

Read-only queries over the cache's own tables (schedules, slot counts, sync runs).
They stay cheap at production size: the schedule table has one row per
schedulable entity, the run queries use the ``started_at`` index, and the slot
count is one grouped scan that callers cache (see the metrics collector).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.cache.models import ScheduleRow, SlotRow, SyncRunRow

FULL_LOAD_KIND = "initial-load"
RECENT = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class ScheduleLag:
    schedule_id: str
    last_confirmed_at: datetime
    lag_seconds: float
    last_error: str | None


@dataclass(frozen=True, slots=True)
class FailedRun:
    kind: str
    scope: str | None
    finished_at: datetime | None
    error: str | None


@dataclass(frozen=True, slots=True)
class SyncHealth:
    """What an operator asks first: is the cache filled, fresh, and is sync failing?"""

    now: datetime
    schedule_lags: list[ScheduleLag]  # most lagging first
    last_full_load_at: datetime | None
    runs_recent: dict[tuple[str, str], int]  # (kind, status) -> runs started in the last 24 h
    last_failure: FailedRun | None
    slots_by_status: dict[str, int] = field(default_factory=dict)

    @property
    def schedules(self) -> int:
        return len(self.schedule_lags)

    @property
    def slots(self) -> int:
        return sum(self.slots_by_status.values())

    @property
    def max_lag_seconds(self) -> float | None:
        return self.schedule_lags[0].lag_seconds if self.schedule_lags else None

    @property
    def full_load_age_seconds(self) -> float | None:
        if self.last_full_load_at is None:
            return None
        return (self.now - self.last_full_load_at).total_seconds()

    def stale(self, after_seconds: float) -> list[ScheduleLag]:
        return [lag for lag in self.schedule_lags if lag.lag_seconds > after_seconds]

    def failed_recent(self) -> int:
        return sum(n for (_kind, status), n in self.runs_recent.items() if status == "failed")


def collect_sync_health(
    session: Session, *, now: datetime | None = None, count_slots: bool = True
) -> SyncHealth:
    now = now or datetime.now(UTC)
    lags = [
        ScheduleLag(
            schedule_id=sid,
            last_confirmed_at=confirmed,
            lag_seconds=max(0.0, (now - confirmed).total_seconds()),
            last_error=error,
        )
        for sid, confirmed, error in session.execute(
            select(ScheduleRow.id, ScheduleRow.last_confirmed_at, ScheduleRow.last_error)
        )
    ]
    lags.sort(key=lambda lag: (-lag.lag_seconds, lag.schedule_id))
    last_full = session.scalar(
        select(func.max(SyncRunRow.finished_at)).where(
            SyncRunRow.kind == FULL_LOAD_KIND, SyncRunRow.status == "ok"
        )
    )
    recent = {
        (kind, status): int(n)
        for kind, status, n in session.execute(
            select(SyncRunRow.kind, SyncRunRow.status, func.count())
            .where(SyncRunRow.started_at >= now - RECENT)
            .group_by(SyncRunRow.kind, SyncRunRow.status)
        )
    }
    failed = session.execute(
        select(SyncRunRow.kind, SyncRunRow.scope, SyncRunRow.finished_at, SyncRunRow.error)
        .where(SyncRunRow.status == "failed")
        .order_by(SyncRunRow.id.desc())
        .limit(1)
    ).first()
    slots: dict[str, int] = {}
    if count_slots:
        slots = {
            status: int(n)
            for status, n in session.execute(
                select(SlotRow.status, func.count()).group_by(SlotRow.status)
            )
        }
    return SyncHealth(
        now=now,
        schedule_lags=lags,
        last_full_load_at=last_full,
        runs_recent=recent,
        last_failure=FailedRun(*failed) if failed else None,
        slots_by_status=slots,
    )
