"""Snapshot replace of (schedules x window) chunks against the sandbox EHR in-process
(SQLite, PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from msgspec import structs
from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from app.cache import repository as repo
from app.cache.bulk import COPY_THRESHOLD
from app.cache.db import transaction
from app.cache.models import SlotRow
from app.cache.repository import ScheduleGone
from app.cache.snapshot import SnapshotPlan
from app.core.domain import Actor, ContactPoint, Position, PostalAddress, Schedule, Slot
from app.core.times import fhir_instant
from app.ehr.errors import EhrUnavailable
from app.sync.chunk import Chunk, IncompleteAnswer, fetch_chunk, sync_chunk, write_chunk
from app.sync.discovery import discover_schedules
from app.sync.retry import is_transient
from app.sync.windows import utcnow
from tests.factories import slot
from tests.sync_support import DAY0, Clock, SandboxEhr, cached, client_for, context, view

WEEK = Chunk(None, DAY0, DAY0 + timedelta(days=7))
DAY = timedelta(days=1)


def on_first_day(ehr: SandboxEhr, schedule: str) -> str:
    """A free slot of the schedule on the first day of the week."""
    return next(k for k, v in ehr.truth(schedule).items() if v[1] < DAY0 + DAY)


def appoint(ehr: SandboxEhr, slot_id: str, status: str) -> str:
    """An Appointment on the slot, stored as sent (a generic R4 server keeps the slot free)."""
    _, start, end, _ = ehr.truth()[slot_id]
    body = {
        "resourceType": "Appointment",
        "status": status,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "slot": [{"reference": f"Slot/{slot_id}"}],
        "participant": [{"actor": {"reference": "Patient/pat-1"}, "status": "accepted"}],
    }
    answer = ehr.http.post("/fhir/Appointment", json=body)
    assert answer.status_code == 201, answer.text
    appointment_id: str = answer.json()["id"]
    return appointment_id


def week_truth(ehr: SandboxEhr, *schedule_ids: str) -> dict:
    return ehr.truth(*schedule_ids, start=WEEK.start, end=WEEK.end)


def test_window_replace_removes_updates_and_adds(engine, sandbox):
    ehr = sandbox()
    first = sync_chunk(engine, client_for(ehr), WEEK)
    truth = week_truth(ehr)
    assert (first.upserted, first.deleted) == (len(truth), 0)
    assert view(cached(engine)) == truth
    schedule = ehr.busiest()
    practitioner = next(a for a in ehr.schedules[schedule] if a.startswith("Practitioner/"))
    name = ehr.http.get(f"/fhir/{practitioner}").json()["name"][0]["text"]
    with Session(engine) as s:
        assert repo.actors_by_ref(s)[practitioner].display == name
        assert set(repo.schedules_by_id(s)) == {v[0] for v in truth.values()}

    booked, gone, moved = list(week_truth(ehr, schedule))[:3]
    added = next(s["id"] for s in ehr.slots(schedule, status="busy"))
    ehr.mutate(
        {"op": "book", "slot": booked},  # busy: leaves the cache
        {"op": "delete", "slot": gone},  # gone
        {"op": "move", "slot": moved, "minutes": 5},
        {"op": "free", "slot": added},
    )
    second = sync_chunk(engine, client_for(ehr), WEEK)
    assert view(cached(engine)) == week_truth(ehr)
    assert added in cached(engine) and cached(engine)[moved].start == truth[moved][1] + timedelta(
        minutes=5
    )
    assert (second.upserted, second.deleted, second.unchanged) == (2, 2, len(truth) - 3)


def test_failed_page_leaves_cache_untouched(engine, sandbox):
    ehr = sandbox()
    sync_chunk(engine, client_for(ehr), WEEK)
    before = cached(engine)
    ehr.book(next(iter(before)))
    ehr.fail("/Slot/$prefetch", status=503, times=10)
    with pytest.raises(EhrUnavailable):
        sync_chunk(engine, client_for(ehr), WEEK)
    assert cached(engine) == before


def test_short_page_is_detected_and_changes_nothing(engine, sandbox):
    ehr = sandbox()
    sync_chunk(engine, client_for(ehr), WEEK)
    before = cached(engine)
    ehr.mutate({"op": "delete", "slot": next(iter(before))})
    ehr.fail("/Slot/$prefetch", kind="short-page")
    with pytest.raises(IncompleteAnswer):
        sync_chunk(engine, client_for(ehr), WEEK)
    assert cached(engine) == before


def test_schedule_chunk_touches_only_its_schedule(engine, sandbox):
    ehr = sandbox()
    sync_chunk(engine, client_for(ehr), WEEK)
    mine, other = ehr.busiest(), ehr.busiest(skip=1)
    mine_booked, other_booked = next(iter(ehr.truth(mine))), next(iter(ehr.truth(other)))
    ehr.book(mine_booked, other_booked)
    result = sync_chunk(engine, client_for(ehr), Chunk((mine,), WEEK.start, WEEK.end))
    assert result.deleted == 1
    assert mine_booked not in cached(engine)
    assert other_booked in cached(engine)  # another schedule's change waits for its own refresh
    # STU3 cannot name a schedule: it asked by the schedule's actors
    practitioner, location = ehr.schedules[mine]
    prefetch = [r for r in ehr.requests if r.url.path.endswith("$prefetch")][-1]
    assert prefetch.url.params.get_list("practitioner") == [practitioner]
    assert prefetch.url.params.get_list("location-reference") == [location]


def test_r4_chunk_uses_schedule_search(engine, sandbox):
    ehr = sandbox("r4", profile="plain-r4")
    schedule = ehr.busiest(skip=1)
    sync_chunk(engine, client_for(ehr, "r4"), Chunk((schedule,), WEEK.start, WEEK.end))
    assert set(cached(engine)) == set(week_truth(ehr, schedule))
    request = next(r for r in ehr.requests if r.url.path == "/fhir/Slot")
    assert request.url.params["schedule"] == f"Schedule/{schedule}"
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


def test_r4_slot_of_an_active_appointment_is_taken_whatever_the_slot_says(engine, sandbox):
    """A generic R4 server leaves a booked Slot free; the Appointment is what counts."""
    ehr = sandbox("r4", profile="plain-r4")
    client = client_for(ehr, "r4")
    schedule = ehr.busiest()
    chunk = Chunk((schedule,), WEEK.start, WEEK.end)
    sync_chunk(engine, client, chunk)
    free = set(week_truth(ehr, schedule))
    assert set(cached(engine)) == free
    s0, s1, s2 = sorted(free)[:3]
    booking = appoint(ehr, s0, "booked")
    appoint(ehr, s1, "pending")
    appoint(ehr, s2, "cancelled")
    result = sync_chunk(engine, client, chunk)
    assert s0 in ehr.truth(schedule)  # the EHR still says free
    assert set(cached(engine)) == free - {s0, s1}
    assert result.deleted == 2
    resource = ehr.http.get(f"/fhir/Appointment/{booking}").json()
    resource["status"] = "cancelled"  # the booking ends: the slot comes back
    assert ehr.http.put(f"/fhir/Appointment/{booking}", json=resource).status_code == 200
    sync_chunk(engine, client, chunk)
    assert set(cached(engine)) == free - {s1}


def test_post_prefetch(engine, sandbox):
    ehr = sandbox()
    sync_chunk(engine, client_for(ehr, prefetch_method="POST"), WEEK)
    assert view(cached(engine)) == week_truth(ehr)
    assert ehr.requests[0].method == "POST"


def test_older_fetch_never_overwrites_newer(engine, sandbox):
    """A slow chunk that started before a refresh must not undo the refresh."""
    ehr = sandbox()
    old = sandbox()  # the same organisation: it keeps the stale answer
    clock = Clock(DAY0)
    sync_chunk(engine, client_for(ehr), WEEK, clock=clock)
    slow_started = clock()  # the slow load chunk asked the EHR now ...
    schedule = ehr.busiest()
    booked = on_first_day(ehr, schedule)
    ehr.book(booked)
    sync_chunk(engine, client_for(ehr), Chunk((schedule,), DAY0, DAY0 + DAY), clock=clock)
    assert booked not in cached(engine)

    # ... and writes the old answer only now
    assert booked in old.truth()
    result = sync_chunk(engine, client_for(old), WEEK, clock=lambda: slow_started)
    assert result.skipped_days == 1
    assert booked not in cached(engine)


def test_unknown_schedule_is_read_when_not_included(engine, sandbox):
    ehr = sandbox()
    ignores = ehr.fail("/Slot/$prefetch", kind="no-includes")  # an EHR that ignores _include
    sync_chunk(engine, client_for(ehr), WEEK)
    truth = week_truth(ehr)
    assert view(cached(engine)) == truth
    assert ehr.fired(ignores) >= 1
    assert {f"/fhir/Schedule/{v[0]}" for v in truth.values()} <= set(ehr.paths())


def test_big_chunks_take_the_bulk_path_and_update_in_place(engine, sandbox):
    """Enough rows for PostgreSQL's COPY-staged upsert: inserts, then updates of the same ids."""
    ehr = sandbox(page_size=100)
    truth = week_truth(ehr)
    assert len(truth) > 2 * repo.COPY_THRESHOLD
    assert sync_chunk(engine, client_for(ehr), WEEK).upserted == len(truth)
    assert view(cached(engine)) == truth
    later = [k for k, v in sorted(truth.items()) if v[1] < WEEK.end - DAY][::2]
    ehr.mutate({"op": "move", "slots": later, "minutes": 1})
    result = sync_chunk(engine, client_for(ehr), WEEK)
    assert (result.upserted, result.unchanged) == (len(later), len(truth) - len(later))
    assert view(cached(engine)) == week_truth(ehr)


