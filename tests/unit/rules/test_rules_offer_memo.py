"""The offer memo changes nothing but speed.

A memo shared by many requests -- other windows, other ``now``, other patients
and filters, other claimed slots, other visit types -- must give exactly what
``compose`` gives without it on the same request slots, which the frozen
``reference_composer`` also gives. The slots are handed over as the app does: full
per-schedule lists as the basis, each request's slots cut from them to the fetch
window with its claimed slots left out and named as taken.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.domain import Actor, Schedule, Slot
from app.core.slot_columns import SlotColumns
from rules.assets import disjoint
from rules.composer import compose, slot_fetch_window
from rules.loader import load_rules
from rules.offer_memo import Basis, OfferMemo
from rules.request import FindRequest, PatientInfo
from rules.schema import RulesFile
from tests.unit.rules.factories import World, at, example_world, make_rules, sign, visit, vt
from tests.unit.rules.reference_composer import reference_compose
from tests.unit.rules.test_rules_fast_path import (
    DAYS,
    EXAMPLE_RULES,
    find_request,
    organisation,
    rules_file,
)

UTC = ZoneInfo("UTC")
LOOKBACK = timedelta(days=1)  # longer than any slot of these organisations


def full_lists(slots: list[Slot], rng: random.Random | None = None) -> dict[str, list[Slot]]:
    """Every free slot per schedule, by start: what the app's slot index holds.

    With ``rng``, most schedules are tidied of the EHR errors (overlaps, empty
    slots) that the generator puts in nearly every one: the memo serves only tidy
    lists, and the untidy rest must still be composed as without it.
    """
    out: dict[str, list[Slot]] = {}
    for slot in sorted(slots, key=lambda s: (s.start, s.id)):
        if slot.status == "free":
            out.setdefault(slot.schedule_id, []).append(slot)
    if rng is not None:
        out = {sid: disjoint(full) if rng.random() < 0.8 else full for sid, full in out.items()}
    return out


def cut(
    base: Mapping[str, list[Slot]], start: datetime, end: datetime, claimed: set[str]
) -> tuple[dict[str, list[Slot]], list[Slot]]:
    """The request's slots and the taken ones, as ``SlotIndex.read`` cuts them."""
    slots: dict[str, list[Slot]] = {}
    taken: list[Slot] = []
    for sid, full in base.items():
        inside = [s for s in full if start - LOOKBACK <= s.start < end and s.end > start]
        taken += [s for s in inside if s.id in claimed]
        kept = [s for s in inside if s.id not in claimed]
        if kept:
            slots[sid] = kept
    return slots, taken


def check(
    memo: OfferMemo,
    key: object,
    request: FindRequest,
    rules: RulesFile,
    base: dict[str, list[Slot]],
    schedules: dict[str, Schedule],
    actors: dict[str, Actor],
    now: datetime,
    claimed: set[str],
) -> int:
    start, end = slot_fetch_window(request, rules, now)
    slots, taken = cut(base, start, end, claimed)
    plain = compose(request, rules, slots, schedules, actors, now, sign)
    basis = Basis(key, base, taken)
    memoised = compose(request, rules, slots, schedules, actors, now, sign, memo=memo, basis=basis)
    assert memoised == plain
    return len(plain.appointments)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.randoms(use_true_random=True))
