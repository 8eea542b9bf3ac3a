"""The maintained slot count (``schedule_slot_counts``) equals a count of the slots,
recounting only the schedules whose slots changed, on both backends."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import Engine, func, select

from app.cache import repository as repo
from app.cache import slot_counts
from app.cache.db import transaction
from app.cache.models import SlotRow
from app.cache.snapshot import SnapshotPlan
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
        moved = replace(slot(2, schedule="sch-1"), schedule_id="sch-2")
        repo.apply_snapshot(
            session, SnapshotPlan(upserts=(new, moved), deletes=(), unchanged=0), now
        )
    assert _counted(engine) == (3, 11, 11)
    with transaction(engine) as session:  # a schedule the EHR no longer lists
        repo.delete_schedules_not_in(session, ["sch-0", "sch-1"], now + timedelta(seconds=1))
    recounted, total, real = _counted(engine)
    assert total == real and recounted == 0
