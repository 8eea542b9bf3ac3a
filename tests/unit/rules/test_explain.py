"""rules.explain: one test per reason a cached slot is not offered."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from msgspec import structs

from rules.explain import CODES, Reason, explain
from rules.request import FindRequest, PatientInfo
from rules.schema import WEEKDAYS, RulesFile
from tests.unit.rules.factories import ROOM_KIND, World, at, make_rules, visit, vt

DAY = "2026-03-10"  # a Tuesday
NOW = at("2026-03-09 08:00")


def _explain(
    world: World,
    rules: RulesFile,
    *,
    start: str = f"{DAY} 00:00",
    end: str = f"{DAY} 23:59",
    now: datetime = NOW,
    **kw: Any,
) -> tuple[list[Reason], set[str]]:
    """The reasons, and the slot ids the composer offers (to check they are disjoint)."""
    options = {k: kw.pop(k) for k in ("claimed", "stale") if k in kw}
    request = FindRequest(start=at(start), end=at(end), **kw)
    result = world.find(rules, request.start, request.end, now=now, **kw)
    offered = {sid for a in result.appointments for sid in a.slot_ids}
    reasons = explain(
        request, rules, world.slots, world.schedules, world.actors, now, offered=offered, **options
    )
    return reasons, offered


def _only(reasons: list[Reason], code: str) -> Reason:
    found = [r for r in reasons if r.code == code]
    assert len(found) == 1, reasons
    return found[0]


def _world(count: int = 4, **kw: Any) -> tuple[World, str]:
    world = World()
    sid = world.practitioner(1)
    world.add_slots(sid, at(f"{DAY} 09:00"), 20, count=count, **kw)
    return world, sid


MORNING = {"tue": ["09:00-10:20"]}


def test_every_offered_slot_is_left_out_and_a_free_world_has_no_reason() -> None:
    world, _ = _world()
    reasons, offered = _explain(world, make_rules([visit()], hours=MORNING))
    assert len(offered) == 4
    assert reasons == []


def test_busy_at_the_ehr_is_a_gap_in_the_cache_or_a_slot_not_free() -> None:
    world, sid = _world(statuses=["free", "free", "busy", "free"])
    del world.slots[1]  # the cache holds free slots only: a busy one is not there
    reasons, _ = _explain(world, make_rules([visit()], hours=MORNING))
    gap, stated = reasons
    assert (gap.code, gap.start, gap.end, gap.slot_ids) == (
        "busy",
        at(f"{DAY} 09:20"),
        at(f"{DAY} 09:40"),
        (),
    )
    assert (stated.code, stated.slot_ids) == ("busy", (world.slots[1].id,))
    assert gap.rule is None and gap.schedule_id == stated.schedule_id == sid


def test_held_or_booked_through_us() -> None:
    world, sid = _world()
    taken = world.slots[1].id
    request = FindRequest(start=at(f"{DAY} 00:00"), end=at(f"{DAY} 23:59"))
    reasons = explain(
        request, make_rules([visit()]), world.slots, world.schedules, world.actors, NOW,
        claimed={taken}, offered={s.id for s in world.slots if s.id != taken},
    )  # fmt: skip
    reason = _only(reasons, "claimed")
    assert reason.slot_ids == (taken,) and reason.schedule_id == sid


def test_lead_time_names_the_visit_types_own_value_or_the_default() -> None:
    world, _ = _world()
    now = at(f"{DAY} 08:30")
    own = make_rules([visit(min_lead_minutes=60)])
    reason = _only(_explain(world, own, now=now)[0], "lead-time")
    assert reason.rule == "visit_types[0].min_lead_minutes"
    assert len(reason.slot_ids) == 2  # 09:00 and 09:20 are within an hour of 08:30
    inherited = make_rules([visit()], defaults={"min_lead_minutes": 60})
    assert _only(_explain(world, inherited, now=now)[0], "lead-time").rule == (
        "defaults.min_lead_minutes"
    )


def test_horizon() -> None:
    world, _ = _world()
    rules = make_rules([visit(max_horizon_days=1)])
    reason = _only(_explain(world, rules, now=at("2026-03-08 08:00"))[0], "horizon")
    assert reason.rule == "visit_types[0].max_horizon_days" and len(reason.slot_ids) == 4


def test_outside_hours_names_the_weekday() -> None:
    world, _ = _world()
    rules = make_rules([visit()], hours={"tue": ["09:00-09:40"]})
    reason = _only(_explain(world, rules)[0], "outside-hours")
    assert reason.rule == "organization.opening_hours.tue"
    assert reason.start == at(f"{DAY} 09:40") and len(reason.slot_ids) == 2


def test_site_hours_are_named_where_a_site_overrides_them() -> None:
    world, _ = _world()
    sites = [{"ref": "Location/clinic-1", "opening_hours": {"tue": ["10:00-12:00"]}}]
    rules = make_rules([visit()], sites=sites)
    reason = _only(_explain(world, rules)[0], "outside-hours")
    assert reason.rule == "organization.sites[0].opening_hours.tue" and len(reason.slot_ids) == 3


def test_holiday() -> None:
    world, _ = _world()
    rules = make_rules([visit()], closures=[{"date": DAY, "name": "Founders' Day"}])
    reason = _only(_explain(world, rules)[0], "holiday")
    assert reason.rule == "organization.closures[0]" and "Founders' Day" in reason.detail
    assert len(reason.slot_ids) == 4


def test_buffer() -> None:
    world, _ = _world(count=3)
    rules = make_rules([visit(buffer_after_minutes=20)])
    reason = _only(_explain(world, rules)[0], "buffer")
    assert reason.rule == "visit_types[0].buffer_after_minutes"
    assert reason.slot_ids == (world.slots[2].id,)


def test_service_type_not_allowed() -> None:
    world, _ = _world(service_types=(vt("vaccine"),))
    reason = _only(_explain(world, make_rules([visit()]))[0], "service-type")
    assert reason.rule == "visit_types[0].slot_service_types" and len(reason.slot_ids) == 4


def test_no_contiguous_run_long_enough() -> None:
    world, _ = _world()
    rules = make_rules([visit(minutes=40)])  # 20-minute slots, join off
    reason = _only(_explain(world, rules)[0], "no-contiguous-run")
    assert reason.rule == "defaults.join_contiguous" and len(reason.slot_ids) == 4
    joined = make_rules([visit(minutes=60, join_contiguous=True)])
    reasons, offered = _explain(_world(count=2)[0], joined)
    assert not offered  # two 20-minute slots do not make an hour
    reason = _only(reasons, "no-contiguous-run")
    assert reason.rule == "visit_types[0].duration_minutes" and len(reason.slot_ids) == 2


def test_required_asset_missing() -> None:
    world, _ = _world(count=2)
    room = world.room(1)
    world.add_slots(room, at(f"{DAY} 09:00"), 20, service_types=())
    assets = [
        {"kind": "practitioner", "codes": ["http://snomed.info/sct|419772000"]},
        {"kind": "room", "codes": [f"{ROOM_KIND}|exam"]},
    ]
    reasons, offered = _explain(world, make_rules([visit(assets=assets)]))
    assert len(offered) == 2  # 09:00 with the room
    reason = _only(reasons, "asset-missing")
    assert reason.rule == "visit_types[0].assets[1]" and reason.slot_ids == (world.slots[1].id,)


def test_eligibility_age_and_gender() -> None:
    world, _ = _world()
    child = PatientInfo(birth_date=date(2020, 1, 1))
    rules = make_rules([visit(eligibility={"min_age_years": 18})])
    reason = _only(_explain(world, rules, patient=child)[0], "eligibility")
    assert reason.rule == "visit_types[0].eligibility.min_age_years" and len(reason.slot_ids) == 4
    male = PatientInfo(gender="male")
    rules = make_rules([visit(eligibility={"genders": ["female"]})])
    reason = _only(_explain(world, rules, patient=male)[0], "eligibility")
    assert reason.rule == "visit_types[0].eligibility.genders"


def test_not_covered_by_any_rule() -> None:
    world, _ = _world()
    other = world.practitioner(2, specialty="http://snomed.info/sct|394582007")
    world.add_slots(other, at(f"{DAY} 09:00"), 20, count=2)
    reason = _only(_explain(world, make_rules([visit()]))[0], "not-covered")
    assert reason.schedule_id == other and len(reason.slot_ids) == 2


def test_the_count_cap() -> None:
    world, _ = _world()
    reasons, offered = _explain(world, make_rules([visit()]), count=1)
    assert len(offered) == 1
    reason = _only(reasons, "count-cap")
    assert reason.rule == "_count" and len(reason.slot_ids) == 3


def test_the_per_day_cap() -> None:
    world, _ = _world()
    rules = make_rules([visit(max_offers_per_day_per_practitioner=2)])
    reason = _only(_explain(world, rules)[0], "day-cap")
    assert reason.rule == "visit_types[0].max_offers_per_day_per_practitioner"
    assert len(reason.slot_ids) == 2


def test_stale_schedule() -> None:
    world, sid = _world()
    reasons, _ = _explain(
        world, make_rules([visit()]), count=1, stale={sid: "last confirmed 9000 s ago"}
    )
    reason = _only(reasons, "stale")
    assert reason.schedule_id == sid and reason.detail == "last confirmed 9000 s ago"
    assert len(reason.slot_ids) == 3  # the offered one is not explained


def test_the_visit_type_that_got_furthest_gives_the_reason() -> None:
    world, _ = _world(count=1)
    rules = make_rules(
        [visit("office-visit", min_lead_minutes=10_000), visit("follow-up", minutes=40)],
    )
    world.slots[0] = structs.replace(
        world.slots[0], service_types=(vt("office-visit"), vt("follow-up"))
    )
    reason = _only(_explain(world, rules)[0], "no-contiguous-run")
    assert reason.visit_type == vt("follow-up")


def test_practitioner_filter_limits_what_is_explained() -> None:
    world, _ = _world(statuses=["busy"] * 4)
    other = world.practitioner(2)
    world.add_slots(other, at(f"{DAY} 09:00"), 20, count=2, status="busy")
    reasons, _ = _explain(world, make_rules([visit()]), practitioners=("Practitioner/pr-2",))
    assert {r.schedule_id for r in reasons} == {other}


def test_every_code_has_a_display() -> None:
    assert all(CODES.values()) and len(CODES) == len(set(CODES))


def test_a_gap_in_the_cache_splits_a_range_of_one_reason() -> None:
    world, _ = _world()
    del world.slots[1]
    rules = make_rules([visit()], closures=[{"date": DAY}])
    reasons, _ = _explain(world, rules)
    assert [(r.code, len(r.slot_ids)) for r in reasons] == [("holiday", 1), ("holiday", 2)]


def test_a_schedule_no_rule_uses_is_left_out_by_the_request_filters() -> None:
    world, _ = _world()
    other = world.practitioner(2, clinic=2, specialty="http://snomed.info/sct|394582007")
    world.add_slots(other, at(f"{DAY} 09:00"), 20, count=2)
    rules = make_rules([visit()])
    assert _only(_explain(world, rules)[0], "not-covered").schedule_id == other
    for filters in (
        {"locations": ("Location/clinic-1",)},
        {"practitioners": ("Practitioner/pr-1",)},
        {"specialties": ("http://snomed.info/sct|419772000",)},
    ):
        assert not [r for r in _explain(world, rules, **filters)[0] if r.code == "not-covered"]


def test_a_visit_that_would_end_after_the_window() -> None:
    world, _ = _world()
    reasons, offered = _explain(world, make_rules([visit()]), end=f"{DAY} 09:50")
    assert len(offered) == 2  # 09:00 and 09:20; 09:40 would end at 10:00
    reason = _only(reasons, "outside-window")
    assert reason.slot_ids == (world.slots[2].id,)
    assert reason.rule == "visit_types[0].duration_minutes"


def test_not_selected_when_no_single_check_removes_the_slot() -> None:
    """``not-selected``: the slot passes every check the explanation asks of it, yet no
    offer takes it. The one way found: eligibility across a day line. The composer
    rules a patient out for the whole window by the organisation's dates (too young on
    its last day), while a slot's own day is the clinic's, a day later here
    (Kiritimati is 24 hours ahead of Honolulu), when the patient is old enough."""
    world = World()
    world.clinic(1, tz="Pacific/Kiritimati")
    sid = world.practitioner(1)
    kiritimati = ZoneInfo("Pacific/Kiritimati")
    world.add_slots(sid, at("2026-03-11 09:00", kiritimati), 20)  # 10 March in Honolulu
    rules = make_rules(
        [visit(eligibility={"min_age_years": 18})],
        hours={day: ["00:00-24:00"] for day in WEEKDAYS},
        timezone="Pacific/Honolulu",
    )
    turns_18 = PatientInfo(birth_date=date(2008, 3, 11))  # on 11 March
    window = {"start": "2026-03-11 00:00", "end": "2026-03-11 23:59"}
    request = FindRequest(
        start=at(window["start"], kiritimati),
        end=at(window["end"], kiritimati),
        patient=turns_18,
    )
    found = world.find(rules, request.start, request.end, now=NOW, patient=turns_18)
    assert found.appointments == []
    reasons = explain(request, rules, world.slots, world.schedules, world.actors, NOW)
    reason = _only(reasons, "not-selected")
    assert reason.rule == "visit_types[0].ordering" and reason.slot_ids == (world.slots[0].id,)
