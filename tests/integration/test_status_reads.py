"""What the sampler and the console's overview read instead of scanning, on both
backends: the maintained slot count (``schedule_slot_counts``) equals a count of the
slots, recounting only the schedules whose slots changed; the lagging-only schedule
read judges as reading every schedule does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from msgspec import structs
from sqlalchemy import Engine, func, select

from app.cache import repository as repo
from app.cache import slot_counts
from app.cache.db import transaction
from app.cache.models import ScheduleRow, SlotRow
from app.cache.snapshot import SnapshotPlan
from app.cache.sync_health import collect_sync_health
from app.sync.windows import utcnow
from tests.factories import slot
from tests.integration.api.conftest import seed


def _counted(engine: Engine) -> tuple[int, int, int]:
    """(schedules recounted, maintained total, real count)."""
    with transaction(engine) as session:
        recounted = slot_counts.refresh(session)
        return (
            recounted,
            slot_counts.total(session),
            int(session.scalar(select(func.count()).select_from(SlotRow)) or 0),
        )


def test_the_count_follows_every_write_and_recounts_only_what_moved(engine: Engine) -> None:
    now = utcnow()
    seed(engine, confirmed_at=now, schedules=3, per=4)
    assert _counted(engine) == (3, 12, 12)
    assert _counted(engine) == (0, 12, 12)  # nothing moved: nothing recounted
    with transaction(engine) as session:
        repo.remove_slots(session, ["sch-1-s0", "sch-1-s1"])
    assert _counted(engine) == (1, 10, 10)
    with transaction(engine) as session:  # a new slot, and one moving to another schedule
        new = slot(9, schedule="sch-0")
        moved = structs.replace(slot(2, schedule="sch-1"), schedule_id="sch-2")
        repo.apply_snapshot(
            session, SnapshotPlan(upserts=(new, moved), deletes=(), unchanged=0), now
        )
    assert _counted(engine) == (3, 11, 11)
    with transaction(engine) as session:  # a schedule the EHR no longer lists
        repo.delete_schedules_not_in(session, ["sch-0", "sch-1"], now + timedelta(seconds=1))
    recounted, total, real = _counted(engine)
    assert total == real and recounted == 0


def test_the_lagging_only_read_judges_as_the_full_one(engine: Engine) -> None:
    """The overview's read (an aggregate plus the schedules that lag) gives the same
    verdict, counts and stale schedules as reading every schedule."""
    now = utcnow()
    seed(engine, confirmed_at=now - timedelta(minutes=5), schedules=6, per=1)
    with transaction(engine) as session:
        for sid, minutes in (("sch-1", 90), ("sch-4", 45)):
            row = session.get(ScheduleRow, sid)
            assert row is not None
            row.last_confirmed_at = now - timedelta(minutes=minutes)
        error_row = session.get(ScheduleRow, "sch-2")
        assert error_row is not None
        error_row.last_error = "EhrTimeout: slow"
    stale_after = 30 * 60.0
    with transaction(engine) as session:
        full = collect_sync_health(session, now=now, count_slots=False)
        lean = collect_sync_health(session, now=now, count_slots=False, lagging_after=stale_after)
    assert (lean.schedules, lean.errored_schedules) == (full.schedules, full.errored_schedules)
    assert (lean.schedules, lean.errored_schedules) == (6, 1)
    assert lean.max_lag_seconds == pytest.approx(full.max_lag_seconds)
    assert [s.schedule_id for s in lean.stale(stale_after)] == ["sch-1", "sch-4"]
    assert lean.stale(stale_after) == full.stale(stale_after)
    assert lean.stale(3600) == full.stale(3600)
    judged = {"stale_after_seconds": stale_after, "max_load_age_hours": 0}
    assert lean.assess(**judged) == full.assess(**judged)
    with pytest.raises(ValueError):
        lean.stale(60)  # not read: refused rather than answered wrong
