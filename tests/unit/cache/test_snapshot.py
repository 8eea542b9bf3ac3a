from msgspec import structs

from app.cache.snapshot import plan_snapshot
from tests.factories import slot


def test_unchanged_answer_plans_nothing():
    cached = {s.id: s for s in (slot(0), slot(1))}
    plan = plan_snapshot(cached, [slot(0), slot(1)])
    assert plan.is_noop
    assert plan.unchanged == 2


def test_new_changed_and_vanished_slots():
    cached = {s.id: s for s in (slot(0), slot(1), slot(2))}
    moved = structs.replace(slot(1), start=slot(1).start.replace(minute=50))
    plan = plan_snapshot(cached, [slot(0), moved, slot(3)])
    assert [s.id for s in plan.upserts] == sorted([moved.id, slot(3).id])  # in id order
    assert plan.deletes == (slot(2).id,)
    assert plan.unchanged == 1


def test_slot_that_became_busy_is_deleted_not_cached():
    cached = {slot(0).id: slot(0)}
    plan = plan_snapshot(cached, [structs.replace(slot(0), status="busy")])
    assert plan.deletes == (slot(0).id,)
    assert plan.upserts == ()


def test_busy_slot_not_cached_in_scope_still_deleted_by_id():
    # it may be cached in another window (moved), so deleting by id is the safe answer
    plan = plan_snapshot({}, [slot(5, status="busy")])
    assert plan.deletes == (slot(5).id,)


def test_out_of_scope_slots_are_ignored():
    cached = {slot(0).id: slot(0)}
    other = slot(0, schedule="sch-2")
    plan = plan_snapshot(cached, [slot(0), other], in_scope=lambda s: s.schedule_id == "sch-1")
    assert plan.is_noop


def test_duplicate_ids_across_pages_count_once_last_wins():
    later = structs.replace(slot(0), comment="changed")
    plan = plan_snapshot({}, [slot(0), later])
    assert plan.upserts == (later,)


def test_empty_answer_removes_everything_in_scope():
    cached = {s.id: s for s in (slot(0), slot(1))}
    plan = plan_snapshot(cached, [])
    assert set(plan.deletes) == set(cached)
