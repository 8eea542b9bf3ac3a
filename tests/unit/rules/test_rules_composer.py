"""Composition rule by rule: each test builds a tiny organisation and asks $find."""

from __future__ import annotations

import random
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from msgspec import structs

from app.core.domain import Participant
from rules.appointment_id import decode
from rules.composer import compose, covering_slots, reconstruct, slot_fetch_window
from rules.request import FindRequest, InvalidFindRequest, PatientInfo
from tests.unit.rules.factories import (
    CARDIO,
    DERM,
    DEVICE_KIND,
    FAMILY,
    PAEDS,
    ROOM_KIND,
    SECRET,
    World,
    at,
    make_rules,
    sign,
    starts,
    visit,
    vt,
)

DAY = "2026-03-10"  # a Tuesday, no DST change
LA = ZoneInfo("America/Los_Angeles")


def one_practitioner(lengths: list[int] | int, count: int = 1, **kw: object) -> World:
    world = World()
    sid = world.practitioner(1)
    world.add_slots(sid, at(f"{DAY} 08:00"), lengths, count=count, **kw)  # type: ignore[arg-type]
    return world


def find_day(world: World, rules, **kw):  # type: ignore[no-untyped-def]
    return world.find(rules, at(f"{DAY} 00:00"), at(f"{DAY} 23:59"), **kw)


# ---------------------------------------------------------------- single slots and joining


def test_single_slot_that_fits_is_offered_with_participants_and_signed_id() -> None:
    world = one_practitioner(20)
    result = find_day(world, make_rules([visit(minutes=20)]))
    [appt] = result.appointments
    assert starts(result) == ["08:00"]
    assert appt.minutes == 20
    assert appt.slot_ids == (f"sch-pr-1-c1-{at(DAY + ' 08:00').strftime('%Y%m%dT%H%M')}",)
    assert [p.ref for p in appt.participants] == ["Practitioner/pr-1", "Location/clinic-1"]
    assert all(p.status == "needs-action" and p.required == "required" for p in appt.participants)
    assert appt.participants[1].display == "Clinic 1"
    assert appt.service_types == (vt("office-visit"),)
    assert appt.specialties == (FAMILY,)
    payload = decode(appt.id, SECRET)
    assert (payload.start, payload.end, payload.slot_ids) == (appt.start, appt.end, appt.slot_ids)
    assert payload.participants == ("Practitioner/pr-1", "Location/clinic-1")


def test_slot_shorter_than_visit_is_not_offered_without_join() -> None:
    world = one_practitioner(15, count=4)
    assert find_day(world, make_rules([visit(minutes=20)])).appointments == []


def test_contiguous_slots_are_joined_when_allowed() -> None:
    world = one_practitioner(15, count=4)  # 08:00 .. 09:00
    result = find_day(world, make_rules([visit(minutes=20, join_contiguous=True)]))
    assert starts(result) == ["08:00", "08:15", "08:30"]
    assert [len(a.slot_ids) for a in result.appointments] == [2, 2, 2]


def test_join_never_crosses_a_busy_slot() -> None:
    world = one_practitioner(15, count=4, statuses=["free", "busy", "free", "free"])
    result = find_day(world, make_rules([visit(minutes=20, join_contiguous=True)]))
    assert starts(result) == ["08:30"]  # 08:00 would need the busy 08:15 slot


def test_join_never_crosses_a_gap_between_slots() -> None:
    world = World()
    sid = world.practitioner(1)
    world.add_slots(sid, at(f"{DAY} 08:00"), 15)
    world.add_slots(sid, at(f"{DAY} 08:20"), 15)  # five-minute hole at 08:15
    result = find_day(world, make_rules([visit(minutes=20, join_contiguous=True)]))
    assert result.appointments == []


def test_slot_of_another_visit_type_breaks_a_join() -> None:
    world = World()
    sid = world.practitioner(1)
    world.add_slots(sid, at(f"{DAY} 08:00"), 15)
    world.add_slots(sid, at(f"{DAY} 08:15"), 15, service_types=(vt("physical"),))
    world.add_slots(sid, at(f"{DAY} 08:30"), 15, count=2)
    result = find_day(world, make_rules([visit(minutes=20, join_contiguous=True)]))
    assert starts(result) == ["08:30"]


