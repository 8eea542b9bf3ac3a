"""Sync health at a glance: one snapshot shared by /readyz, /metrics and ``slotsync status``.

Read-only queries over the cache's own tables (schedules, slot counts, sync runs).
They stay cheap at production size: the schedule table has one row per
schedulable entity, the run queries use the ``started_at`` index, and the slot
count is one grouped scan that callers cache (see the metrics collector).

``lagging_after`` (the ops console's overview, on every page view) reads the schedules
as one aggregate plus the few that lag, through the ``last_confirmed_at`` index,
instead of one Python object per schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.cache import recovery
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
class ScheduleTotals:
    """Every schedule, aggregated in SQL: how many, how many errored, the oldest confirmation."""

    count: int
    errored: int
    oldest_confirmed_at: datetime | None


@dataclass(frozen=True, slots=True)
class SyncHealth:
    """What an operator asks first: is the cache filled, fresh, and is sync failing?"""

    now: datetime
    schedule_lags: list[ScheduleLag]  # most lagging first
    last_full_load_at: datetime | None
    runs_recent: dict[tuple[str, str], int]  # (kind, status) -> runs started in the last 24 h
    last_failure: FailedRun | None
    slots_by_status: dict[str, int] = field(default_factory=dict)
    # The state of sync work (see app.sync.reaper and app.sync.follow_up).
    stuck_runs: list[int] = field(default_factory=list)  # active, no progress for the stall time
    unresolved_runs: list[int] = field(default_factory=list)  # failed, not (yet) recovered
    failed_chunks: int = 0  # chunks of the unresolved runs
    follow_ups_scheduled: list[tuple[int, datetime | None]] = field(default_factory=list)
    errored_schedules: int = 0  # last sync attempt of theirs failed for good
    # Set when only the schedules lagging more than ``lags_from`` seconds were listed
    # (``collect_sync_health(lagging_after=...)``): the totals then come from SQL.
    totals: ScheduleTotals | None = None
    lags_from: float | None = None

    def assess(
        self, *, stale_after_seconds: float, max_load_age_hours: float
    ) -> tuple[str, list[str]]:
        """``ok``, ``degraded`` (serving, but the cache may differ from the EHR) or ``down``
        (nothing to serve), with every reason, worst first."""
        problems: list[str] = []
        if self.last_full_load_at is None and not self.schedules:
            return "down", ["nothing cached yet: no complete load and no schedules"]
        if self.stuck_runs:
            problems.append(
                f"{len(self.stuck_runs)} sync runs stuck (no progress): {self.stuck_runs}"
            )
        if self.unresolved_runs:
            problems.append(
                f"{self.failed_chunks} chunks failed in {len(self.unresolved_runs)} runs"
                f" {self.unresolved_runs[:5]}"
                + (
                    f"; follow-up due {_when(self.follow_ups_scheduled[0][1])}"
                    if self.follow_ups_scheduled
                    else "; no follow-up left (next full load)"
                )
            )
        if self.errored_schedules:
            problems.append(f"{self.errored_schedules} schedules whose last sync failed")
        stale = self.stale(stale_after_seconds)
        if stale:
            problems.append(
                f"{len(stale)} of {self.schedules} schedules unconfirmed for over"
                f" {stale_after_seconds / 60:.0f} min"
            )
        age = self.full_load_age_seconds
        if age is None:
            problems.append("no complete full load yet")
        elif max_load_age_hours and age > max_load_age_hours * 3600:
            problems.append(f"last complete full load {age / 3600:.1f} h ago")
        return ("degraded" if problems else "ok"), problems

    @property
    def schedules(self) -> int:
        return self.totals.count if self.totals is not None else len(self.schedule_lags)

    @property
    def slots(self) -> int:
        return sum(self.slots_by_status.values())

    @property
    def max_lag_seconds(self) -> float | None:
        if self.totals is not None:
            oldest = self.totals.oldest_confirmed_at
            return None if oldest is None else max(0.0, (self.now - oldest).total_seconds())
        return self.schedule_lags[0].lag_seconds if self.schedule_lags else None

    @property
    def full_load_age_seconds(self) -> float | None:
        if self.last_full_load_at is None:
            return None
        return (self.now - self.last_full_load_at).total_seconds()

    def stale(self, after_seconds: float) -> list[ScheduleLag]:
        if self.lags_from is not None and after_seconds < self.lags_from:
            raise ValueError(
                f"only schedules lagging over {self.lags_from} s were read, not {after_seconds} s"
            )
        return [lag for lag in self.schedule_lags if lag.lag_seconds > after_seconds]

    def failed_recent(self) -> int:
        return sum(n for (_kind, status), n in self.runs_recent.items() if status == "failed")


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else "?"


def collect_sync_health(
    session: Session,
    *,
    now: datetime | None = None,
    count_slots: bool = True,
    stall_seconds: float = 180.0,
    lagging_after: float | None = None,
) -> SyncHealth:
    """``lagging_after``: list only the schedules unconfirmed for longer than that many
    seconds (``stale()`` then answers for that age or more), with the totals from SQL."""
    now = now or datetime.now(UTC)
    lagging = select(ScheduleRow.id, ScheduleRow.last_confirmed_at, ScheduleRow.last_error)
    totals: ScheduleTotals | None = None
    if lagging_after is not None:
        lagging = lagging.where(
            ScheduleRow.last_confirmed_at < now - timedelta(seconds=lagging_after)
        )
        totals = schedule_totals(session)
    lags = [
        ScheduleLag(
            schedule_id=sid,
            last_confirmed_at=confirmed,
            lag_seconds=max(0.0, (now - confirmed).total_seconds()),
            last_error=error,
        )
        for sid, confirmed, error in session.execute(lagging)
    ]
    lags.sort(key=lambda lag: (-lag.lag_seconds, lag.schedule_id))
    last_full = last_complete_load(session)
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
    unresolved = [
        run
        for run in recovery.unresolved_failures(session)
        # a complete full load since replaced whatever an older run failed to sync
        if last_full is None or run.started_at >= last_full
    ]
    errored = totals.errored if totals is not None else sum(1 for lag in lags if lag.last_error)
    return SyncHealth(
        now=now,
        stuck_runs=[r.id for r in recovery.stuck_runs(session, now, stall_seconds)],
        unresolved_runs=[r.id for r in unresolved],
        failed_chunks=recovery.failed_chunk_count(session, [r.id for r in unresolved]),
        follow_ups_scheduled=[(r.id, r.due_at) for r in recovery.scheduled_runs(session)],
        errored_schedules=errored,
        schedule_lags=lags,
        last_full_load_at=last_full,
        runs_recent=recent,
        last_failure=FailedRun(*failed) if failed else None,
        slots_by_status=slots,
        totals=totals,
        lags_from=lagging_after,
    )


def schedule_totals(session: Session) -> ScheduleTotals:
    """One aggregate row over the schedule table (one row per schedule, never the slots)."""
    count, errored, oldest = session.execute(
        select(
            func.count(),
            func.count(ScheduleRow.last_error),
            func.min(ScheduleRow.last_confirmed_at),
        )
    ).one()
    return ScheduleTotals(int(count), int(errored), oldest)


def last_complete_load(session: Session) -> datetime | None:
    """When the cache last held a complete full load: a full load that succeeded, or
    one whose follow-ups synced every window it had failed."""
    finished = session.scalar(
        select(func.max(SyncRunRow.finished_at)).where(
            SyncRunRow.kind == FULL_LOAD_KIND, SyncRunRow.status == "ok"
        )
    )
    recovered = session.scalar(
        select(func.max(SyncRunRow.recovered_at)).where(SyncRunRow.kind == FULL_LOAD_KIND)
    )
    return max((t for t in (finished, recovered) if t is not None), default=None)