def test_a_shared_memo_answers_as_compose_does(rng: random.Random) -> None:
    day = rng.choice(DAYS)
    actors, schedules, slots = organisation(rng, day)
    rules = rules_file(rng)
    base = full_lists(slots, rng)
    every_id = [s.id for full in base.values() for s in full]
    memo = OfferMemo()
    base_time = datetime.fromisoformat(f"{day} 00:00").replace(tzinfo=UTC)
    for _ in range(6):
        request = find_request(rng, day)
        if rng.random() < 0.3:  # turns 18 inside the window: age is checked per day
            birthday = (request.start + timedelta(days=1)).date()
            adult = birthday.replace(year=birthday.year - 18)
            request = replace(request, patient=PatientInfo(birth_date=adult))
        now = base_time + timedelta(minutes=rng.randint(-36 * 60, 6 * 60))
        claimed = set(rng.sample(every_id, min(len(every_id), rng.choice([0, 0, 1, 5]))))
        start, end = slot_fetch_window(request, rules, now)
        request_slots, taken = cut(base, start, end, claimed)
        flat = [s for kept in request_slots.values() for s in kept]
        expected = reference_compose(request, rules, flat, schedules, actors, now, sign)
        basis = Basis("generation-1", base, taken)
        args = (request, rules, request_slots, schedules, actors, now, sign)
        assert compose(*args, memo=memo, basis=basis) == expected
        assert compose(*args) == expected


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.randoms(use_true_random=True))
def test_plans_shared_by_requests_with_the_same_filters(rng: random.Random) -> None:
    """Tidy schedules (so every unit is the memo's and plans are kept), one set of
    filters, many windows, clocks, patients and counts, some with claimed slots:
    merged days taken whole or cut, in clinics of several time zones."""
    day = rng.choice(DAYS)
    actors, schedules, slots = organisation(rng, day)
    rules = rules_file(rng)
    base = {sid: disjoint(full) for sid, full in full_lists(slots).items()}
    every_id = [s.id for full in base.values() for s in full]
    memo = OfferMemo()
    filters = find_request(rng, day)
    base_time = datetime.fromisoformat(f"{day} 00:00").replace(tzinfo=UTC)
    start = base_time
    length = timedelta(days=1)
    for n in range(8):
        if n == 0 or rng.random() < 0.6:  # else the same window again: cuts are reused
            start = base_time + timedelta(minutes=rng.randint(-12 * 60, 36 * 60))
            length = timedelta(minutes=rng.choice([60, 6 * 60, 24 * 60, 3 * 24 * 60]))
        request = replace(
            filters,
            start=start,
            end=start + length,
            patient=rng.choice([None, filters.patient, PatientInfo(birth_date=date(2008, 3, 10))]),
            count=rng.choice([None, 1, 3, 10, 0]),
        )
        now = base_time + timedelta(minutes=rng.randint(-36 * 60, 12 * 60))
        claimed = set(rng.sample(every_id, min(len(every_id), 2))) if n % 4 == 3 else set()
        start_cut, end_cut = slot_fetch_window(request, rules, now)
        request_slots, taken = cut(base, start_cut, end_cut, claimed)
        flat = [s for kept in request_slots.values() for s in kept]
        expected = reference_compose(request, rules, flat, schedules, actors, now, sign)
        # the app hands over only the windows of schedules with taken slots
        dirty = {s.schedule_id for s in taken}
        window = {sid: kept for sid, kept in request_slots.items() if sid in dirty}
        basis = Basis(None, base, taken)
        got = compose(request, rules, window, schedules, actors, now, sign, memo=memo, basis=basis)
        assert got == expected


def test_a_plan_is_made_once_for_the_same_filters() -> None:
    """The second request with the same filters, on unchanged lists, reuses the plan
    (and its merged days) rather than going through the units again."""
    rules = load_rules(EXAMPLE_RULES)
    world = example_world()
    base = full_lists(world.slots)
    memo = OfferMemo()
    now = at("2026-03-01 00:00")
    answers = []
    for start in ("2026-03-09 00:00", "2026-03-10 00:00", "2026-03-09 00:00"):
        request = FindRequest(
            start=at(start),
            end=at(start) + timedelta(days=2),
            visit_types=(vt("office-visit"),),
            count=10,
        )
        answers.append(
            check(memo, 1, request, rules, base, world.schedules, world.actors, now, set())
        )
        state = memo.state(1, rules, world.schedules, world.actors)
        plans = list(state.plans.values())
        if len(answers) == 1:
            first_plans = plans
    assert answers[0] and answers[0] == answers[2]
    assert plans and all(a is b for a, b in zip(plans, first_plans, strict=True))
    assert any(plan.days for plan in plans)


def test_a_request_whose_claims_empty_a_schedule_leaves_no_trace() -> None:
    """A request in which claims take every slot of one schedule's window composes
    without that schedule; the next request without claims must have it again."""
    world = World()
    for n in (1, 2):
        world.add_slots(world.practitioner(n), at("2026-03-09 09:00"), 20, count=6)
    rules = make_rules([visit()])
    base = full_lists(world.slots)
    memo = OfferMemo()
    now = at("2026-03-01 00:00")
    claimed_slot = base["sch-pr-1-c1"][0]
    one_slot = FindRequest(
        start=claimed_slot.start, end=claimed_slot.end, visit_types=(vt("office-visit"),)
    )
    whole_morning = replace(one_slot, end=at("2026-03-09 12:00"))
    args = (rules, base, world.schedules, world.actors, now)
    check(memo, None, one_slot, *args, {claimed_slot.id})
    flat = [s for full in base.values() for s in full]
    expected = reference_compose(
        whole_morning, rules, flat, world.schedules, world.actors, now, sign
    )
    got = compose(
        whole_morning,
        rules,
        {},
        world.schedules,
        world.actors,
        now,
        sign,
        memo=memo,
        basis=Basis(None, base, []),
    )
    assert got == expected
    assert {a.schedule_ids for a in got.appointments} == {("sch-pr-1-c1",), ("sch-pr-2-c1",)}


