"""Selection across visit types: which offers a request gets, in order, or one page
of them with the total.

Separate from the per-visit-type stages because it is where they meet: each
requested visit type (and each variant of one) gets its plan
(:class:`~rules.candidates.VisitTypePlan`, or
:class:`~rules.planning.MemoisedPlan` with a memo); their bare offers are merged
here, ordered by start and preference, cut to ``_count`` or a page, and only
those kept are resolved into candidates for :mod:`rules.building`.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from operator import itemgetter

from app.core.domain import Actor
from rules.assets import AssetIndex
from rules.candidates import VisitTypePlan
from rules.hours import Calendar
from rules.joined import items_from
from rules.matching import Requirement
from rules.offers import Candidate, Offer
from rules.planning import MemoisedPlan, MemoUse
from rules.request import FindRequest, InvalidFindRequest, Notice, Page, PageKey
from rules.schema import RulesFile, VisitTypeRule


def choose(
    request: FindRequest,
    rules: RulesFile,
    index: AssetIndex,
    actors: Mapping[str, Actor],
    now: datetime,
    memo: MemoUse | None = None,
) -> tuple[list[Candidate], list[Notice]]:
    """The offers :func:`~rules.composer.compose` returns, in order, before they are
    built and signed."""
    chosen, notices = _selections(request, rules, index, actors, now, memo)
    candidates = [
        plan.candidate(offer, deferred) for plan, offers, deferred in chosen for offer in offers
    ]
    return _unique(sorted(candidates, key=Candidate.final_key), request.count), notices


_Selection = tuple[VisitTypePlan, Sequence[Offer], list[Requirement]]


def selections(
    request: FindRequest,
    rules: RulesFile,
    index: AssetIndex,
    actors: Mapping[str, Actor],
    now: datetime,
    memo: MemoUse | None = None,
    *,
    ordered: bool = True,
) -> list[_Selection]:
    """What :func:`choose` selects, before it resolves candidates: per requested visit
    type (and variant), its plan, its bare selected offers and its optional assets. For
    callers that need every offer's identity but no proposal (the rules preview): the
    same selection, without the cost of resolving and building each offer. Without
    ``ordered``, a visit type's offers may come in any order (the same offers)."""
    return _selections(request, rules, index, actors, now, memo, ordered=ordered)[0]


def _selections(
    request: FindRequest,
    rules: RulesFile,
    index: AssetIndex,
    actors: Mapping[str, Actor],
    now: datetime,
    memo: MemoUse | None,
    *,
    ordered: bool = True,
) -> tuple[list[_Selection], list[Notice]]:
    """Each requested visit type's (and variant's) plan with its bare selected offers and
    the optional assets to look up for those kept; notices say why a visit type gave none."""
    if now.tzinfo is None:
        raise InvalidFindRequest("now must be timezone-aware")
    calendar = Calendar(rules, actors)
    notices: list[Notice] = []
    chosen: list[_Selection] = []
    for pref, variants in enumerate(_requested_visit_types(request, rules, notices)):
        blocked: list[Notice] = []
        offered = False
        for vt in variants:
            eff = rules.effective(vt)
            plan = (
                VisitTypePlan(request, eff, pref, index, calendar, now)
                if memo is None
                else MemoisedPlan(request, eff, pref, index, calendar, now, memo)
            )
            plan.ordered = ordered
            selected = plan.selected(blocked)
            if selected is not None:
                offered = True
                chosen.append((plan, *selected))
        if not offered:  # a reason matters only when no variant of the visit type applies
            notices.extend(blocked)
    return chosen, notices


def choose_page(
    request: FindRequest,
    rules: RulesFile,
    index: AssetIndex,
    actors: Mapping[str, Actor],
    now: datetime,
    memo: MemoUse | None,
    page: Page,
) -> tuple[list[Candidate], int, PageKey | None, list[Notice]]:
    """One page of every offer (``request.count`` aside): its candidates, how many offers
    there are in all, and the key the next page starts after (None on the last page).

    Every offer is selected and ordered by its key, but only the page's are built:
    counting the rest costs a key each. Offers with one key (two variants of a visit
    type found the same practitioner, schedule and start) count once."""
    chosen, notices = _selections(replace(request, count=None), rules, index, actors, now, memo)
    if all(plan.eff.ordering != "practitioner-preference" for plan, _, _ in chosen):
        candidates, total, next_after = _page_merged(chosen, page)
    else:
        candidates, total, next_after = _page_sorted(chosen, page)
    return candidates, total, next_after, notices


# An offer's place: start, visit type preference, primary asset, its schedule (an
# asset's schedule has one free slot at a time). Built from the bare offer, so that
# every offer of a window is counted and ordered while only a page of them is built.
_Placed = tuple[PageKey, VisitTypePlan, Offer, list[Requirement]]
_place = itemgetter(0)


