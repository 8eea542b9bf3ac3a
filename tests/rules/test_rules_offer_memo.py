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
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain import Actor, Schedule, Slot
from rules.assets import disjoint
from rules.composer import compose, slot_fetch_window
from rules.loader import load_rules
from rules.offer_memo import Basis, OfferMemo
from rules.request import FindRequest, PatientInfo
from rules.schema import RulesFile
from tests.rules.factories import at, example_world, sign, vt
from tests.rules.reference_composer import reference_compose
from tests.rules.test_rules_fast_path import (
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