def test_slot_without_service_type_qualifies_and_empty_list_accepts_any() -> None:
    world = World()
    sid = world.practitioner(1)
    world.add_slots(sid, at(f"{DAY} 08:00"), 20, service_types=())
    world.add_slots(sid, at(f"{DAY} 09:00"), 20, service_types=(vt("physical"),))
    assert starts(find_day(world, make_rules([visit(minutes=20)]))) == ["08:00"]
    any_slot = make_rules([visit(minutes=20, slot_service_types=[])])
    assert starts(find_day(world, any_slot)) == ["08:00", "09:00"]


def test_listed_slot_service_types_qualify_slots() -> None:
    world = one_practitioner(20, service_types=(vt("follow-up"),))
    rules = make_rules([visit(minutes=20, slot_service_types=[vt("follow-up")])])
    assert starts(find_day(world, rules)) == ["08:00"]


def test_slot_appointment_types_filter() -> None:
    world = World()
    sid = world.practitioner(1)
    [routine] = world.add_slots(sid, at(f"{DAY} 08:00"), 20)
    [urgent] = world.add_slots(sid, at(f"{DAY} 09:00"), 20)
    world.slots = [
        structs.replace(routine, appointment_types=("http://hl7.org/fhir/v2/0276|ROUTINE",)),
        structs.replace(urgent, appointment_types=("http://hl7.org/fhir/v2/0276|EMERGENCY",)),
    ]
    rules = make_rules(
        [visit(minutes=20, slot_appointment_types=["http://hl7.org/fhir/v2/0276|ROUTINE"])]
    )
    assert starts(find_day(world, rules)) == ["08:00"]


def test_non_free_slots_are_ignored() -> None:
    world = one_practitioner(20, count=3, statuses=["busy", "busy-unavailable", "free"])
    assert starts(find_day(world, make_rules([visit(minutes=20)]))) == ["08:40"]


def test_longer_slot_covers_a_shorter_visit() -> None:
    world = one_practitioner(30)
    [appt] = find_day(world, make_rules([visit(minutes=20)])).appointments
    assert appt.minutes == 20 and len(appt.slot_ids) == 1


# ---------------------------------------------------------------- several assets


def room_visit(**extra: object) -> dict:
    return visit(
        minutes=20,
        join_contiguous=True,
        assets=[
            {"kind": "practitioner", "codes": [FAMILY]},
            {"kind": "room", "codes": [f"{ROOM_KIND}|exam"], "slot_service_types": [], **extra},
        ],
    )


def test_assets_free_time_is_intersected() -> None:
    world = one_practitioner(15, count=8)  # 08:00 .. 10:00
    room = world.room(1)
    world.add_slots(room, at(f"{DAY} 09:00"), 10, count=3, service_types=())  # 09:00 .. 09:30
    result = find_day(world, make_rules([room_visit()]))
    [appt] = result.appointments
    assert starts(result) == ["09:00"]
    assert [p.ref for p in appt.participants] == [
        "Practitioner/pr-1",
        "Location/clinic-1",
        "Location/room-1",
    ]
    room_slots = [s for s in appt.slot_ids if s.startswith("sch-room-1")]
    assert len(room_slots) == 2  # 09:00-09:10 and 09:10-09:20
    assert appt.schedule_ids == ("sch-pr-1-c1", "sch-room-1")


def test_room_at_another_clinic_does_not_count() -> None:
    world = one_practitioner(20)
    room = world.room(1, clinic=2)
    world.add_slots(room, at(f"{DAY} 08:00"), 30, service_types=())
    assert find_day(world, make_rules([room_visit()])).appointments == []
    anywhere = make_rules([room_visit(same_location_as_practitioner=False)])
    assert starts(find_day(world, anywhere)) == ["08:00"]


def test_room_must_be_of_the_required_kind() -> None:
    world = one_practitioner(20)
    room = world.room(1, kind="procedure")
    world.add_slots(room, at(f"{DAY} 08:00"), 30, service_types=())
    assert find_day(world, make_rules([room_visit()])).appointments == []


def test_optional_asset_is_added_when_free_and_never_blocks() -> None:
    world = one_practitioner(20, count=2)  # 08:00, 08:20
    room = world.room(1)
    world.add_slots(room, at(f"{DAY} 08:20"), 20, service_types=())
    result = find_day(world, make_rules([room_visit(optional=True)]))
    first, second = result.appointments
    assert [p.ref for p in first.participants] == ["Practitioner/pr-1", "Location/clinic-1"]
    assert second.participants[-1] == Participant(
        ref="Location/room-1", display="Room 1", required="optional"
    )


