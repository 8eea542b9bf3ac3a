"""Forgetting schedules while a writer writes their slots (PostgreSQL: concurrent
transactions). Slots have no foreign key to their schedule (migration 0012), so the
deleter and the writers keep the pair consistent by row locks: no slot may outlive its
schedule, and a schedule a writer has just confirmed is not forgotten."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from app.cache import repository as repo
from app.cache.db import make_engine, transaction
from app.cache.snapshot import SnapshotPlan
from app.core.domain import Schedule
from tests.factories import T0, slot

CONFIRMED = T0 - timedelta(days=1)
RUN_STARTED = CONFIRMED + timedelta(hours=1)  # the full load that forgets what it did not see


@pytest.fixture
def pg(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE slot_claims, slots, schedule_actors, schedules CASCADE")
    with transaction(engine) as session:
        repo.upsert_schedules(session, [Schedule("sch-1", ())], CONFIRMED)
        plan = SnapshotPlan(upserts=tuple(slot(i) for i in range(3)), deletes=(), unchanged=0)
        repo.apply_snapshot(session, plan, CONFIRMED)
    yield engine
    engine.dispose()


def _forget_in_background(engine: Engine) -> tuple[threading.Thread, list[int]]:
    forgotten: list[int] = []

    def forget() -> None:
        with transaction(engine) as session:
            forgotten.append(repo.delete_schedules_not_in(session, (), older_than=RUN_STARTED))

    thread = threading.Thread(target=forget)
    thread.start()
    return thread, forgotten


def _slots_and_schedules(engine: Engine) -> tuple[dict[str, str], set[str]]:
    with Session(engine) as s:
        slots = {r[0]: r[1] for r in s.execute(text("SELECT id, schedule_id FROM slots"))}
        schedules = set(s.execute(text("SELECT id FROM schedules")).scalars())
    return slots, schedules


@pytest.mark.parametrize("confirms", [False, True], ids=["stale", "confirmed-by-the-writer"])
def test_a_writer_of_a_schedule_being_forgotten_leaves_no_orphan_slot(pg, confirms):
    more = tuple(slot(i) for i in range(3, 3 + 2 * repo.COPY_THRESHOLD))  # the COPY path
    with transaction(pg) as writer:
        assert repo.lock_schedules(writer, {"sch-1"}) == {"sch-1"}
        plan = SnapshotPlan(upserts=more, deletes=(), unchanged=0)
        repo.apply_snapshot(writer, plan, CONFIRMED)
        if confirms:
            repo.confirm_schedules(writer, {"sch-1"}, T0, T0 + timedelta(days=1), RUN_STARTED)
        thread, forgotten = _forget_in_background(pg)
        thread.join(timeout=1.0)
        assert thread.is_alive(), "the deleter waits for the writer's lock"
    thread.join(timeout=30)
    assert not thread.is_alive()

    slots, schedules = _slots_and_schedules(pg)
    assert set(slots.values()) <= schedules  # no orphan, whoever won
    if confirms:
        assert forgotten == [0] and schedules == {"sch-1"}
        assert len(slots) == 3 + len(more)
    else:
        assert forgotten == [1] and schedules == set() and slots == {}


def test_a_writer_after_the_deleter_is_refused(pg):
    thread, forgotten = _forget_in_background(pg)
    thread.join(timeout=30)
    assert forgotten == [1]
    with transaction(pg) as writer:
        held = repo.lock_schedules(writer, {"sch-1"})
        assert held == set()
        with pytest.raises(repo.ScheduleGone):
            repo.check_schedules_held([slot(9)], held)
