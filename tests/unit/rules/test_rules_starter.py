"""`rules init`: a starter rules file from the cached schedules, actors and slots."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml

from app.core.domain import Schedule
from rules.coverage import summarise_slots, uncovered_schedules
from rules.loader import parse_rules
from rules.schema import RulesFile
from rules.starter import UNTYPED_CODE, EmptyCache, starter_rules
from tests.unit.rules.factories import World, at, example_world, vt

NOW = at("2026-03-09 12:00")


def starter(world: World) -> tuple[str, RulesFile]:
    text = starter_rules(world.schedules, world.actors, world.slots, NOW)
    return text, parse_rules(text, source="starter.yaml")


def offered_schedules(world: World, rules: RulesFile) -> set[str]:
    offers = world.find(rules, NOW, NOW + timedelta(days=rules.defaults.max_horizon_days), now=NOW)
    return {sid for a in offers.appointments for sid in a.schedule_ids}


def test_starter_validates_and_offers_every_schedule_with_free_slots() -> None:
    world = example_world()
    _, rules = starter(world)
    with_free = {s.schedule_id for s in world.slots if s.status == "free"}
    assert offered_schedules(world, rules) == with_free
    summary = summarise_slots(world.slots)
    assert uncovered_schedules(rules, world.schedules, world.actors, summary, NOW) == []


def test_every_schedule_actor_and_service_type_appears() -> None:
    world = example_world()
    text, rules = starter(world)
    for sid in world.schedules:
        assert sid in text
    for ref in world.actors:
        assert ref in text
    codes = {vt.code for vt in rules.visit_types}
    for slot in world.slots:
        assert set(slot.service_types) <= codes
    for schedule in world.schedules.values():
        assert all(code in text for code in schedule.specialties)
    assert "Codes they carry (specialties):" in text


def test_one_entry_per_service_type_and_kind() -> None:
    world = example_world()
    _, rules = starter(world)
    entries = {(vt.code, vt.name): vt for vt in rules.visit_types}
    # office-visit is offered by practitioners only; rooms and devices carry no type
    office = entries[(vt("office-visit"), None)]
    assert [a.kind for a in office.assets] == ["practitioner"]
    assert office.display == "Office visit"
    assert (UNTYPED_CODE, None) not in entries  # two kinds need the catch-all: named
    assert entries[(UNTYPED_CODE, "room")].slot_service_types == []
    assert [a.kind for a in entries[(UNTYPED_CODE, "device")].assets] == ["device"]


def test_duration_is_the_most_common_slot_length() -> None:
    world = World()
    world.clinic(1, tz="America/New_York")
    sid = world.practitioner(1)
    world.add_slots(sid, at("2026-03-10 08:00"), [20, 20, 20, 15, 30])
    text, rules = starter(world)
    (office,) = rules.visit_types
    assert office.duration_minutes == 20
    assert "15 min x1, 20 min x3, 30 min x1" in text


def test_hours_cover_the_slots_in_each_clinics_zone() -> None:
    world = World()
    world.clinic(1, tz="America/New_York")
    world.clinic(2, tz="America/Los_Angeles")
    ny = world.practitioner(1, clinic=1)
    la = world.practitioner(2, clinic=2)
    world.add_slots(ny, at("2026-03-10 08:30"), 15, count=2)  # Tuesday 08:30-09:00 NY
    la_start = at("2026-03-11 16:10", zone=ZoneInfo("America/Los_Angeles"))
    world.add_slots(la, la_start, 15, count=2)  # Wednesday 16:10-16:40 LA
    text, rules = starter(world)
    hours = rules.organization.opening_hours
    assert (hours.tue, hours.wed, hours.mon, hours.sun) == (
        ["08:00-09:00"],
        ["16:00-17:00"],
        [],
        [],
    )
    assert rules.organization.timezone in {"America/New_York", "America/Los_Angeles"}
    assert offered_schedules(world, rules) == {ny, la}
    assert "closed: no free slot starts on this weekday" in text


def test_zone_from_locations_else_utc() -> None:
    world = example_world()
    text, rules = starter(world)
    assert rules.organization.timezone == "America/New_York"
    assert "From the time zone 1 of 1 locations state in the EHR." in text
    bare = World()
    sid = bare.practitioner(1)  # its clinic states no zone
    bare.add_slots(sid, at("2026-03-10 08:00"), 15)
    text, rules = starter(bare)
    assert rules.organization.timezone == "UTC"
    assert "no location in the cache states a time zone: UTC" in text


def test_horizon_reaches_the_last_free_slot() -> None:
    world, far = World(), at("2026-06-01 09:00")
    sid = world.practitioner(1)
    world.add_slots(sid, far, 15)
    _, rules = starter(world)
    assert rules.defaults.max_horizon_days >= (far - NOW).days
    assert offered_schedules(world, rules) == {sid}


def test_no_free_slots_still_gives_a_valid_file() -> None:
    world = World()
    world.practitioner(1, services=(vt("office-visit"),))
    text, rules = starter(world)
    assert rules.organization.opening_hours.mon == ["08:00-17:00"]
    assert "No free slots cached" in text
    assert rules.visit_types[0].duration_minutes == 15


def test_schedule_no_kind_can_use_is_listed() -> None:
    world = example_world()
    world.schedules["sch-role"] = Schedule("sch-role", ("PractitionerRole/r-1",))
    text, _ = starter(world)
    assert "sch-role (PractitionerRole/r-1): no asset kind in the rules format can use it" in text


def test_codes_yaml_would_misread_are_quoted() -> None:
    world = World()
    world.clinic(1, tz="America/New_York")
    sid = world.practitioner(1)
    world.add_slots(sid, at("2026-03-10 08:00"), 15, service_types=("|walk-in",))
    world.add_slots(sid, at("2026-03-10 09:00"), 15, service_types=("urn:oid:1.2|a#b",))
    text, rules = starter(world)
    assert {v.code for v in rules.visit_types} == {"|walk-in", "urn:oid:1.2|a#b"}
    assert '- code: "|walk-in"' in text


def test_empty_cache_is_refused() -> None:
    with pytest.raises(EmptyCache):
        starter_rules({}, {}, [], NOW)


def test_output_is_plain_yaml_with_comments() -> None:
    text, _ = starter(example_world())
    data = yaml.safe_load(text)
    assert set(data) == {"version", "organization", "defaults", "visit_types"}
    assert text.count("# Adjust") >= 2
