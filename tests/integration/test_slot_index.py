"""The in-process slot index on both backends: it answers what the cache holds now.

Each test changes the cache the way the sync and the booking paths do (snapshot
writes, claims, forgotten schedules) and checks that the very next read of an
index that already held the old state shows the change.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.availability.slot_index import SlotIndex
from app.cache import claims, slot_reads
from app.cache import repository as repo
from app.cache.db import make_engine, read_session, transaction
from app.cache.snapshot import plan_snapshot
from app.core.domain import Schedule, Slot
from tests.factories import T0, slot

NOW = T0 - timedelta(days=1)
DAY_END = T0 + timedelta(days=1)
SCHEDULES = ["sch-1", "sch-2"]


def _fill(engine: Engine) -> None:
    with transaction(engine) as session:
        repo.upsert_schedules(
            session, [Schedule(sid, (f"Practitioner/{sid}",)) for sid in SCHEDULES], NOW
        )
        slots = [slot(i, schedule=sid) for sid in SCHEDULES for i in range(4)]
        repo.apply_snapshot(session, plan_snapshot({}, slots), NOW)


def _read(engine: Engine, index: SlotIndex, start=T0, end=DAY_END) -> dict[str, list[str]]:
    with Session(engine) as session:
        window = index.read(session, SCHEDULES, start, end, NOW).slots
    return {sid: [s.id for s in slots] for sid, slots in window.items()}


def _write(engine: Engine, schedule: str, fetched: list[Slot]) -> None:
    """What a sync chunk does: replace a schedule's cached slots with the EHR's answer."""
    with transaction(engine) as session:
        cached = repo.cached_slots(session, {schedule}, T0 - timedelta(days=1), DAY_END)
        repo.apply_snapshot(session, plan_snapshot(cached, fetched), NOW, cached=cached)


def test_the_index_answers_the_window_from_the_cache(engine: Engine) -> None:
    _fill(engine)
    index = SlotIndex(lookback=timedelta(hours=1))
    assert _read(engine, index) == {sid: [f"{sid}-s{i}" for i in range(4)] for sid in SCHEDULES}
    # a window cut: a slot that began before the window but reaches into it counts
    assert _read(engine, index, T0 + timedelta(minutes=20), T0 + timedelta(minutes=40)) == {
        sid: [f"{sid}-s1", f"{sid}-s2"] for sid in SCHEDULES
    }


def test_a_sync_write_shows_at_the_next_read(engine: Engine) -> None:
    _fill(engine)
    index = SlotIndex(lookback=timedelta(hours=1))
    _read(engine, index)
    # the EHR booked s1 elsewhere and opened s7
    _write(engine, "sch-1", [slot(0), slot(2), slot(3), slot(7)])
    after = _read(engine, index)
    assert after["sch-1"] == ["sch-1-s0", "sch-1-s2", "sch-1-s3", "sch-1-s7"]
    assert after["sch-2"] == [f"sch-2-s{i}" for i in range(4)]


def test_only_changed_schedules_get_a_new_version(engine: Engine) -> None:
    _fill(engine)
    with Session(engine) as session:
        before = slot_reads.slot_versions(session)
        generation = repo.cache_generation(session)
    _write(engine, "sch-2", [slot(i, schedule="sch-2") for i in range(3)])
    _write(engine, "sch-2", [slot(i, schedule="sch-2") for i in range(3)])  # no change
    with Session(engine) as session:
        after = slot_reads.slot_versions(session)
        assert repo.cache_generation(session) == generation + 1
    assert after["sch-1"] == before["sch-1"]
    assert after["sch-2"] == generation + 1


def test_a_slot_moved_to_another_schedule_leaves_the_old_one(engine: Engine) -> None:
    _fill(engine)
    index = SlotIndex(lookback=timedelta(hours=1))
    _read(engine, index)
    moved = Slot(
        id="sch-1-s3",
        schedule_id="sch-2",
        start=T0 + timedelta(hours=5),
        end=T0 + timedelta(hours=5, minutes=15),
    )
    _write(engine, "sch-2", [*(slot(i, schedule="sch-2") for i in range(4)), moved])
    after = _read(engine, index)
    assert "sch-1-s3" not in after["sch-1"]
    assert after["sch-2"][-1] == "sch-1-s3"


def test_a_claim_hides_a_slot_at_once_and_only_while_live(engine: Engine) -> None:
    _fill(engine)
    index = SlotIndex(lookback=timedelta(hours=1))
    _read(engine, index)
    with transaction(engine) as session:
        claims.insert_claims(
            session,
            [slot(1)],
            claim_id="c1",
            kind=claims.PENDING,
            expires_at=NOW + timedelta(seconds=30),
            now=NOW,
        )
    assert _read(engine, index)["sch-1"] == ["sch-1-s0", "sch-1-s2", "sch-1-s3"]
    with Session(engine) as session:
        read = index.read(session, SCHEDULES, T0, DAY_END, NOW)
        later = index.read(session, SCHEDULES, T0, DAY_END, NOW + timedelta(seconds=31)).slots
    # what the composer's memo needs: the claimed slot named, the full lists as held
    assert [s.id for s in read.taken] == ["sch-1-s1"]
    assert [s.id for s in read.full["sch-1"]] == [f"sch-1-s{i}" for i in range(4)]
    assert [s.id for s in later["sch-1"]] == [f"sch-1-s{i}" for i in range(4)]
    # the window the memo cannot cut itself: only the schedule with the claimed slot
    assert {sid: [s.id for s in kept] for sid, kept in read.cut.items()} == {
        "sch-1": ["sch-1-s0", "sch-1-s2", "sch-1-s3"]
    }


def test_only_untidy_or_claimed_schedules_are_cut_up_front(engine: Engine) -> None:
    """Tidy schedules without claims are handed over whole (the composer's memo
    searches the full lists); their window is cut only when ``slots`` is asked."""
    _fill(engine)
    index = SlotIndex(lookback=timedelta(hours=1))
    with Session(engine) as session:
        read = index.read(session, SCHEDULES, T0 + timedelta(minutes=20), DAY_END, NOW)
    assert read.cut == {} and read.taken == []
    assert set(read.full) == set(SCHEDULES)
    assert {sid: [s.id for s in kept] for sid, kept in read.slots.items()} == {
        sid: [f"{sid}-s{i}" for i in (1, 2, 3)] for sid in SCHEDULES
    }


def test_a_forgotten_schedule_leaves_the_index(engine: Engine) -> None:
    _fill(engine)
    index = SlotIndex(lookback=timedelta(hours=1))
    assert "sch-2" in _read(engine, index)
    with transaction(engine) as session:
        repo.upsert_schedules(session, [Schedule("sch-1", ("Practitioner/sch-1",))], NOW)
        repo.delete_schedules_not_in(session, ["sch-1"], older_than=NOW + timedelta(seconds=1))
    assert set(_read(engine, index)) == {"sch-1"}


def test_warm_up_holds_every_free_slot(engine: Engine) -> None:
    _fill(engine)
    index = SlotIndex(lookback=timedelta(hours=1))

    def scope():
        return transaction(engine)

    assert not index.warm_done
    assert index.warm(scope) == 8
    assert index.warm_done


def test_concurrent_readers_agree_with_a_writer(engine: Engine) -> None:
    """Readers in threads (as the API's thread pool runs them) while writes land:
    after the last write every reader sees exactly its result."""
    _fill(engine)
    index = SlotIndex(lookback=timedelta(hours=1))
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                _read(engine, index)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for n in range(1, 6):
            _write(engine, "sch-1", [slot(i) for i in range(n, n + 4)])
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not errors
    assert _read(engine, index)["sch-1"] == [f"sch-1-s{i}" for i in range(5, 9)]


def test_full_lists_stay_the_same_objects_until_their_schedule_changes(engine: Engine) -> None:
    """The composer's memo trusts list identity: a list is never changed in place,
    and only the lists of schedules a sync changed are replaced."""
    _fill(engine)
    index = SlotIndex(lookback=timedelta(hours=1))

    def full() -> dict[str, list[Slot]]:
        with Session(engine) as session:
            return index.read(session, SCHEDULES, T0, DAY_END, NOW).full

    before = full()
    snapshot = {sid: list(slots) for sid, slots in before.items()}
    _write(engine, "sch-1", [slot(i) for i in range(1, 5)])
    after = full()
    assert after["sch-2"] is before["sch-2"]
    assert after["sch-1"] is not before["sch-1"]
    assert before == snapshot  # the replaced list was not edited in place


def test_a_long_slot_reaching_into_the_window_counts_even_behind_a_later_one(
    engine: Engine,
) -> None:
    """Overlapping slots (an EHR data error the composer tolerates): the window must
    still get a slot that began well before it, not only the last one that did."""
    with transaction(engine) as session:
        repo.upsert_schedules(session, [Schedule("sch-1", ("Practitioner/sch-1",))], NOW)
        long = Slot(id="long", schedule_id="sch-1", start=T0, end=T0 + timedelta(hours=2))
        short = Slot(
            id="short",
            schedule_id="sch-1",
            start=T0 + timedelta(minutes=30),
            end=T0 + timedelta(minutes=45),
        )
        repo.apply_snapshot(session, plan_snapshot({}, [long, short]), NOW)
    index = SlotIndex(lookback=timedelta(hours=3))
    window = _read(engine, index, T0 + timedelta(hours=1), T0 + timedelta(hours=3))
    assert window == {"sch-1": ["long"]}
    with Session(engine) as session:
        read = index.read(session, ["sch-1"], T0 + timedelta(hours=1), T0 + timedelta(hours=3), NOW)
    # not tidy: no full list for the memo, the window cut up front
    assert read.full == {} and [s.id for s in read.cut["sch-1"]] == ["long"]


def _coded_slots() -> list[Slot]:
    """Slots whose three code lists all differ, so that a mix-up of any two shows."""
    return [
        slot(
            i,
            schedule=sid,
            service_types=(f"svc|{sid}-{i}",),
            specialties=(f"spec|{i}", "spec|shared"),
            appointment_types=(f"appt|{i % 2}",),
        )
        for sid in SCHEDULES
        for i in range(4)
    ]


def _held(engine: Engine, index: SlotIndex) -> list[Slot]:
    with read_session(engine, autocommit=True) as session:  # as $find reads
        window = index.read(session, SCHEDULES, T0 - timedelta(hours=1), DAY_END, NOW).slots
    return sorted((s for slots in window.values() for s in slots), key=lambda s: s.id)


def test_the_index_holds_each_slot_as_written_field_by_field(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Times in UTC and every code list in its own field, whatever the connection's
    time zone; also when the read streams its rows a few at a time."""
    written = _coded_slots()
    with transaction(engine) as session:
        repo.upsert_schedules(
            session, [Schedule(sid, (f"Practitioner/{sid}",)) for sid in SCHEDULES], NOW
        )
        repo.apply_snapshot(session, plan_snapshot({}, written), NOW)
    monkeypatch.setattr(slot_reads, "_READ_ROWS", 3)  # fewer than one schedule's slots
    if engine.dialect.name == "postgresql":  # a server in another zone than UTC
        url = engine.url.update_query_dict({"options": "-c timezone=America/New_York"})
        engine = make_engine(url.render_as_string(hide_password=False))
    index = SlotIndex(lookback=timedelta(hours=1))
    held = _held(engine, index)
    fields = ("id", "schedule_id", "start", "end", "service_types", "specialties")
    expected = sorted(written, key=lambda s: s.id)
    assert [[getattr(s, f) for f in fields] for s in held] == [
        [getattr(s, f) for f in fields] for s in expected
    ]
    assert [s.appointment_types for s in held] == [s.appointment_types for s in expected]
    assert all(s.start.utcoffset() == timedelta(0) for s in held)
    if engine.dialect.name == "postgresql":
        engine.dispose()


def test_the_first_start_after_an_instant_is_the_earliest_of_the_schedules_asked(
    engine: Engine,
) -> None:
    with transaction(engine) as session:
        repo.upsert_schedules(
            session, [Schedule(sid, (f"Practitioner/{sid}",)) for sid in SCHEDULES], NOW
        )
        # sch-1 every 15 minutes from T0, sch-2 every 20: starts 0,15,30,45 and 0,20,40,60
        slots = [slot(i, schedule="sch-1") for i in range(4)]
        slots += [slot(i, schedule="sch-2", minutes=20) for i in range(4)]
        repo.apply_snapshot(session, plan_snapshot({}, slots), NOW)
    index = SlotIndex(lookback=timedelta(hours=1))
    _read(engine, index)  # caught up, as a $find has done before it asks
    minute = timedelta(minutes=1)
    later = T0 + timedelta(days=1)
    assert index.first_start_after(SCHEDULES, T0 + 15 * minute, later) == T0 + 20 * minute
    # strictly after: a slot starting at the instant itself is reached already
    assert index.first_start_after(["sch-1"], T0 + 15 * minute, later) == T0 + 30 * minute
    assert index.first_start_after(["sch-2"], T0 + 41 * minute, later) == T0 + 60 * minute
    # not at or past the end given, nor of schedules not asked or not held
    assert index.first_start_after(["sch-2"], T0 + 41 * minute, T0 + 60 * minute) is None
    assert index.first_start_after(["sch-1", "gone"], T0 + 45 * minute, later) is None
    assert index.first_start_after([], T0, later) is None