def test_explicit_ids_choose_the_asset_in_preference_order() -> None:
    world = one_practitioner(20)
    for n in (1, 2):
        world.add_slots(world.room(n), at(f"{DAY} 08:00"), 20, service_types=())
    rules = make_rules(
        [
            visit(
                minutes=20,
                assets=[
                    {"kind": "practitioner", "ids": ["Practitioner/pr-1"]},
                    {
                        "kind": "room",
                        "ids": ["Location/room-2", "Location/room-1"],
                        "slot_service_types": [],
                    },
                ],
            )
        ]
    )
    [appt] = find_day(world, rules).appointments
    assert appt.participants[-1].ref == "Location/room-2"


def test_device_inside_a_room_is_at_the_room_clinic() -> None:
    world = World()
    pr = world.practitioner(1, specialty=CARDIO)
    world.add_slots(pr, at(f"{DAY} 08:00"), 15, count=2, service_types=(vt("echo"),))
    world.room(1, clinic=1, kind="imaging")
    dev = world.device(1, at_ref="Location/room-1", kind="ultrasound")
    world.add_slots(dev, at(f"{DAY} 08:00"), 10, count=3, service_types=())
    rules = make_rules(
        [
            visit(
                "echo",
                minutes=30,
                join_contiguous=True,
                assets=[
                    {"kind": "practitioner", "codes": [CARDIO]},
                    {
                        "kind": "device",
                        "codes": [f"{DEVICE_KIND}|ultrasound"],
                        "slot_service_types": [],
                    },
                ],
            )
        ]
    )
    [appt] = find_day(world, rules).appointments
    assert appt.participants[-1].ref == "Device/dev-1"
    assert len(appt.slot_ids) == 2 + 3


def test_two_practitioners_never_use_the_same_person_twice() -> None:
    world = World()
    pr = world.practitioner(1)
    world.add_slots(pr, at(f"{DAY} 08:00"), 20)
    two = visit(
        minutes=20,
        assets=[
            {"kind": "practitioner", "codes": [FAMILY]},
            {"kind": "practitioner", "codes": [FAMILY]},
        ],
    )
    assert find_day(world, make_rules([two])).appointments == []
    world.add_slots(world.practitioner(2), at(f"{DAY} 08:00"), 20)
    result = find_day(world, make_rules([two]))
    assert {tuple(p.ref for p in a.participants) for a in result.appointments} == {
        ("Practitioner/pr-1", "Location/clinic-1", "Practitioner/pr-2"),
        ("Practitioner/pr-2", "Location/clinic-1", "Practitioner/pr-1"),
    }


# ---------------------------------------------------------------- time rules


def test_lead_time_boundary_is_inclusive() -> None:
    world = one_practitioner(20, count=3)  # 08:00, 08:20, 08:40
    rules = make_rules([visit(minutes=20, min_lead_minutes=60)])
    exact = find_day(world, rules, now=at(f"{DAY} 07:20"))
    assert starts(exact) == ["08:20", "08:40"]
    late = find_day(world, rules, now=at(f"{DAY} 07:20") + timedelta(seconds=1))
    assert starts(late) == ["08:40"]


def test_horizon_boundary_is_inclusive() -> None:
    world = one_practitioner(20, count=3)
    rules = make_rules([visit(minutes=20, max_horizon_days=1)])
    now = at(f"{DAY} 08:20") - timedelta(days=1)
    assert starts(find_day(world, rules, now=now)) == ["08:00", "08:20"]


def test_lead_time_and_horizon_step_only_at_whole_minutes() -> None:
    """Within a minute the clock changes nothing: slots on whole minutes are offered
    exactly as the arithmetic on the instant says, at every second of the minute."""
    world = one_practitioner(20, count=3)  # 08:00, 08:20, 08:40
    lead = make_rules([visit(minutes=20, min_lead_minutes=60)])
    for second in (0.000001, 30, 59.999999):
        now = at(f"{DAY} 07:19") + timedelta(seconds=second)
        assert starts(find_day(world, lead, now=now)) == ["08:20", "08:40"]
    horizon = make_rules([visit(minutes=20, max_horizon_days=1)])
    for second in (0, 30, 59.999999):
        now = at(f"{DAY} 08:20") - timedelta(days=1) + timedelta(seconds=second)
        assert starts(find_day(world, horizon, now=now)) == ["08:00", "08:20"]