@pytest.mark.parametrize("ordering", ["spread", "earliest", "practitioner-preference"])
def test_local_days_that_overlap_across_zones_are_ordered(ordering: str) -> None:
    """Clinics in Tokyo and Honolulu open all day: Tokyo's next local day begins
    while Honolulu's is still running, so merged days overlap in time and the
    offers must be put in order again."""
    world = World()
    world.clinic(1, tz="Asia/Tokyo")
    world.clinic(2, tz="Pacific/Honolulu")
    for n, clinic in ((1, 1), (2, 2), (3, 1)):
        sid = world.practitioner(n, clinic=clinic)
        world.add_slots(sid, at("2026-03-09 00:00", UTC), 20, count=3 * 24 * 3)
    rules = make_rules(
        [visit(ordering=ordering, max_offers_per_day_per_practitioner=30)], timezone="UTC"
    )
    base = full_lists(world.slots)
    memo = OfferMemo()
    now = at("2026-03-01 00:00")
    offered = 0
    for hours in (0, 0, 5, 13, 0):
        start = at("2026-03-09 12:00", UTC) + timedelta(hours=hours)
        for count in (None, 7, 40):
            request = FindRequest(
                start=start,
                end=start + timedelta(days=1, hours=hours),
                visit_types=(vt("office-visit"),),
                practitioners=("Practitioner/pr-3", "Practitioner/pr-2")
                if ordering == "practitioner-preference"
                else (),
                count=count,
            )
            flat = [s for full in base.values() for s in full]
            expected = reference_compose(
                request, rules, flat, world.schedules, world.actors, now, sign
            )
            basis = Basis(1, base, [])
            got = compose(
                request, rules, {}, world.schedules, world.actors, now, sign, memo=memo, basis=basis
            )
            assert got == expected
            offered += len(got.appointments)
    assert offered


@pytest.mark.parametrize("visit_types", [(), (vt("office-visit"),), (vt("well-child"),)])
def test_example_rules_with_a_warm_memo(visit_types: tuple[str, ...]) -> None:
    """The shipped rules: many windows, clocks, patients and claims on one memo."""
    rules = load_rules(EXAMPLE_RULES)
    world = example_world()
    base = full_lists(world.slots)
    memo = OfferMemo()
    rng = random.Random(7)
    ids = [s.id for full in base.values() for s in full]
    offered = 0
    for n in range(40):
        start = at("2026-03-09 00:00") + timedelta(minutes=rng.randint(0, 2 * 24 * 60))
        request = FindRequest(
            start=start,
            end=start + timedelta(hours=rng.choice([3, 12, 48])),
            visit_types=visit_types,
            count=rng.choice([None, 1, 5, 20]),
            patient=rng.choice([None, PatientInfo(birth_date=date(2008, 3, 10))]),  # 18 on the 10th
            specialties=rng.choice([(), ("http://snomed.info/sct|419772000",)]),
        )
        now = start - timedelta(minutes=rng.choice([0, 30, 600, 3000]))
        claimed = set(rng.sample(ids, 3)) if n % 3 == 0 else set()
        offered += check(memo, 1, request, rules, base, world.schedules, world.actors, now, claimed)
    assert offered  # the memo was exercised on real offers


