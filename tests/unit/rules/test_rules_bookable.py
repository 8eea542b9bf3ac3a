"""How long an answer holds as the clock moves: :func:`rules.bookable.same_answer_until`
checked against composing again at later instants of the span it names (and, where a
horizon narrows the window, just after it)."""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime, timedelta
from typing import Any

import pytest

from rules.bookable import (
    NextStart,
    first_start,
    last_start,
    minute_ceil,
    minute_floor,
    same_answer_until,
)
from rules.request import FindRequest, PatientInfo
from tests.unit.rules.factories import World, at, make_rules, visit, vt

DAY = "2026-03-10"
SECOND = timedelta(seconds=1)


SERVICES = (vt("office-visit"), vt("consult"))


def _world() -> World:
    """Two practitioners with 20-minute slots all day long, over three days."""
    world = World()
    for n in (1, 2):
        sid = world.practitioner(n)
        for day in ("2026-03-10", "2026-03-11", "2026-03-12"):
            world.add_slots(sid, at(f"{day} 06:00"), 20, count=45, service_types=SERVICES)
    return world


RULES = make_rules(
    [
        visit(minutes=20, min_lead_minutes=60, max_horizon_days=1),
        visit("consult", 40, join_contiguous=True, min_lead_minutes=150),
    ]
)


def _answer(
    world: World, start: datetime, end: datetime, now: datetime, **request: Any
) -> tuple[object, ...]:
    result = world.find(RULES, start, end, now=now, **request)
    return (
        tuple(a.id for a in result.appointments),
        result.total,
        tuple((n.code, n.message) for n in result.notices),
    )


def test_bounds_are_whole_minutes_around_now() -> None:
    [office, _] = [RULES.effective(v) for v in RULES.visit_types]
    now = at(f"{DAY} 07:19") + timedelta(seconds=12.5)
    assert minute_floor(now) == at(f"{DAY} 07:19")
    assert minute_ceil(now) == at(f"{DAY} 07:20")
    assert minute_ceil(at(f"{DAY} 07:20")) == at(f"{DAY} 07:20")
    assert first_start(office, now) == at(f"{DAY} 08:20")
    assert last_start(office, now) == at(f"{DAY} 07:19") + timedelta(days=1)


