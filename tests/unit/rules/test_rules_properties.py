"""Property tests: on random organisations, every offer is sound and none is missed.

The oracle below re-derives the rules from first principles (interval unions,
wall-clock hours via zoneinfo) instead of reusing the composer's data structures.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.domain import Actor, ProposedAppointment, Schedule, Slot
from rules.appointment_id import decode
from rules.composer import compose
from rules.request import FindRequest
from rules.schema import WEEKDAYS, RulesFile
from tests.unit.rules.factories import FAMILY, ROOM_KIND, SECRET, sign, vt

UTC = ZoneInfo("UTC")
ZONES = {"Location/clinic-1": "America/New_York", "Location/clinic-2": "America/Chicago"}
DAYS = ["2026-03-07", "2026-03-08", "2026-03-10", "2026-10-31", "2026-11-01"]
HOURS = [["00:00-24:00"], ["07:00-12:00", "13:00-18:00"], ["08:30-11:00"], ["01:00-04:00"]]
OFFICE = vt("office-visit")


@dataclass
class Case:
    rules: RulesFile
    slots: list[Slot]
    schedules: dict[str, Schedule]
    actors: dict[str, Actor]
    request: FindRequest
    now: datetime
    room: str  # "none" | "required" | "optional"


@st.composite
def slot_runs(draw: Any, schedule_id: str, zone: str, day: str, service: bool) -> list[Slot]:
    """Non-overlapping slots from 06:00 local: random gaps, lengths, statuses, types."""
    t = datetime.fromisoformat(f"{day} 06:00").replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    out = []
    for n in range(draw(st.integers(0, 30))):
        t += timedelta(minutes=draw(st.sampled_from([0, 0, 0, 5, 10, 30, 120])))
        end = t + timedelta(minutes=draw(st.sampled_from([10, 15, 20, 30])))
        status = draw(st.sampled_from(["free", "free", "free", "busy"]))
        types = (
            (draw(st.sampled_from([OFFICE, OFFICE, OFFICE, vt("physical")])),) if service else ()
        )
        out.append(Slot(f"{schedule_id}-{n}", schedule_id, t, end, status, types))
        t = end
    return out


@st.composite
def cases(draw: Any) -> Case:
    day = draw(st.sampled_from(DAYS))
    actors = {ref: Actor(ref, display=ref, timezone=zone) for ref, zone in ZONES.items()}
    schedules: dict[str, Schedule] = {}
    slots: list[Slot] = []
    for n in range(1, draw(st.integers(1, 3)) + 1):
        clinic = draw(st.sampled_from(sorted(ZONES)))
        ref = f"Practitioner/pr-{n}"
        actors[ref] = Actor(ref, codes=(FAMILY,))
        sid = f"sch-pr-{n}"
        schedules[sid] = Schedule(sid, (ref, clinic), specialties=(FAMILY,))
        slots += draw(slot_runs(sid, ZONES[clinic], day, service=True))
    for n in range(1, draw(st.integers(0, 2)) + 1):
        clinic = draw(st.sampled_from(sorted(ZONES)))
        ref = f"Location/room-{n}"
        actors[ref] = Actor(ref, codes=(f"{ROOM_KIND}|exam",), part_of=clinic)
        sid = f"sch-room-{n}"
        schedules[sid] = Schedule(sid, (ref,))
        slots += draw(slot_runs(sid, ZONES[clinic], day, service=False))
    room = draw(st.sampled_from(["none", "required", "optional"]))
    assets: list[dict[str, Any]] = [{"kind": "practitioner", "codes": [FAMILY]}]
    if room != "none":
        assets.append(
            {
                "kind": "room",
                "codes": [f"{ROOM_KIND}|exam"],
                "optional": room == "optional",
                "slot_service_types": [],
            }
        )
    hours = draw(st.sampled_from(HOURS))
    rule = {
        "code": OFFICE,
        "duration_minutes": draw(st.sampled_from([10, 15, 20, 30, 45])),
        "join_contiguous": draw(st.booleans()),
        "buffer_before_minutes": draw(st.sampled_from([0, 0, 5, 10])),
        "buffer_after_minutes": draw(st.sampled_from([0, 0, 5, 10])),
        "min_lead_minutes": draw(st.sampled_from([0, 30, 240])),
        "max_horizon_days": draw(st.sampled_from([1, 2, 30])),
        "assets": assets,
    }
    rules = RulesFile.model_validate(
        {
            "version": 1,
            "organization": {
                "name": "Prop",
                "timezone": "America/New_York",
                "opening_hours": {d: hours for d in WEEKDAYS},
            },
            "visit_types": [rule],
        }
    )
    base = datetime.fromisoformat(f"{day} 00:00").replace(tzinfo=UTC)
    start = base + timedelta(minutes=draw(st.integers(0, 36 * 60)))
    end = start + timedelta(minutes=draw(st.integers(30, 3 * 24 * 60)))
    now = base + timedelta(minutes=draw(st.integers(-36 * 60, 30 * 60)))
    request = FindRequest(start=start, end=end)
    return Case(rules, slots, schedules, actors, request, now, room)


# ---------------------------------------------------------------- independent oracle


def union_covers(
    intervals: list[tuple[datetime, datetime]], start: datetime, end: datetime
) -> bool:
    reach = start
    for a, b in sorted(intervals):
        if a > reach:
            break
        reach = max(reach, b)
        if reach >= end:
            return True
    return reach >= end


def is_open(rules: RulesFile, site: str, start: datetime, end: datetime) -> bool:
    zone = ZoneInfo(ZONES[site])
    day = start.astimezone(zone).date()
    for text in getattr(rules.organization.opening_hours, WEEKDAYS[day.weekday()]):
        a, b = text.split("-")
        opens = datetime.combine(day, time.fromisoformat(a), zone)
        closes = (
            datetime.combine(day + timedelta(days=1), time(0), zone)
            if b == "24:00"
            else datetime.combine(day, time.fromisoformat(b), zone)
        )
        if opens <= start and end <= closes:
            return True
    return False


def free_of(case: Case, schedule_id: str, qualifying: bool) -> list[Slot]:
    return [
        s
        for s in case.slots
        if s.schedule_id == schedule_id
        and s.status == "free"
        and (not qualifying or not s.service_types or OFFICE in s.service_types)
    ]


def asset_ok(
    case: Case, schedule_id: str, start: datetime, end: datetime, practitioner: bool
) -> bool:
    vt_rule = case.rules.visit_types[0]
    qualifying = free_of(case, schedule_id, qualifying=practitioner)
    if vt_rule.join_contiguous:
        covered = union_covers([(s.start, s.end) for s in qualifying], start, end)
    else:
        covered = any(s.start <= start and end <= s.end for s in qualifying)
    if not covered:
        return False
    before = timedelta(minutes=vt_rule.buffer_before_minutes or 0)
    after = timedelta(minutes=vt_rule.buffer_after_minutes or 0)
    if before or after:
        every = [(s.start, s.end) for s in free_of(case, schedule_id, qualifying=False)]
        return union_covers(every, start - before, end + after)
    return True


def expected_offers(case: Case) -> set[tuple[str, datetime]]:
    rule = case.rules.visit_types[0]
    duration = timedelta(minutes=rule.duration_minutes)
    lead = case.now + timedelta(minutes=rule.min_lead_minutes or 0)
    horizon = case.now + timedelta(days=rule.max_horizon_days or 30)
    out = set()
    for sid, schedule in case.schedules.items():
        if not sid.startswith("sch-pr"):
            continue
        practitioner, clinic = schedule.actor_refs
        for slot in free_of(case, sid, qualifying=True):
            t, end = slot.start, slot.start + duration
            if not (case.request.start <= t and end <= case.request.end):
                continue
            if not (lead <= t <= horizon):
                continue
            if not is_open(case.rules, clinic, t, end):
                continue
            if not asset_ok(case, sid, t, end, practitioner=True):
                continue
            if case.room == "required" and not any(
                case.actors[s.actor_refs[0]].part_of == clinic
                and asset_ok(case, rid, t, end, practitioner=False)
                for rid, s in case.schedules.items()
                if rid.startswith("sch-room")
            ):
                continue
            out.add((practitioner, t))
    return out


def local_day(appt: ProposedAppointment) -> date:
    return appt.start.astimezone(ZoneInfo(ZONES[appt.participants[1].ref])).date()


def run(case: Case):  # type: ignore[no-untyped-def]
    return compose(
        case.request, case.rules, case.slots, case.schedules, case.actors, case.now, sign
    ).appointments


PROPERTY = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY
@given(cases())
def test_every_offer_is_sound(case: Case) -> None:
    offers = run(case)
    rule = case.rules.visit_types[0]
    by_id = {s.id: s for s in case.slots}
    assert [a.start for a in offers] == sorted(a.start for a in offers)
    assert len({a.id for a in offers}) == len(offers)
    for appt in offers:
        assert appt.end - appt.start == timedelta(minutes=rule.duration_minutes)
        assert case.request.start <= appt.start and appt.end <= case.request.end
        assert appt.start >= case.now + timedelta(minutes=rule.min_lead_minutes or 0)
        assert appt.start <= case.now + timedelta(days=rule.max_horizon_days or 30)
        practitioner, clinic = appt.participants[0].ref, appt.participants[1].ref
        assert practitioner.startswith("Practitioner/") and clinic in ZONES
        assert is_open(case.rules, clinic, appt.start, appt.end)
        used = [by_id[i] for i in appt.slot_ids]
        assert all(s.status == "free" for s in used)
        assert set(appt.schedule_ids) == {s.schedule_id for s in used}
        for sid in appt.schedule_ids:
            mine = [s for s in used if s.schedule_id == sid]
            # the referenced slots themselves cover the whole appointment, without gaps
            assert union_covers([(s.start, s.end) for s in mine], appt.start, appt.end)
            if not rule.join_contiguous:
                assert len(mine) == 1
            assert asset_ok(case, sid, appt.start, appt.end, practitioner=sid.startswith("sch-pr"))
            asset = case.schedules[sid].actor_refs[0]
            if asset.startswith("Location/room"):
                assert case.actors[asset].part_of == clinic
        rooms = [p for p in appt.participants if p.ref and p.ref.startswith("Location/room")]
        if case.room == "required":
            assert len(rooms) == 1 and rooms[0].required == "required"
        elif case.room == "optional":
            assert all(p.required == "optional" for p in rooms)
        else:
            assert rooms == []
        assert decode(appt.id, SECRET).slot_ids == appt.slot_ids


@PROPERTY
@given(cases())
def test_nothing_bookable_is_missed(case: Case) -> None:
    offered = {(a.participants[0].ref, a.start) for a in run(case)}
    assert offered == expected_offers(case)


@PROPERTY
@given(
    cases(),
    st.integers(1, 3),
    st.sampled_from(["earliest", "spread", "practitioner-preference"]),
    st.integers(1, 8),
)
def test_caps_and_count_only_remove_offers(case: Case, cap: int, ordering: str, count: int) -> None:
    run_full = run(case)
    full = {(a.participants[0].ref, a.start) for a in run_full}
    rule = case.rules.visit_types[0].model_copy(
        update={"max_offers_per_day_per_practitioner": cap, "ordering": ordering}
    )
    case.rules = case.rules.model_copy(update={"visit_types": [rule]})
    case.request = FindRequest(start=case.request.start, end=case.request.end, count=count)
    limited = run(case)
    assert len(limited) <= count
    assert {(a.participants[0].ref, a.start) for a in limited} <= full
    per_day = Counter((a.participants[0].ref, local_day(a)) for a in limited)
    assert all(n <= cap for n in per_day.values())
    if ordering == "earliest":  # the cap keeps each practitioner-day's earliest offers
        expected, seen = [], Counter()
        for appt in run_full:
            key = (appt.participants[0].ref, local_day(appt))
            if seen[key] < cap:
                seen[key] += 1
                expected.append(appt)
        assert limited == expected[:count]


@PROPERTY
@given(cases(), st.integers(1, 8))
def test_count_keeps_the_earliest_offers(case: Case, count: int) -> None:
    full = run(case)
    case.request = FindRequest(start=case.request.start, end=case.request.end, count=count)
    assert run(case) == full[:count]
