"""Snapshot replace of (schedules x window) chunks against a scripted EHR (SQLite, PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from app.cache import repository as repo
from app.cache.snapshot import SnapshotPlan
from app.core.domain import Schedule, Slot
from app.core.times import fhir_instant
from app.ehr.errors import EhrUnavailable
from app.sync.chunk import Chunk, IncompleteAnswer, sync_chunk
from tests.factories import slot
from tests.fake_ehr import FakeEhr
from tests.sync_support import DAY0, Clock, cached, client_for

WEEK = Chunk(None, DAY0, DAY0 + timedelta(days=7))


def ehr_with(*schedules: str, per_schedule: int = 4) -> FakeEhr:
    ehr = FakeEhr()
    for sid in schedules:
        ehr.add_schedule(sid, f"Practitioner/{sid}", "Location/clinic-1")
        ehr.put(*(slot(i, schedule=sid) for i in range(per_schedule)))
    return ehr


def test_window_replace_removes_updates_and_adds(engine):
    ehr = ehr_with("sch-1", "sch-2")
    first = sync_chunk(engine, client_for(ehr), WEEK)
    assert (first.upserted, first.deleted) == (8, 0)
    assert cached(engine) == ehr.slots
    with Session(engine) as s:
        assert repo.actors_by_ref(s)["Practitioner/sch-1"].display == "Dr Practitioner/sch-1"
        assert set(repo.schedules_by_id(s)) == {"sch-1", "sch-2"}

    ehr.book("sch-1-s0")  # busy: leaves the cache
    del ehr.slots["sch-2-s3"]  # gone
    moved = ehr.slots["sch-1-s1"]
    ehr.put(replace(moved, start=moved.start + timedelta(minutes=5)), slot(9, schedule="sch-2"))
    second = sync_chunk(engine, client_for(ehr), WEEK)
    assert cached(engine) == {k: v for k, v in ehr.slots.items() if v.status == "free"}
    assert (second.upserted, second.deleted, second.unchanged) == (2, 2, 5)


def test_failed_page_leaves_cache_untouched(engine):
    ehr = ehr_with("sch-1", per_schedule=6)
    sync_chunk(engine, client_for(ehr), WEEK)
    before = cached(engine)
    ehr.book("sch-1-s0")
    ehr.fail("/Slot/$prefetch", status=503, times=10)
    with pytest.raises(EhrUnavailable):
        sync_chunk(engine, client_for(ehr), WEEK)
    assert cached(engine) == before


def test_short_page_is_detected_and_changes_nothing(engine):
    ehr = ehr_with("sch-1", per_schedule=6)
    sync_chunk(engine, client_for(ehr), WEEK)
    before = cached(engine)
    del ehr.slots["sch-1-s5"]
    ehr.fail("/Slot/$prefetch", short=True)
    with pytest.raises(IncompleteAnswer):
        sync_chunk(engine, client_for(ehr), WEEK)
    assert cached(engine) == before


def test_schedule_chunk_touches_only_its_schedule(engine):
    ehr = ehr_with("sch-1", "sch-2")
    sync_chunk(engine, client_for(ehr), WEEK)
    for sid in ("sch-1-s0", "sch-2-s0"):
        ehr.book(sid)
    result = sync_chunk(engine, client_for(ehr), Chunk(("sch-1",), DAY0, DAY0 + timedelta(days=7)))
    assert result.deleted == 1
    assert "sch-1-s0" not in cached(engine)
    assert "sch-2-s0" in cached(engine)  # another schedule's change waits for its own refresh
    # STU3 cannot name a schedule: it asked by the schedule's actors
    prefetch = [r for r in ehr.requests if r.url.path.endswith("$prefetch")][-1]
    assert prefetch.url.params.get_list("practitioner") == ["Practitioner/sch-1"]
    assert prefetch.url.params.get_list("location-reference") == ["Location/clinic-1"]


def test_r4_chunk_uses_schedule_search(engine):
    ehr = ehr_with("sch-1", "sch-2")
    sync_chunk(engine, client_for(ehr, "r4"), Chunk(("sch-2",), DAY0, DAY0 + timedelta(days=7)))
    assert set(cached(engine)) == {f"sch-2-s{i}" for i in range(4)}
    request = ehr.requests[-2]
    assert request.url.path == "/fhir/Slot"
    assert request.url.params["schedule"] == "Schedule/sch-2"
    assert request.url.params["status"] == "free"
    # plain R4 keeps no slot bookkeeping: the window's active Appointments are read beside
    appointments = ehr.requests[-1]
    assert appointments.url.path == "/fhir/Appointment"
    assert appointments.url.params.get_list("date") == [
        f"ge{fhir_instant(DAY0 - timedelta(hours=12))}",
        f"lt{fhir_instant(DAY0 + timedelta(days=7))}",
    ]
    assert appointments.url.params["status"] == (
        "proposed,pending,booked,arrived,checked-in,waitlist"
    )


def test_r4_slot_of_an_active_appointment_is_taken_whatever_the_slot_says(engine):
    """A generic R4 server leaves a booked Slot free; the Appointment is what counts."""
    ehr = ehr_with("sch-1")
    client = client_for(ehr, "r4")
    sync_chunk(engine, client, WEEK)
    assert set(cached(engine)) == {f"sch-1-s{i}" for i in range(4)}
    ehr.appoint("sch-1-s0", "booked")
    ehr.appoint("sch-1-s1", "pending")
    ehr.appoint("sch-1-s2", "cancelled")
    result = sync_chunk(engine, client, WEEK)
    assert ehr.slots["sch-1-s0"].status == "free"
    assert set(cached(engine)) == {"sch-1-s2", "sch-1-s3"}
    assert result.deleted == 2
    ehr.appointments[0]["status"] = "cancelled"  # the booking ends: the slot comes back
    sync_chunk(engine, client, WEEK)
    assert set(cached(engine)) == {"sch-1-s0", "sch-1-s2", "sch-1-s3"}


def test_post_prefetch(engine):
    ehr = ehr_with("sch-1")
    sync_chunk(engine, client_for(ehr, prefetch_method="POST"), WEEK)
    assert cached(engine) == ehr.slots
    assert ehr.requests[0].method == "POST"


def test_older_fetch_never_overwrites_newer(engine):
    """A slow chunk that started before a refresh must not undo the refresh."""
    ehr = ehr_with("sch-1")
    clock = Clock(DAY0)
    sync_chunk(engine, client_for(ehr), WEEK, clock=clock)
    slow_started = clock()  # the slow load chunk asked the EHR now ...
    stale_answer = dict(ehr.slots)
    ehr.book("sch-1-s0")
    sync_chunk(
        engine, client_for(ehr), Chunk(("sch-1",), DAY0, DAY0 + timedelta(days=1)), clock=clock
    )
    assert "sch-1-s0" not in cached(engine)

    # ... and writes the old answer only now
    old = FakeEhr(schedules=dict(ehr.schedules), slots=stale_answer)
    result = sync_chunk(engine, client_for(old), WEEK, clock=lambda: slow_started)
    assert result.skipped_days == 1
    assert "sch-1-s0" not in cached(engine)


def test_unknown_schedule_is_read_when_not_included(engine):
    ehr = ehr_with("sch-1")
    slots_only = FakeEhr(schedules=dict(ehr.schedules), slots=dict(ehr.slots))
    original = slots_only._page  # an EHR that ignores _include

    def without_includes(path, params, items, include):
        return original(path, params, items, include=False)

    slots_only._page = without_includes
    sync_chunk(engine, client_for(slots_only), WEEK)
    assert cached(engine) == ehr.slots
    assert "/fhir/Schedule/sch-1" in slots_only.paths()


def test_big_chunks_take_the_bulk_path_and_update_in_place(engine):
    """Enough rows for PostgreSQL's COPY-staged upsert: inserts, then updates of the same ids."""
    ehr = FakeEhr(page_size=400)
    ehr.add_schedule("sch-1", "Practitioner/sch-1")
    ehr.put(*(slot(i, minutes=5) for i in range(700)))
    assert sync_chunk(engine, client_for(ehr), WEEK).upserted == 700
    assert cached(engine) == ehr.slots
    for i in range(0, 700, 2):
        s = ehr.slots[f"sch-1-s{i}"]
        ehr.put(
            replace(s, end=s.end + timedelta(minutes=1), service_types=(*s.service_types, "x|y"))
        )
    result = sync_chunk(engine, client_for(ehr), WEEK)
    assert (result.upserted, result.unchanged) == (350, 350)
    assert cached(engine) == ehr.slots