@pytest.mark.parametrize(
    ("start", "end", "now"),
    [
        # the window starts inside the lead time: the answer holds to the minute's end
        (f"{DAY} 07:00", f"{DAY} 18:00", f"{DAY} 07:19"),
        # the window reaches past the horizon of one visit type
        (f"{DAY} 12:00", "2026-03-12 09:00", f"{DAY} 07:19"),
        # neither: it holds until the longest lead time reaches the window's start
        ("2026-03-11 08:00", "2026-03-11 09:00", f"{DAY} 09:30"),
    ],
)
@pytest.mark.parametrize("seconds", [0.5, 31, 59.75])
def test_the_answer_is_the_same_at_every_instant_it_is_said_to_hold(
    start: str, end: str, now: str, seconds: float
) -> None:
    world = _world()
    window = (at(start), at(end))
    clock = at(now) + timedelta(seconds=seconds)
    until = same_answer_until(FindRequest(*window), RULES, clock)
    assert until >= clock
    answer = _answer(world, *window, clock)
    for k in range(1, 8):
        assert _answer(world, *window, clock + (until - clock) * k // 7) == answer, k


def test_an_answer_made_on_a_whole_minute_holds_for_that_instant_only() -> None:
    window = FindRequest(at(f"{DAY} 07:00"), at(f"{DAY} 18:00"))
    now = at(f"{DAY} 07:20")
    assert same_answer_until(window, RULES, now) == now
    world = _world()
    # and rightly: a microsecond later the lead time steps to 08:21, past the 08:20 slot
    later = now + timedelta(microseconds=1)
    assert _answer(world, window.start, window.end, now) != _answer(
        world, window.start, window.end, later
    )


def test_mid_minute_the_answer_holds_to_the_end_of_the_minute() -> None:
    window = FindRequest(at(f"{DAY} 07:00"), at(f"{DAY} 18:00"))
    now = at(f"{DAY} 07:19") + timedelta(seconds=20)
    until = same_answer_until(window, RULES, now)
    assert until == at(f"{DAY} 07:20") - timedelta(microseconds=1)
    world = _world()
    # and not through the next minute: then the lead time steps past the 08:20 slot
    assert _answer(world, window.start, window.end, until) != _answer(
        world, window.start, window.end, until + SECOND
    )


def test_a_window_no_bound_narrows_holds_until_the_longest_lead_time_reaches_it() -> None:
    window = FindRequest(at("2026-03-11 08:00"), at("2026-03-11 09:00"))
    now = at(f"{DAY} 09:30") + timedelta(seconds=5)
    # 150 minutes of lead time before 08:00 the next day
    assert same_answer_until(window, RULES, now) == at(f"{DAY} 05:30") + timedelta(days=1)
    world = _world()
    until = same_answer_until(window, RULES, now)
    assert _answer(world, window.start, window.end, now) == _answer(
        world, window.start, window.end, until
    )
    assert _answer(world, window.start, window.end, now) != _answer(
        world, window.start, window.end, until + SECOND
    )


def _next_start(world: World, end: datetime) -> NextStart:
    """What the slot index tells $find: the first start of a slot after an instant."""
    starts = sorted(s.start for s in world.slots)

    def after(moment: datetime) -> datetime | None:
        i = bisect_right(starts, moment)
        return starts[i] if i < len(starts) and starts[i] < end else None

    return after


OFFICE = (vt("office-visit"),)


@pytest.mark.parametrize(
    ("start", "end", "asked"),
    [
        # past the one-day horizon of office visits, asked alone
        (f"{DAY} 12:00", "2026-03-12 09:00", OFFICE),
        # the same window for every visit type (consult's horizon is the default's)
        (f"{DAY} 12:00", "2026-03-12 09:00", ()),
        # reaching the horizon from inside the lead time
        (f"{DAY} 07:00", "2026-03-12 18:00", OFFICE),
        # past the horizon altogether: nothing to book (a notice) until it reaches 06:00
        ("2026-03-12 06:00", "2026-03-12 12:00", OFFICE),
        ("2026-03-12 06:00", "2026-03-12 12:00", ()),
    ],
)
@pytest.mark.parametrize("now", [f"{DAY} 07:19", f"{DAY} 07:21", f"{DAY} 07:40"])
@pytest.mark.parametrize("seconds", [0, 0.5, 31, 59.75])
def test_an_answer_reaching_the_horizon_holds_until_the_horizon_reaches_the_next_slot(
    start: str, end: str, asked: tuple[str, ...], now: str, seconds: float
) -> None:
    world = _world()
    request = FindRequest(at(start), at(end), visit_types=asked)
    clock = at(now) + timedelta(seconds=seconds)
    until = same_answer_until(request, RULES, clock, _next_start(world, request.end))
    assert until >= same_answer_until(request, RULES, clock)  # never shorter than without
    answer = _answer(world, request.start, request.end, clock, visit_types=asked)
    for k in range(1, 8):
        moment = clock + (until - clock) * k // 7
        assert _answer(world, request.start, request.end, moment, visit_types=asked) == answer, k


def test_the_horizon_stepping_onto_a_slot_ends_the_answer() -> None:
    world = _world()
    request = FindRequest(at(f"{DAY} 12:00"), at("2026-03-12 09:00"), visit_types=OFFICE)
    now = at(f"{DAY} 07:21") + timedelta(seconds=10)
    # office visits' horizon reaches 07:21 the next day; its next slot starts at 07:40
    until = same_answer_until(request, RULES, now, _next_start(world, request.end))
    assert until == at(f"{DAY} 07:40") - timedelta(microseconds=1)
    # without the slots, only to the end of the minute
    assert same_answer_until(request, RULES, now) == at(f"{DAY} 07:22") - timedelta(microseconds=1)
    held = _answer(world, request.start, request.end, now, visit_types=OFFICE)
    assert _answer(world, request.start, request.end, until, visit_types=OFFICE) == held
    # at 07:40 the horizon admits the 07:40 slot of the next day: one more offer
    after = _answer(world, request.start, request.end, until + SECOND, visit_types=OFFICE)
    assert len(after[0]) == len(held[0]) + 2  # both practitioners' 07:40 slots
    # a patient's answer does not rest on it (eligibility reads the window's last date)
    with_patient = FindRequest(request.start, request.end, OFFICE, patient=PatientInfo("Patient/1"))
    assert same_answer_until(with_patient, RULES, now, _next_start(world, request.end)) == (
        at(f"{DAY} 07:22") - timedelta(microseconds=1)
    )


def test_a_window_past_the_horizon_is_told_so_until_the_horizon_reaches_its_start() -> None:
    world = _world()
    request = FindRequest(at("2026-03-11 09:00"), at("2026-03-11 12:00"), visit_types=OFFICE)
    now = at(f"{DAY} 07:21") + timedelta(seconds=10)
    until = same_answer_until(request, RULES, now, _next_start(world, request.end))
    assert until == at(f"{DAY} 09:00") - timedelta(microseconds=1)
    held = _answer(world, request.start, request.end, now, visit_types=OFFICE)
    assert held[0] == () and held[2]  # no offers, and a notice saying why
    assert _answer(world, request.start, request.end, until, visit_types=OFFICE) == held
    assert _answer(world, request.start, request.end, until + SECOND, visit_types=OFFICE) != held
