"""Coverage: which cached schedules no visit type covers, one test per reason."""

from __future__ import annotations

from datetime import timedelta

import pytest
from msgspec import structs

from app.core.domain import Actor, Schedule
from rules.coverage import (
    Uncovered,
    asset_kind,
    format_uncovered,
    summarise_slots,
    uncovered_schedules,
)
from rules.schema import RulesFile
from tests.unit.rules.factories import CARDIO, DEVICE_KIND, FAMILY, World, at, make_rules, visit, vt

NOW = at("2026-03-09 12:00")
DAY = "2026-03-10"  # a Tuesday


def family_world() -> tuple[World, str]:
    world = World()
    world.clinic(1, tz="America/New_York")
    sid = world.practitioner(1)
    world.add_slots(sid, at(f"{DAY} 08:00"), 15, count=4)
    return world, sid


def check(rules: RulesFile, world: World) -> list[Uncovered]:
    return uncovered_schedules(
        rules, world.schedules, world.actors, summarise_slots(world.slots), NOW
    )


def only(found: list[Uncovered], schedule_id: str) -> Uncovered:
    assert [u.schedule_id for u in found] == [schedule_id], found
    return found[0]


def test_a_schedule_a_visit_type_can_use_is_covered() -> None:
    world, _ = family_world()
    assert check(make_rules([visit(minutes=15)]), world) == []


def test_no_free_slots_cached() -> None:
    world, sid = family_world()
    world.slots = []
    found = only(check(make_rules([visit(minutes=15)]), world), sid)
    assert found.code == "no-free-slots"
    assert found.reason == "no free slots cached in the next 60 days"


def test_busy_slots_do_not_count() -> None:
    world, sid = family_world()
    world.slots = [structs.replace(s, status="busy") for s in world.slots]
    assert only(check(make_rules([visit(minutes=15)]), world), sid).code == "no-free-slots"


def test_schedule_naming_no_actor() -> None:
    world, _ = family_world()
    world.schedules["sch-empty"] = Schedule("sch-empty", ())
    world.add_slots("sch-empty", at(f"{DAY} 08:00"), 15)
    found = only(check(make_rules([visit(minutes=15)]), world), "sch-empty")
    assert (found.code, found.actor) == ("no-actor", None)


def test_actor_kind_not_matched_by_any_asset() -> None:
    world, _ = family_world()
    sid = world.device(1, kind="ekg")
    world.add_slots(sid, at(f"{DAY} 08:00"), 30, count=2, service_types=())
    found = only(check(make_rules([visit(minutes=15)]), world), sid)
    assert found.code == "actor-kind"
    assert found.actor == "Device/dev-1"
    assert found.reason.startswith("actor kind Device not matched by any asset")


def test_actor_kind_the_rules_format_has_no_kind_for() -> None:
    world, _ = family_world()
    world.schedules["sch-role"] = Schedule("sch-role", ("PractitionerRole/r-1",))
    world.add_slots("sch-role", at(f"{DAY} 08:00"), 15)
    found = only(check(make_rules([visit(minutes=15)]), world), "sch-role")
    assert found.code == "actor-kind"
    assert "PractitionerRole" in found.reason and "no kind for it" in found.reason


def test_actor_not_matched_by_codes_or_ids() -> None:
    world, _ = family_world()
    sid = world.practitioner(2, specialty=CARDIO)
    world.add_slots(sid, at(f"{DAY} 08:00"), 15, count=2)
    found = only(check(make_rules([visit(minutes=15)]), world), sid)
    assert found.code == "actor-not-matched"
    assert found.reason == (
        "Practitioner/pr-2 (codes: 394579002) not matched by the ids or codes of any "
        "Practitioner asset"
    )
    by_id = visit(minutes=15, assets=[{"kind": "practitioner", "ids": ["Practitioner/pr-1"]}])
    assert only(check(make_rules([by_id]), world), sid).code == "actor-not-matched"


def test_clinic_not_among_the_visit_types_locations() -> None:
    world, sid = family_world()
    rules = make_rules([visit(minutes=15, locations=["Location/clinic-9"])])
    found = only(check(rules, world), sid)
    assert found.code == "location"
    assert "Location/clinic-1" in found.reason


def test_service_type_not_offered_by_any_visit_type() -> None:
    world, _ = family_world()
    sid = world.practitioner(2)
    world.add_slots(sid, at(f"{DAY} 08:00"), 15, count=2, service_types=(vt("x-ray"),))
    found = only(check(make_rules([visit(minutes=15)]), world), sid)
    assert found.code == "service-type"
    assert found.reason == "service type x-ray not offered by any visit type"


def test_several_service_types_are_named() -> None:
    world, _ = family_world()
    sid = world.practitioner(2)
    world.add_slots(sid, at(f"{DAY} 08:00"), 15, service_types=(vt("mri"), vt("x-ray")))
    found = only(check(make_rules([visit(minutes=15)]), world), sid)
    assert found.reason == "service types mri, x-ray not offered by any visit type"