def test_bulk_insert_of_a_slot_cached_elsewhere_falls_back_to_upsert(engine):
    """A slot new to this window but cached in another (it moved) must not break the copy."""
    ehr = FakeEhr(page_size=400)
    ehr.add_schedule("sch-1", "Practitioner/sch-1")
    ehr.put(*(slot(i, minutes=5) for i in range(100)))
    far = Chunk(None, DAY0 + timedelta(days=7), DAY0 + timedelta(days=8))
    moved = replace(ehr.slots["sch-1-s0"], start=DAY0 + timedelta(days=7, hours=9))
    moved = replace(moved, end=moved.start + timedelta(minutes=5))
    sync_chunk(
        engine, client_for(FakeEhr(schedules=dict(ehr.schedules), slots={moved.id: moved})), far
    )
    assert cached(engine)[moved.id].start == moved.start
    assert sync_chunk(engine, client_for(ehr), WEEK).upserted == 100
    assert cached(engine) == ehr.slots  # s0 moved back into this week, updated in place


def _rich(n: int) -> Slot:
    """A slot with every cached field set, text that needs escaping in any text format."""
    return slot(
        n,
        specialties=("http://snomed.info/sct|394814009",),
        appointment_types=("http://terminology.hl7.org/CodeSystem/v2-0276|ROUTINE",),
        overbooked=n % 2 == 0,
        comment=f"Dr Ørsted\tRoom 3\\B\n“line two” {n}",
        version_id=str(n),
        last_updated=DAY0 + timedelta(seconds=n, microseconds=123_000),
    )