def test_a_slot_starting_mid_minute_is_bookable_from_whole_minutes_only() -> None:
    """The lead time counts from the next whole minute and the horizon from the last:
    for a slot off the minute grid the bounds are narrower by under a minute, never
    wider than the arithmetic on the instant."""
    world = World()
    sid = world.practitioner(1)
    world.add_slots(sid, at(f"{DAY} 08:00") + timedelta(seconds=30), 20)
    rules = make_rules([visit(minutes=20, min_lead_minutes=60)])
    assert starts(find_day(world, rules, now=at(f"{DAY} 07:00"))) == ["08:00"]
    # 07:00:10 + 60 min is before 08:00:30, but 07:01 + 60 min is not
    assert starts(find_day(world, rules, now=at(f"{DAY} 07:00") + timedelta(seconds=10))) == []
    short = make_rules([visit(minutes=20, max_horizon_days=1)])
    a_day_before = at(f"{DAY} 08:00") - timedelta(days=1)
    # 08:00:40 the day before + 1 day reaches the slot; 08:00 + 1 day does not
    assert starts(find_day(world, short, now=a_day_before + timedelta(seconds=40))) == []
    assert starts(find_day(world, short, now=a_day_before + timedelta(minutes=1))) == ["08:00"]


def test_appointment_lies_inside_the_requested_window() -> None:
    world = one_practitioner(20, count=3)
    rules = make_rules([visit(minutes=20)])
    result = world.find(rules, at(f"{DAY} 08:10"), at(f"{DAY} 09:00"))
    assert starts(result) == ["08:20", "08:40"]
    result = world.find(rules, at(f"{DAY} 08:00"), at(f"{DAY} 08:59"))
    assert starts(result) == ["08:00", "08:20"]