def test_slot_appointment_type_not_accepted() -> None:
    world, sid = family_world()
    world.slots = [structs.replace(s, appointment_types=("|walkin",)) for s in world.slots]
    rules = make_rules([visit(minutes=15, slot_appointment_types=["|routine"])])
    found = only(check(rules, world), sid)
    assert (found.code, found.reason) == (
        "appointment-type",
        "slot appointment type walkin not accepted",
    )


def test_slot_specialty_not_matched() -> None:
    world, sid = family_world()
    world.slots = [structs.replace(s, specialties=(CARDIO,)) for s in world.slots]
    found = only(check(make_rules([visit(minutes=15)]), world), sid)
    assert found.code == "specialty"
    assert "394579002" in found.reason


def test_slots_shorter_than_the_visit_and_no_joining() -> None:
    world, sid = family_world()
    found = only(check(make_rules([visit(minutes=30)]), world), sid)
    assert found.code == "duration"
    assert found.reason == (
        "slots of 15 min are shorter than 30 min and joining contiguous slots is off"
    )
    assert check(make_rules([visit(minutes=30, join_contiguous=True)]), world) == []


def test_no_slots_inside_the_bookable_window() -> None:
    world, sid = family_world()
    rules = make_rules([visit(minutes=15, min_lead_minutes=3 * 24 * 60)])
    assert only(check(rules, world), sid).code == "bookable-window"


def test_no_slots_inside_opening_hours() -> None:
    world, sid = family_world()
    rules = make_rules([visit(minutes=15)], hours={"tue": ["13:00-17:00"]})
    found = only(check(rules, world), sid)
    assert found.code == "hours"
    assert found.reason == "no slots inside opening hours (Location/clinic-1, America/New_York)"


def test_a_closure_is_outside_opening_hours() -> None:
    world, sid = family_world()
    rules = make_rules([visit(minutes=15)], closures=[{"date": DAY}])
    assert only(check(rules, world), sid).code == "hours"


def test_other_required_asset_missing() -> None:
    world, sid = family_world()
    ekg = visit(
        "ekg",
        15,
        display="EKG",
        assets=[
            {"kind": "practitioner", "codes": [FAMILY]},
            {"kind": "device", "codes": [f"{DEVICE_KIND}|ekg"]},
        ],
        slot_service_types=[],
    )
    found = only(check(make_rules([ekg]), world), sid)
    assert found.code == "missing-asset"
    assert found.reason == "EKG also needs a device at Location/clinic-1: none has free slots"
    dev = world.device(1, kind="ekg")
    world.add_slots(dev, at(f"{DAY} 08:00"), 30, count=2, service_types=())
    assert check(make_rules([ekg]), world) == []


def test_the_reason_is_from_the_visit_type_that_got_furthest() -> None:
    """One visit type is for another kind, one has the wrong service type, one is
    too long: the schedule fails last on length, which is what to fix."""
    world, sid = family_world()
    rules = make_rules(
        [
            visit("ekg", 15, assets=[{"kind": "device"}]),
            visit("x-ray", 15),
            visit("office-visit", 30),
        ]
    )
    assert only(check(rules, world), sid).code == "duration"


def test_summary_keeps_one_slot_per_shape() -> None:
    world, sid = family_world()
    world.add_slots(sid, at("2026-03-17 08:00"), 15, count=4)  # next week, same times
    summary = summarise_slots(world.slots)
    assert summary[sid].free == 8
    assert len(summary[sid].samples) == 4
    assert summarise_slots([]) == {}


def test_asset_kind_of_actors() -> None:
    assert asset_kind(Actor("Practitioner/p")) == "practitioner"
    assert asset_kind(Actor("Location/c")) == "location"
    assert asset_kind(Actor("Location/r", part_of="Location/c")) == "room"
    assert asset_kind(Actor("Device/d")) == "device"
    assert asset_kind(Actor("HealthcareService/h")) == "service"
    assert asset_kind(Actor("PractitionerRole/r")) is None


def test_format_lists_each_uncovered_schedule_with_its_reason() -> None:
    items = [
        Uncovered("sch-1", "Device/d", "actor-kind", "actor kind Device not matched"),
        Uncovered("sch-2", None, "no-free-slots", "no free slots cached in the next 30 days"),
    ]
    text = format_uncovered(items, 5, limit=1)
    assert text.splitlines() == [
        "2 of 5 cached schedule(s) no visit type covers:",
        "  sch-1 (Device/d): actor kind Device not matched",
        "  ... and 1 more",
    ]
    assert format_uncovered([], 3) == "every cached schedule (3) is covered by a visit type\n"


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(days=7)])
def test_coverage_agrees_with_the_composer(offset: timedelta) -> None:
    """Uncovered is exactly "the composer offers nothing from this schedule" here."""
    world, sid = family_world()
    other = world.practitioner(2, specialty=CARDIO)
    world.add_slots(other, at(f"{DAY} 08:00") + offset, 15, count=2)
    rules = make_rules([visit(minutes=15)])
    offers = world.find(rules, NOW, NOW + timedelta(days=30), now=NOW).appointments
    offered = {s for a in offers for s in a.schedule_ids}
    assert offered == {sid}
    assert [u.schedule_id for u in check(rules, world)] == [other]