def _page_sorted(
    chosen: list[_Selection], page: Page
) -> tuple[list[Candidate], int, PageKey | None]:
    """:func:`choose_page`'s page, total and next key by ordering every offer."""
    keyed = [
        ((offer[0], plan.pref, offer[1], offer[2].schedule.id), plan, offer, deferred)
        for plan, offers, deferred in chosen
        for offer in offers
    ]
    keyed.sort(key=_place)
    every = keyed
    prefs = [plan.pref for plan, _, _ in chosen]
    if len(prefs) != len(set(prefs)):  # only variants of one visit type can coincide
        every = [e for n, e in enumerate(keyed) if n == 0 or e[0] != keyed[n - 1][0]]
    first = 0 if page.after is None else bisect_right(every, page.after, key=_place)
    shown = every[first : first + page.size]
    more = first + page.size < len(every)
    candidates = [plan.candidate(offer, deferred) for _, plan, offer, deferred in shown]
    return candidates, len(every), shown[-1][0] if more and shown else None


def _page_merged(
    chosen: list[_Selection], page: Page
) -> tuple[list[Candidate], int, PageKey | None]:
    """:func:`_page_sorted` without ordering every offer: each plan's offers already
    come in start order (then primary asset and schedule) unless its ordering is
    ``practitioner-preference``, so the total is a sum of lengths (a set of places
    only among variants of one visit type) and the page a lazy merge from where
    each plan passes ``page.after``. A broad request has tens of thousands of
    offers, of which a page shows a hundred."""
    by_pref: dict[int, list[tuple[VisitTypePlan, Sequence[Offer]]]] = {}
    for plan, offers, _ in chosen:
        by_pref.setdefault(plan.pref, []).append((plan, offers))
    total = 0
    for group in by_pref.values():
        total += sum(len(offers) for _, offers in group)
        if len(group) > 1 and not _apart(plan for plan, _ in group):
            # variants of one visit type on common schedules: an offer both found
            # counts once
            places = {(o[0], o[1], o[2].schedule.id) for _, offers in group for o in offers}
            total += len(places) - sum(len(offers) for _, offers in group)
    after = page.after
    streams = [
        _placed(n, plan, offers, deferred, after)
        for n, (plan, offers, deferred) in enumerate(chosen)
    ]
    shown: list[_Placed] = []
    more = False
    last: PageKey | None = None
    for place, _, plan, offer, deferred in heapq.merge(*streams):
        if place == last:  # the same offer from another variant: counted once
            continue
        if len(shown) == page.size:
            more = True
            break
        shown.append((place, plan, offer, deferred))
        last = place
    candidates = [plan.candidate(offer, deferred) for _, plan, offer, deferred in shown]
    return candidates, total, shown[-1][0] if more and shown else None


def _apart(plans: Iterable[VisitTypePlan]) -> bool:
    """Whether no two of the plans can start an offer on the same schedule (variants of
    a visit type for different specialties, say), so that none of their offers
    coincide."""
    seen: set[str] = set()
    for plan in plans:
        schedules = plan.primary_schedules()
        if not seen.isdisjoint(schedules):
            return False
        seen |= schedules
    return True


def _placed(
    n: int,
    plan: VisitTypePlan,
    offers: Sequence[Offer],
    deferred: list[Requirement],
    after: PageKey | None,
) -> Iterator[tuple[PageKey, int, VisitTypePlan, Offer, list[Requirement]]]:
    """A plan's offers placed after ``after``, in order; ``n`` (the plan's position)
    breaks ties as a stable sort of every offer would."""
    pref = plan.pref
    first = 0
    if after is not None:
        first = bisect_right(offers, after, key=lambda o: (o[0], pref, o[1], o[2].schedule.id))
    for offer in items_from(offers, first):
        yield (offer[0], pref, offer[1], offer[2].schedule.id), n, plan, offer, deferred


def _unique(candidates: list[Candidate], count: int | None) -> list[Candidate]:
    """The first ``count`` offers, dropping those that two variants of one visit type
    both found (same time, same slots)."""
    seen: set[tuple[object, ...]] = set()
    out: list[Candidate] = []
    for c in candidates:
        if count is not None and len(out) >= count:
            break
        key = (c.rule.code, c.start, c.end, c.slot_ids)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def _requested_visit_types(
    request: FindRequest, rules: RulesFile, notices: list[Notice]
) -> list[list[VisitTypeRule]]:
    """Rule entries per requested visit type, in the request's preference order."""
    if not request.visit_types:
        by_code: dict[str, list[VisitTypeRule]] = {}
        for vt in rules.visit_types:
            by_code.setdefault(vt.code, []).append(vt)
        return list(by_code.values())
    out: list[list[VisitTypeRule]] = []
    for code in request.visit_types:
        variants = rules.visit_types_for(code)
        if not variants:
            notices.append(
                Notice("unknown-visit-type", f"visit type {code} is not offered", visit_type=code)
            )
        elif variants not in out:
            out.append(variants)
    return out