def test_opening_hours_exclude_lunch_and_closed_days() -> None:
    world = one_practitioner(20, count=30)  # 08:00 .. 18:00
    hours = {d: ["08:00-12:00", "13:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}
    result = find_day(world, make_rules([visit(minutes=20)], hours=hours))
    local = starts(result)
    assert local[0] == "08:00" and local[-1] == "16:40"
    assert "11:40" in local and "12:00" not in local and "12:40" not in local and "13:00" in local
    closed_tuesday = make_rules([visit(minutes=20)], hours={"mon": ["08:00-17:00"]})
    assert find_day(world, closed_tuesday).appointments == []


def test_site_hours_override_the_organisation() -> None:
    world = one_practitioner(20, count=3)
    rules = make_rules(
        [visit(minutes=20)],
        hours={"mon": ["08:00-17:00"]},
        sites=[{"ref": "Location/clinic-1", "opening_hours": {"tue": ["08:20-09:00"]}}],
    )
    assert starts(find_day(world, rules)) == ["08:20", "08:40"]


def test_closures_apply_to_their_clinics_only() -> None:
    world = one_practitioner(20)
    other = make_rules(
        [visit(minutes=20)],
        closures=[{"date": DAY, "locations": ["Location/clinic-2"]}],
    )
    assert starts(find_day(world, other)) == ["08:00"]
    holiday = make_rules(
        [visit(minutes=20)],
        closures=[{"date": "2026-03-09", "end_date": "2026-03-11", "name": "Inventory"}],
    )
    assert find_day(world, holiday).appointments == []


def test_clinic_time_zone_from_the_ehr_is_used_for_hours() -> None:
    world = World()
    world.clinic(1, tz="America/Los_Angeles")
    sid = world.practitioner(1)
    world.add_slots(sid, at(f"{DAY} 07:40", LA), 20, count=3)  # 07:40 .. 08:40 in LA
    rules = make_rules([visit(minutes=20)], hours={"tue": ["08:00-17:00"]})
    assert starts(find_day(world, rules), LA) == ["08:00", "08:20"]
    pinned = make_rules(
        [visit(minutes=20)],
        hours={"tue": ["08:00-17:00"]},
        sites=[{"ref": "Location/clinic-1", "timezone": "America/New_York"}],
    )
    assert starts(find_day(world, pinned), LA) == ["07:40", "08:00", "08:20"]


# ---------------------------------------------------------------- DST change days (New York)


def test_spring_forward_day_keeps_local_opening_hours() -> None:
    world = World()
    sid = world.practitioner(1)
    # Saturday 7 March is EST (UTC-5), Sunday 8 March is EDT (UTC-4) from 02:00.
    for day in ("2026-03-07", "2026-03-08"):
        world.add_slots(sid, at(f"{day} 07:20"), 20, count=4)  # 07:20 .. 08:40 local
    rules = make_rules([visit(minutes=20)], hours={"sat": ["08:00-17:00"], "sun": ["08:00-17:00"]})
    result = world.find(rules, at("2026-03-07 00:00"), at("2026-03-09 00:00"))
    utc = [a.start.strftime("%d %H:%M") for a in result.appointments]
    assert utc == ["07 13:00", "07 13:20", "08 12:00", "08 12:20"]


def test_appointment_across_the_spring_forward_gap_lasts_its_real_duration() -> None:
    world = World()
    sid = world.practitioner(1)
    world.add_slots(sid, at("2026-03-08 01:30"), 15, count=4)  # 01:30 EST .. 03:30 EDT: 1 hour
    rules = make_rules([visit(minutes=30, join_contiguous=True)])
    result = world.find(rules, at("2026-03-08 00:00"), at("2026-03-08 05:00"))
    assert starts(result) == ["01:30", "01:45", "03:00"]
    assert all(
        a.minutes == 30 and a.end - a.start == timedelta(minutes=30) for a in result.appointments
    )


def test_fall_back_day_keeps_local_opening_hours() -> None:
    world = World()
    sid = world.practitioner(1)
    for day in ("2026-10-31", "2026-11-01"):
        world.add_slots(sid, at(f"{day} 07:40"), 20, count=2)
    rules = make_rules([visit(minutes=20)], hours={"sat": ["08:00-09:00"], "sun": ["08:00-09:00"]})
    result = world.find(rules, at("2026-10-31 00:00"), at("2026-11-02 00:00"))
    assert [a.start.strftime("%d %H:%M") for a in result.appointments] == ["31 12:00", "01 13:00"]


def test_repeated_hour_on_fall_back_day_is_offered_twice() -> None:
    world = World()
    sid = world.practitioner(1)
    first_one_am = at("2026-11-01 01:00")  # EDT, 05:00Z
    world.add_slots(sid, first_one_am, 30, count=4)  # 01:00 EDT .. 01:00 EST .. 02:00 EST
    rules = make_rules([visit(minutes=30)], hours={"sun": ["00:00-03:00"]})
    result = world.find(rules, at("2026-11-01 00:00"), at("2026-11-01 04:00"))
    assert [a.start.strftime("%H:%M") for a in result.appointments] == [
        "05:00",
        "05:30",
        "06:00",
        "06:30",
    ]
    assert starts(result) == ["01:00", "01:30", "01:00", "01:30"]


# ---------------------------------------------------------------- buffers


def buffered(before: int = 0, after: int = 0) -> dict:
    return visit(
        minutes=20,
        join_contiguous=True,
        buffer_before_minutes=before,
        buffer_after_minutes=after,
    )


def test_buffer_after_needs_the_asset_free_after_the_appointment() -> None:
    world = one_practitioner(20, count=3, statuses=["free", "free", "busy"])  # 08:00, 08:20 free
    assert starts(find_day(world, make_rules([buffered(after=10)]))) == ["08:00"]
    assert starts(find_day(world, make_rules([buffered()]))) == ["08:00", "08:20"]


def test_buffer_before_needs_the_asset_free_before_the_appointment() -> None:
    world = one_practitioner(20, count=3, statuses=["busy", "free", "free"])
    assert starts(find_day(world, make_rules([buffered(before=5)]))) == ["08:40"]


def test_buffer_applies_to_every_asset() -> None:
    world = one_practitioner(20, count=3)  # practitioner free 08:00 .. 09:00
    room = world.room(1)
    world.add_slots(room, at(f"{DAY} 08:20"), 20, service_types=())  # room free 08:20 .. 08:40
    rule = room_visit()
    rule["buffer_after_minutes"] = 5
    assert find_day(world, make_rules([rule])).appointments == []
    world.add_slots(room, at(f"{DAY} 08:40"), 10, service_types=(), status="free")
    assert starts(find_day(world, make_rules([rule]))) == ["08:20"]


# ---------------------------------------------------------------- eligibility


def test_ineligible_patient_gets_no_offers_and_a_reason() -> None:
    world = one_practitioner(30, service_types=(vt("new-patient"),))
    rules = make_rules([visit("new-patient", 30, eligibility={"patient_status": "new"})])
    existing = PatientInfo(ref="Patient/1", new_patient=False)
    result = find_day(world, rules, patient=existing)
    assert result.appointments == []
    [notice] = result.notices
    assert notice.code == "ineligible" and "new patients" in notice.message
    assert notice.visit_type == vt("new-patient")
    assert len(find_day(world, rules, patient=PatientInfo(new_patient=True)).appointments) == 1
    assert len(find_day(world, rules, patient=PatientInfo(ref="Patient/1")).appointments) == 1


def test_gender_eligibility() -> None:
    world = one_practitioner(30, service_types=(vt("physical"),))
    rules = make_rules([visit("physical", 30, eligibility={"genders": ["female"]})])
    assert find_day(world, rules, patient=PatientInfo(gender="male")).appointments == []
    assert len(find_day(world, rules, patient=PatientInfo(gender="female")).appointments) == 1


def test_age_is_checked_on_the_appointment_day() -> None:
    world = World()
    sid = world.practitioner(1, specialty=PAEDS)
    for day in ("2026-03-10", "2026-03-11", "2026-03-12"):
        world.add_slots(sid, at(f"{day} 09:00"), 30, service_types=(vt("well-child"),))
    rules = make_rules(
        [
            visit(
                "well-child",
                30,
                assets=[{"kind": "practitioner", "codes": [PAEDS]}],
                eligibility={"max_age_years": 17},
            )
        ]
    )
    turning_18 = PatientInfo(birth_date=date(2008, 3, 11))
    result = world.find(rules, at("2026-03-10 00:00"), at("2026-03-13 00:00"), patient=turning_18)
    assert [a.start.date() for a in result.appointments] == [date(2026, 3, 10)]
    adult = PatientInfo(birth_date=date(1990, 1, 1))
    result = world.find(rules, at("2026-03-10 00:00"), at("2026-03-13 00:00"), patient=adult)
    assert result.appointments == [] and result.notices[0].code == "ineligible"


def test_variants_of_a_visit_type_are_alternatives() -> None:
    world = World()
    family = world.practitioner(1, specialty=FAMILY)
    paeds = world.practitioner(2, specialty=PAEDS)
    world.add_slots(family, at(f"{DAY} 08:00"), 20)
    world.add_slots(paeds, at(f"{DAY} 09:00"), 20)
    rules = make_rules(
        [
            visit(minutes=20, name="family"),
            visit(
                minutes=20,
                name="paediatrics",
                assets=[{"kind": "practitioner", "codes": [PAEDS]}],
                eligibility={"max_age_years": 17},
            ),
        ]
    )
    child = PatientInfo(birth_date=date(2020, 1, 1))
    adult = PatientInfo(birth_date=date(1980, 1, 1))
    assert starts(find_day(world, rules, patient=child)) == ["08:00", "09:00"]
    result = find_day(world, rules, patient=adult)
    assert starts(result) == ["08:00"]
    assert result.notices == []  # the family variant applies: no warning


# ---------------------------------------------------------------- caps, ordering, count


def busy_day(practitioners: int = 1) -> World:
    world = World()
    for n in range(1, practitioners + 1):
        sid = world.practitioner(n)
        world.add_slots(sid, at(f"{DAY} 08:00"), 20, count=6)  # 08:00 .. 10:00
        world.add_slots(sid, at("2026-03-11 08:00"), 20, count=6)
    return world


def two_days(world: World, rules, **kw):  # type: ignore[no-untyped-def]
    return world.find(rules, at(f"{DAY} 00:00"), at("2026-03-12 00:00"), **kw)


def test_max_offers_per_day_per_practitioner_earliest() -> None:
    rules = make_rules([visit(minutes=20, max_offers_per_day_per_practitioner=2)])
    result = two_days(busy_day(2), rules)
    assert starts(result) == ["08:00"] * 2 + ["08:20"] * 2 + ["08:00"] * 2 + ["08:20"] * 2


def test_spread_ordering_spreads_offers_over_the_day() -> None:
    rules = make_rules(
        [visit(minutes=20, max_offers_per_day_per_practitioner=3, ordering="spread")]
    )
    result = two_days(busy_day(), rules)
    assert starts(result) == ["08:00", "08:40", "09:40"] * 2


def test_spread_ordering_spreads_count_over_the_window() -> None:
    rules = make_rules([visit(minutes=20, ordering="spread")])
    result = two_days(busy_day(), rules, count=2)
    assert [a.start for a in result.appointments] == [at(f"{DAY} 08:00"), at("2026-03-11 09:40")]


def test_practitioner_preference_decides_who_survives_count() -> None:
    rules = make_rules([visit(minutes=20, ordering="practitioner-preference")])
    world = busy_day(2)
    result = two_days(
        world, rules, count=3, practitioners=("Practitioner/pr-2", "Practitioner/pr-1")
    )
    assert {a.participants[0].ref for a in result.appointments} == {"Practitioner/pr-2"}
    assert starts(result) == ["08:00", "08:20", "08:40"]
    earliest = two_days(world, make_rules([visit(minutes=20)]), count=3)
    assert [a.participants[0].ref for a in earliest.appointments] == [
        "Practitioner/pr-1",
        "Practitioner/pr-2",
        "Practitioner/pr-1",
    ]


def test_results_are_ordered_by_start_and_stable_under_input_order() -> None:
    world = busy_day(3)
    rules = make_rules([visit(minutes=20), visit("follow-up", 20, slot_service_types=[])])
    expected = two_days(world, rules)
    assert [a.start for a in expected.appointments] == sorted(
        a.start for a in expected.appointments
    )
    shuffled = list(world.slots)
    random.Random(7).shuffle(shuffled)
    world.slots = shuffled
    assert two_days(world, rules) == expected


def test_visit_type_preference_breaks_ties_and_count_truncates() -> None:
    world = busy_day()
    rules = make_rules([visit(minutes=20), visit("follow-up", 20, slot_service_types=[])])
    result = two_days(world, rules, visit_types=(vt("follow-up"), vt("office-visit")), count=3)
    assert [
        (a.service_types[0].rpartition("|")[2], t)
        for a, t in zip(result.appointments, starts(result), strict=True)
    ] == [
        ("follow-up", "08:00"),
        ("office-visit", "08:00"),
        ("follow-up", "08:20"),
    ]


# ---------------------------------------------------------------- request filters and notices


def test_practitioner_specialty_and_location_filters() -> None:
    world = World()
    world.clinic(1, address="1 Main St, Springfield, IL 62701")
    world.clinic(2, address="9 Oak Ave, Shelbyville, IL 62565")
    world.add_slots(world.practitioner(1, clinic=1), at(f"{DAY} 08:00"), 20)
    world.add_slots(world.practitioner(2, clinic=2), at(f"{DAY} 09:00"), 20)
    world.add_slots(world.practitioner(3, clinic=2, specialty=DERM), at(f"{DAY} 10:00"), 20)
    rules = make_rules([visit(minutes=20, assets=[{"kind": "practitioner"}])])
    assert starts(find_day(world, rules)) == ["08:00", "09:00", "10:00"]
    assert starts(find_day(world, rules, practitioners=("Practitioner/pr-2",))) == ["09:00"]
    assert starts(find_day(world, rules, specialties=(DERM,))) == ["10:00"]
    assert starts(find_day(world, rules, locations=("Location/clinic-2",))) == ["09:00", "10:00"]
    assert starts(find_day(world, rules, location_strings=("springfield",))) == ["08:00"]
    assert starts(find_day(world, rules, location_strings=("62565",), specialties=(FAMILY,))) == [
        "09:00"
    ]
    only_clinic_1 = make_rules(
        [visit(minutes=20, assets=[{"kind": "practitioner"}], locations=["Location/clinic-1"])]
    )
    assert starts(find_day(world, only_clinic_1)) == ["08:00"]


def test_visit_type_without_system_matches_by_code_and_unknown_ones_are_reported() -> None:
    world = one_practitioner(20)
    rules = make_rules([visit(minutes=20)])
    result = find_day(world, rules, visit_types=("|office-visit", "http://local|nope"))
    assert starts(result) == ["08:00"]
    [notice] = result.notices
    assert notice.code == "unknown-visit-type" and notice.visit_type == "http://local|nope"


def test_window_outside_lead_time_is_reported() -> None:
    world = one_practitioner(20)
    rules = make_rules([visit(minutes=20, min_lead_minutes=24 * 60)])
    result = find_day(world, rules, now=at(f"{DAY} 07:00"))
    assert result.appointments == []
    assert [n.code for n in result.notices] == ["outside-bookable-window"]


def test_request_validation() -> None:
    with pytest.raises(InvalidFindRequest):
        FindRequest(start=at(f"{DAY} 09:00"), end=at(f"{DAY} 08:00"))
    with pytest.raises(InvalidFindRequest):
        FindRequest(start=at(f"{DAY} 09:00").replace(tzinfo=None), end=at(f"{DAY} 10:00"))
    world = one_practitioner(20)
    with pytest.raises(InvalidFindRequest):
        compose(
            FindRequest(start=at(f"{DAY} 00:00"), end=at(f"{DAY} 23:00")),
            make_rules([visit()]),
            world.slots,
            world.schedules,
            world.actors,
            at(f"{DAY} 00:00").replace(tzinfo=None),
            sign,
        )


def test_patient_participant_is_added_when_given() -> None:
    world = one_practitioner(20)
    patient = PatientInfo(ref="Patient/p-1", display="Jo Doe")
    [appt] = find_day(world, make_rules([visit()]), patient=patient).appointments
    assert appt.participants[-1] == Participant(ref="Patient/p-1", display="Jo Doe")
    assert decode(appt.id, SECRET).participants[-1] == "Patient/p-1"


# ---------------------------------------------------------------- helpers for callers


def test_covering_slots_joins_only_without_gaps() -> None:
    world = one_practitioner(15, count=4, statuses=["free", "free", "busy", "free"])
    slots = world.slots
    assert covering_slots(slots, at(f"{DAY} 08:05"), at(f"{DAY} 08:25"), join=True) == slots[:2]
    assert covering_slots(slots, at(f"{DAY} 08:05"), at(f"{DAY} 08:25"), join=False) is None
    assert covering_slots(slots, at(f"{DAY} 08:20"), at(f"{DAY} 08:50"), join=True) is None
    assert covering_slots(slots, at(f"{DAY} 08:45"), at(f"{DAY} 09:00"), join=False) == slots[3:]


def test_slot_fetch_window_widens_by_buffers_and_narrows_to_bookable_time() -> None:
    rules = make_rules(
        [
            visit(minutes=20, min_lead_minutes=60, buffer_before_minutes=15),
            visit("mri", 45, max_horizon_days=2, buffer_after_minutes=10, min_lead_minutes=120),
        ],
        defaults={"max_horizon_days": 3},
    )
    now = at(f"{DAY} 07:00")
    request = FindRequest(start=at(f"{DAY} 00:00"), end=at(f"{DAY} 00:00") + timedelta(days=30))
    start, end = slot_fetch_window(request, rules, now)
    assert start == now + timedelta(minutes=60 - 15)
    assert end == now + timedelta(days=3, minutes=45 + 10)


def test_reconstruct_finds_the_offer_only_while_it_is_still_valid() -> None:
    world = one_practitioner(15, count=4)
    rules = make_rules([visit(minutes=20, join_contiguous=True, min_lead_minutes=60)])
    patient = PatientInfo(ref="Patient/p-1", display="Jo Doe")
    now = at(f"{DAY} 06:00")
    offer = find_day(world, rules, now=now, patient=patient).appointments[1]  # 08:15
    payload = decode(offer.id, SECRET)

    def again(slots, at_time):  # type: ignore[no-untyped-def]
        return reconstruct(
            offer.id, payload, rules, slots, world.schedules, world.actors, at_time, sign
        )

    rebuilt = again(world.slots, now)
    assert rebuilt is not None
    assert (rebuilt.start, rebuilt.end, rebuilt.slot_ids) == (
        offer.start,
        offer.end,
        offer.slot_ids,
    )
    assert rebuilt.participants[-1].ref == "Patient/p-1"
    taken = [
        structs.replace(s, status="busy") if s.id == offer.slot_ids[1] else s for s in world.slots
    ]
    assert again(taken, now) is None
    assert again(world.slots, at(f"{DAY} 07:30")) is None  # lead time has passed