def test_bulk_insert_of_a_slot_cached_elsewhere_falls_back_to_upsert(engine, sandbox):
    """A slot new to this window but cached in another (it moved) must not break the copy."""
    ehr = sandbox(page_size=100)
    truth = week_truth(ehr)
    assert len(truth) > repo.COPY_THRESHOLD
    far = Chunk(None, DAY0 + timedelta(days=7), DAY0 + timedelta(days=8))
    moved = next(k for k, v in truth.items() if v[1] < DAY0 + DAY)
    ehr.mutate({"op": "move", "slot": moved, "minutes": 7 * 24 * 60})
    sync_chunk(engine, client_for(ehr), far)
    assert cached(engine)[moved].start == truth[moved][1] + timedelta(days=7)
    ehr.mutate({"op": "move", "slot": moved, "minutes": -7 * 24 * 60})
    assert sync_chunk(engine, client_for(ehr), WEEK).upserted == len(truth)
    assert cached(engine)[moved].start == truth[moved][1]  # moved back, updated in place
    assert view(cached(engine)) == ehr.truth(start=WEEK.start, end=far.end)


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
        structs.replace(
            x, comment=None, specialties=(), overbooked=not x.overbooked, version_id=None
        )
        for x in new
    ]
    with Session(engine) as s, s.begin():
        plan = SnapshotPlan(upserts=tuple(changed), deletes=(), unchanged=0)
        repo.apply_snapshot(s, plan, DAY0 + timedelta(hours=1), cached=before)
    assert cached(engine) == {x.id: x for x in changed}