def test_a_new_key_forgets_and_changed_lists_are_never_served() -> None:
    rules = load_rules(EXAMPLE_RULES)
    world = example_world()
    base = full_lists(world.slots)
    memo = OfferMemo()
    request = FindRequest(
        start=at("2026-03-10 00:00"), end=at("2026-03-11 00:00"), visit_types=(vt("office-visit"),)
    )
    now = at("2026-03-01 00:00")
    args = (rules, base, world.schedules, world.actors, now, set[str]())
    assert check(memo, 1, request, *args)
    first = memo.state(1, rules, world.schedules, world.actors)
    assert memo.state(1, rules, world.schedules, world.actors) is first
    # the same key with an equal catalog loaded anew keeps what was computed
    assert memo.state(1, rules, dict(world.schedules), dict(world.actors)) is first

    # A sync drops the 09:00 slots of every schedule: a new generation, new lists.
    changed = {
        sid: [s for s in full if s.start.astimezone(ZoneInfo("America/New_York")).hour != 9]
        for sid, full in base.items()
    }
    assert check(memo, 2, request, rules, changed, *args[2:])
    assert memo.state(2, rules, world.schedules, world.actors) is not first
    # Even under a stale key, a list that changed is not served from the memo.
    memo = OfferMemo()
    assert check(memo, 1, request, *args)
    assert check(memo, 1, request, rules, changed, *args[2:])
    # other rules are another state too
    other = rules.model_copy(update={"visit_types": rules.visit_types[:1]})
    assert memo.state(1, other, world.schedules, world.actors) is not memo.state(
        1, rules, world.schedules, world.actors
    )


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.randoms(use_true_random=True))
def test_slots_held_as_columns_answer_as_slot_lists_do(rng: random.Random) -> None:
    """The app's slot index holds each schedule's slots as columns (no object per
    slot) and hands a request's unclaimed window of them as columns too: with and
    without the memo, the answer is the reference composer's."""
    day = rng.choice(DAYS)
    actors, schedules, slots = organisation(rng, day)
    rules = rules_file(rng)
    base = full_lists(slots, rng)
    columns = {sid: SlotColumns.of(sid, full) for sid, full in base.items()}
    every_id = [s.id for full in base.values() for s in full]
    memo = OfferMemo()
    base_time = datetime.fromisoformat(f"{day} 00:00").replace(tzinfo=UTC)
    for _ in range(6):
        request = find_request(rng, day)
        now = base_time + timedelta(minutes=rng.randint(-36 * 60, 6 * 60))
        claimed = set(rng.sample(every_id, min(len(every_id), rng.choice([0, 0, 1, 5]))))
        start, end = slot_fetch_window(request, rules, now)
        request_slots, taken = cut(base, start, end, claimed)
        flat = [s for kept in request_slots.values() for s in kept]
        expected = reference_compose(request, rules, flat, schedules, actors, now, sign)
        as_columns = {sid: SlotColumns.of(sid, kept) for sid, kept in request_slots.items()}
        basis = Basis("generation-1", columns, taken)
        args = (request, rules, as_columns, schedules, actors, now, sign)
        assert compose(*args, memo=memo, basis=basis) == expected
        assert compose(*args) == expected


def office_visit_case() -> tuple[
    RulesFile, World, dict[str, list[Slot]], FindRequest, tuple[Any, ...]
]:
    """The example organisation's office visits over three days: the rules, the world,
    its full slot lists, the request and :func:`check`'s remaining arguments."""
    rules = load_rules(EXAMPLE_RULES)
    world = example_world()
    request = FindRequest(
        start=at("2026-03-09 00:00"), end=at("2026-03-12 00:00"), visit_types=(vt("office-visit"),)
    )
    args = (world.schedules, world.actors, at("2026-03-01 00:00"), set[str]())
    return rules, world, full_lists(world.slots), request, args


def held_offers(memo: OfferMemo, rules: RulesFile, world: World) -> int:
    """What ``memo`` counts towards its bound for key 1: offers, and one per day."""
    entries = memo.state(1, rules, world.schedules, world.actors)._entries
    return sum(len(day.offers) + 1 for e in entries.values() for day in e.days.values())


