"""How long an answer holds as the clock moves: :func:`rules.bookable.same_answer_until`
checked against composing again at later instants of the span it names."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from rules.bookable import first_start, last_start, minute_ceil, minute_floor, same_answer_until
from rules.request import FindRequest
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


def _answer(world: World, start: datetime, end: datetime, now: datetime) -> tuple[object, ...]:
    result = world.find(RULES, start, end, now=now)
    return (
        tuple(a.id for a in result.appointments),
        result.total,
        tuple(n.text for n in result.notices),
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