def test_an_older_fetch_never_moves_back_a_slot_a_newer_fetch_moved_to_another_day(engine, sandbox):
    """A slot moved to the next day while a whole-day chunk paged: the refresh of its
    new day wrote it there and marked that day only; the slow chunk's older copy (on the
    old day) must not move it back, where later refreshes of the new day never see it."""
    ehr = sandbox()
    old = sandbox()  # the same organisation: it keeps the stale answer
    clock = Clock(DAY0)
    sync_chunk(engine, client_for(ehr), WEEK, clock=clock)
    day = Chunk(None, DAY0, DAY0 + DAY)
    slow_started = clock()  # the slow load chunk of day 0 asked the EHR now ...
    schedule = ehr.busiest()
    moved = on_first_day(ehr, schedule)
    was = ehr.truth()[moved][1]
    ehr.mutate({"op": "move", "slot": moved, "minutes": 24 * 60})
    # ... the EHR moves a slot to day 1 and notifies: day 1 is refreshed
    next_day = Chunk((schedule,), DAY0 + DAY, DAY0 + 2 * DAY)
    sync_chunk(engine, client_for(ehr), next_day, clock=clock)
    assert cached(engine)[moved].start == was + DAY
    assert old.truth()[moved][1] == was
    sync_chunk(engine, client_for(old), day, clock=lambda: slow_started)
    assert cached(engine)[moved].start == was + DAY  # still where the EHR has it
    # and a later refresh of day 1 keeps it right
    ehr.book(moved)
    sync_chunk(engine, client_for(ehr), next_day, clock=clock)
    assert moved not in cached(engine)