def test_schedules_changing_one_at_a_time_never_flush_the_others_days() -> None:
    """The memo's bound counts what it holds now: a schedule whose list a sync
    replaces lets go of its old days' count, so notifications about one schedule,
    however many, leave every other schedule's remembered days in place (they used
    to add up until the bound flushed everything, and broad requests composed their
    30 days afresh)."""
    rules, world, base, request, args = office_visit_case()
    probe = OfferMemo()
    assert check(probe, 1, request, rules, base, *args)
    held = held_offers(probe, rules, world)

    memo = OfferMemo(max_offers=held + held // 2)
    assert check(memo, 1, request, rules, base, *args)
    state = memo.state(1, rules, world.schedules, world.actors)
    # the primary schedule with the most offers remembered
    busiest = max(
        state._entries.values(), key=lambda e: sum(len(d.offers) for d in e.days.values())
    )
    changing = busiest.primary.schedule.id
    before = {
        key: dict(entry.days)
        for key, entry in state._entries.items()
        if all(s is not base[changing] for s in entry.sources)
    }
    assert before and any(before.values())
    for _ in range(20):  # a notification about one schedule, again and again
        base = {**base, changing: list(base[changing])}
        assert check(memo, 1, request, rules, base, *args)
    for key, days in before.items():
        kept = state._entries[key].days
        assert all(kept[day] is value for day, value in days.items())


def test_a_window_ending_at_the_horizon_cuts_its_last_day_once() -> None:
    """A window reaching past the horizon ends at ``now`` + the horizon, a new instant
    every request. While no offer starts between two such instants, the last day's
    cut is the same, and is made once (each cut goes through every unit of the plan);
    a clock past the next offer start cuts the day anew."""
    rules = load_rules(EXAMPLE_RULES)
    world = example_world()
    base = full_lists(world.slots)
    memo = OfferMemo()
    request = FindRequest(
        start=at("2026-03-09 00:00"),
        end=at("2026-03-12 00:00"),
        visit_types=(vt("office-visit"),),
        count=10,
    )
    last_day = date(2026, 3, 10)

    def cuts() -> list[dict[tuple[int, int], list[Any]]]:
        plans = memo.state(1, rules, world.schedules, world.actors).plans.values()
        return [plan.days[last_day].cuts for plan in plans if last_day in plan.days]

    seen: list[list[list[Any]]] = []
    # the office visit's horizon is 30 days: the window ends inside 2026-03-10's hours
    for now in ("2026-02-08 08:02:00", "2026-02-08 08:02:10", "2026-02-08 08:02:40"):
        assert check(memo, 1, request, rules, base, world.schedules, world.actors, at(now), set())
        assert cuts() and all(len(day_cuts) == 1 for day_cuts in cuts())
        seen.append([part for day_cuts in cuts() for part in day_cuts.values()])
    assert all(a is b for later in seen[1:] for a, b in zip(seen[0], later, strict=True))
    check(
        memo, 1, request, rules, base, world.schedules, world.actors, at("2026-02-08 09:31"), set()
    )
    assert all(len(day_cuts) == 2 for day_cuts in cuts())


def _others_of(memo: OfferMemo, rules: RulesFile, world: World) -> list[tuple[Any, ...]]:
    state = memo.state(1, rules, world.schedules, world.actors)
    return [
        offer[6]
        for entry in state._entries.values()
        for day in entry.days.values()
        for offer in day.offers
        if offer[6]
    ]


def test_offers_pairing_with_the_same_asset_slots_share_one_part() -> None:
    """Offers of several primary units at one time often pair with the same room slot:
    the memo keeps one tuple of those parts for all of them, and lets the table go
    when a schedule's list is replaced (it must not keep stale units alive)."""
    rules = load_rules(EXAMPLE_RULES)
    world = example_world()
    base = full_lists(world.slots)
    memo = OfferMemo()
    request = FindRequest(start=at("2026-03-09 00:00"), end=at("2026-03-12 00:00"))
    now = at("2026-03-01 00:00")
    assert check(memo, 1, request, rules, base, world.schedules, world.actors, now, set())
    parts = _others_of(memo, rules, world)
    by_value: dict[tuple[tuple[int, int, int, int], ...], set[int]] = {}
    for part in parts:
        key = tuple((req, id(unit), first, stop) for req, unit, first, stop in part)
        by_value.setdefault(key, set()).add(id(part))
    assert len(parts) > len(by_value)  # some offers pair with the same slots...
    assert all(len(objects) == 1 for objects in by_value.values())  # ...through one tuple

    state = memo.state(1, rules, world.schedules, world.actors)
    assert state._others
    other_schedule = next(iter(parts[0]))[1].schedule.id
    base = {**base, other_schedule: list(base[other_schedule])}  # a sync replaced its list
    assert check(memo, 1, request, rules, base, world.schedules, world.actors, now, set())
    held_units = {id(unit) for part in state._others.values() for _, unit, _, _ in part}
    live_units = {
        id(unit) for entry in state._entries.values() for pool in entry.others for unit in pool
    }
    assert held_units <= live_units


def test_reaching_the_bound_is_told_with_what_was_held() -> None:
    """A memo smaller than what a request needs forgets everything at its bound, and
    says so each time (the API counts and logs it): the sign of a bound set below
    the horizon's offers. Answers stay compose's."""
    rules, world, base, request, args = office_visit_case()
    roomy: list[int] = []
    probe = OfferMemo(on_full=roomy.append)
    assert check(probe, 1, request, rules, base, *args)
    held = held_offers(probe, rules, world)
    assert roomy == [] and held > 4

    told: list[int] = []
    small = OfferMemo(max_offers=held // 2, on_full=told.append)
    assert check(small, 1, request, rules, base, *args)
    assert told and all(0 < n <= held // 2 for n in told)