def test_bulk_writes_keep_every_field_exactly(engine):
    """Enough slots for the bulk path (PostgreSQL: binary COPY, then staged upsert of
    changed ones); each field reads back as written, on both backends."""
    new = [_rich(i) for i in range(repo.COPY_THRESHOLD * 2)]
    with Session(engine) as s, s.begin():
        repo.upsert_schedules(s, [Schedule(id="sch-1", actor_refs=())], DAY0)
        repo.apply_snapshot(s, SnapshotPlan(upserts=tuple(new), deletes=(), unchanged=0), DAY0)
    assert cached(engine) == {x.id: x for x in new}
    before = cached(engine)
    changed = [
        replace(x, comment=None, specialties=(), overbooked=not x.overbooked, version_id=None)
        for x in new
    ]
    with Session(engine) as s, s.begin():
        plan = SnapshotPlan(upserts=tuple(changed), deletes=(), unchanged=0)
        repo.apply_snapshot(s, plan, DAY0 + timedelta(hours=1), cached=before)
    assert cached(engine) == {x.id: x for x in changed}


def test_an_older_fetch_never_moves_back_a_slot_a_newer_fetch_moved_to_another_day(engine):
    """A slot moved to the next day while a whole-day chunk paged: the refresh of its
    new day wrote it there and marked that day only; the slow chunk's older copy (on the
    old day) must not move it back, where later refreshes of the new day never see it."""
    ehr = ehr_with("sch-1")
    clock = Clock(DAY0)
    sync_chunk(engine, client_for(ehr), WEEK, clock=clock)
    day = Chunk(None, DAY0, DAY0 + timedelta(days=1))
    slow_started = clock()  # the slow load chunk of day 0 asked the EHR now ...
    stale_answer = dict(ehr.slots)
    moved = replace(
        ehr.slots["sch-1-s0"],
        start=ehr.slots["sch-1-s0"].start + timedelta(days=1),
        end=ehr.slots["sch-1-s0"].end + timedelta(days=1),
    )
    ehr.put(moved)  # ... the EHR moves a slot to day 1 and notifies: day 1 is refreshed
    sync_chunk(
        engine,
        client_for(ehr),
        Chunk(("sch-1",), DAY0 + timedelta(days=1), DAY0 + timedelta(days=2)),
        clock=clock,
    )
    assert cached(engine)["sch-1-s0"].start == moved.start
    old = FakeEhr(schedules=dict(ehr.schedules), slots=stale_answer)
    sync_chunk(engine, client_for(old), day, clock=lambda: slow_started)
    assert cached(engine)["sch-1-s0"].start == moved.start  # still where the EHR has it
    # and a later refresh of day 1 keeps it right
    ehr.book("sch-1-s0")
    sync_chunk(
        engine,
        client_for(ehr),
        Chunk(("sch-1",), DAY0 + timedelta(days=1), DAY0 + timedelta(days=2)),
        clock=clock,
    )
    assert "sch-1-s0" not in cached(engine)