def test_older_days_written_by_copy_leave_a_slot_a_newer_fetch_moved(engine, sandbox):
    """As above, but the slow chunk's days are not in the cache any more, so every slot of
    its answer is new to it and goes by the straight COPY on PostgreSQL: the copy meets
    the moved slot (cached days later) and only then is the slot left where it is."""
    ehr = sandbox()
    old = sandbox()
    clock = Clock(DAY0)
    sync_chunk(engine, client_for(ehr), WEEK, clock=clock)
    days = Chunk(None, DAY0, DAY0 + 2 * DAY)
    slow_started = clock()
    schedule = ehr.busiest()
    moved = on_first_day(ehr, schedule)
    was = ehr.truth()[moved][1]
    ehr.mutate({"op": "move", "slot": moved, "minutes": 3 * 24 * 60})
    later = Chunk((schedule,), DAY0 + 3 * DAY, DAY0 + 4 * DAY)
    sync_chunk(engine, client_for(ehr), later, clock=clock)
    with Session(engine) as s, s.begin():
        s.execute(delete(SlotRow).where(SlotRow.start < days.end))  # the days forgotten
    truth = set(old.truth(start=days.start, end=days.end))
    assert len(truth) >= COPY_THRESHOLD  # the answer goes by COPY
    result = sync_chunk(engine, client_for(old), days, clock=lambda: slow_started)
    assert cached(engine)[moved].start == was + 3 * DAY  # still where the EHR has it
    assert {k for k, v in cached(engine).items() if v.start < days.end} == truth - {moved}
    assert result.upserted == len(truth) - 1


def test_actors_keep_every_field_exactly(engine):
    """A location's address parts, telecom and position read back as written, and an
    update replaces them (down to none), on both backends."""
    full = Actor(
        ref="Location/clinic-1",
        display="Springfield Clinic",
        codes=("http://terminology.hl7.org/CodeSystem/location-physical-type|bu",),
        address="1 Main St, Suite 2, Springfield, Hampden County, MA, 01101",
        timezone="America/New_York",
        postal_address=PostalAddress(
            line=("1 Main St", "Suite 2"),
            city="Springfield",
            district="Hampden County",
            state="MA",
            postal_code="01101",
            country="US",
        ),
        telecom=(
            ContactPoint("phone", "413-555-0101", "work"),
            ContactPoint("url", "https://clinic.example/springfield"),
        ),
        position=Position(42.101483, -72.589811),
    )
    partial = Actor(
        ref="Location/clinic-2",
        display="Albany Clinic",
        postal_address=PostalAddress(city="Albany"),
        position=Position(0.0, -180.0),
    )
    bare = Actor(ref="Location/room-1", display="Exam 1", part_of="Location/clinic-1")
    doctor = Actor(ref="Practitioner/pr-1", display="Dr One")
    written = [full, partial, bare, doctor]
    with Session(engine) as s, s.begin():
        repo.upsert_actors(s, written, DAY0)
    with Session(engine) as s:
        assert repo.actors_by_ref(s) == {a.ref: a for a in written}
    moved = replace(
        full,
        telecom=(ContactPoint("phone", "413-555-0199"),),
        position=None,
        postal_address=replace(full.postal_address, line=("9 Elm St",)),
    )
    emptied = replace(partial, postal_address=None, position=None)
    with Session(engine) as s, s.begin():
        repo.upsert_actors(s, [moved, emptied], DAY0 + DAY)
    with Session(engine) as s:
        assert repo.actors_by_ref(s) == {a.ref: a for a in (moved, emptied, bare, doctor)}


