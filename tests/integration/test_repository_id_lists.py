"""Reads and writes of the cache by id list hold for any number of ids on both backends:
PostgreSQL takes one array parameter, SQLite IN lists of at most BATCH, one statement
each (conditions a row must meet one of, not all)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.cache import repository as repo
from app.cache.bulk import BATCH
from app.cache.db import transaction
from app.cache.models import ScheduleRow
from app.cache.snapshot import SnapshotPlan
from app.core.domain import Actor, Schedule
from tests.factories import T0, slot

MANY = BATCH + 101
CONFIRMED = T0 - timedelta(days=1)


def _fill(engine) -> list[str]:
    ids = [f"sch-{i:05d}" for i in range(MANY)]
    with transaction(engine) as s:
        repo.upsert_actors(s, [Actor(f"Practitioner/p{i}") for i in range(MANY)], CONFIRMED)
        repo.upsert_schedules(
            s, [Schedule(sid, (f"Practitioner/p{i}",)) for i, sid in enumerate(ids)], CONFIRMED
        )
        plan = SnapshotPlan(
            upserts=tuple(slot(0, schedule=sid) for sid in ids), deletes=(), unchanged=0
        )
        repo.apply_snapshot(s, plan, CONFIRMED)
    return ids


def test_reads_by_more_ids_than_a_batch_find_every_one(engine):
    ids = _fill(engine)
    with transaction(engine) as s:
        assert set(repo.schedules_by_id(s, ids)) == set(ids)
        refs = [f"Practitioner/p{i}" for i in range(MANY)]
        assert set(repo.actors_by_ref(s, refs)) == set(refs)
        found = repo.cached_slots(s, ids, T0, T0 + timedelta(days=1))
        assert {x.schedule_id for x in found.values()} == set(ids)
        assert repo.lock_schedules(s, ids) == set(ids)
        assert repo.schedules_by_id(s, []) == {} and repo.cached_slots(s, [], T0, T0) == {}


def test_writes_by_more_ids_than_a_batch_reach_every_one(engine):
    ids = _fill(engine)
    with transaction(engine) as s:
        before = repo.cache_generation(s)
        repo.bump_slots_version(s, ids)
        assert set(s.execute(select(ScheduleRow.slots_version)).scalars()) == {before + 1}
        gone = [slot(0, schedule=sid).id for sid in ids]
        repo.apply_snapshot(s, SnapshotPlan(upserts=(), deletes=tuple(gone), unchanged=0), T0)
        assert repo.cached_slots(s, None, T0, T0 + timedelta(days=1)) == {}