@pytest.mark.parametrize("fhir_version", ["stu3", "r4"])
def test_locations_are_cached_as_the_ehr_states_them_and_kept_up_to_date(
    engine, sandbox, fhir_version
):
    """Every clinic the schedules name: address parts, telecom and position equal the
    sandbox's own; a cached actor that differs from the EHR is rewritten by the next sync.
    STU3 reads them in $prefetch's includes, R4 when it discovers the schedules."""
    ehr = sandbox(fhir_version, profile="sandbox" if fhir_version == "stu3" else "plain-r4")
    schedules = sorted(ehr.schedules)[:12]
    chunk = Chunk(tuple(schedules), WEEK.start, WEEK.end)

    def sync() -> None:
        if fhir_version == "stu3":
            sync_chunk(engine, client_for(ehr), chunk)
        else:
            discover_schedules(context(engine, ehr, ehr_fhir_version="r4"))

    sync()
    clinics = {f"Location/{c.id}": c for c in ehr.app.state.sandbox.store.org.clinics}
    with Session(engine) as s:
        actors = repo.actors_by_ref(s)
    named = {r for sid in schedules for r in ehr.schedules[sid] if r in clinics}
    assert named and named <= set(actors)
    for ref in named:
        clinic, actor = clinics[ref], actors[ref]
        assert actor.postal_address == PostalAddress(
            (clinic.line,), clinic.city, clinic.county, clinic.state, clinic.postal_code, "US"
        )
        assert [(p.system, p.value) for p in actor.telecom] == [
            ("phone", clinic.phone),
            ("url", clinic.website),
            ("email", clinic.email),
        ]
        assert actor.position == Position(clinic.latitude, clinic.longitude)

    ref = sorted(named)[0]
    stale = replace(actors[ref], telecom=(ContactPoint("phone", "000-555-0100"),), position=None)
    with Session(engine) as s, s.begin():
        repo.upsert_actors(s, [stale], DAY0)
    sync()
    with Session(engine) as s:
        assert repo.actors_by_ref(s, [ref])[ref] == actors[ref]


def test_slots_of_a_schedule_forgotten_meanwhile_are_not_written_and_a_retry_reads_it(
    engine, sandbox
):
    """Slots carry no foreign key to their schedule (migration 0012): the writer checks.

    A schedule forgotten (a full load's clean-up) after the fetch looked it up, in an
    answer that does not include it: the write refuses the whole chunk, retryably, and
    leaves the cache as it was; the next attempt reads the schedule from the EHR."""
    ehr = sandbox()
    client = client_for(ehr)
    sync_chunk(engine, client, WEEK)
    before = cached(engine)
    schedule = ehr.busiest()
    with transaction(engine) as s:
        known = repo.schedules_by_id(s, [schedule])
    answer = fetch_chunk(client, WEEK, known)
    answer.schedules.pop(schedule)  # as from an EHR that ignores _include
    with transaction(engine) as s:
        keep = [sid for sid in repo.schedules_by_id(s) if sid != schedule]
        repo.delete_schedules_not_in(s, keep, older_than=utcnow() + timedelta(days=1))
    left = cached(engine)
    assert left == {k: v for k, v in before.items() if v.schedule_id != schedule}

    with pytest.raises(ScheduleGone, match=schedule) as refused, transaction(engine) as s:
        write_chunk(s, WEEK, answer, utcnow())
    assert is_transient(refused.value)
    assert cached(engine) == left
    assert _orphans(engine) == 0

    ehr.fail("/Slot/$prefetch", kind="no-includes")  # the same EHR for the retry
    sync_chunk(engine, client, WEEK)
    assert view(cached(engine)) == week_truth(ehr)
    assert f"/fhir/Schedule/{schedule}" in set(ehr.paths())


def _orphans(engine) -> int:
    with Session(engine) as s:
        count = s.execute(
            text("SELECT count(*) FROM slots WHERE schedule_id NOT IN (SELECT id FROM schedules)")
        ).scalar_one()
    return int(count)
