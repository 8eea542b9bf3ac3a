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

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from operator import itemgetter

from app.core.domain import Actor
from rules.assets import AssetIndex
from rules.candidates import VisitTypePlan
from rules.hours import Calendar
from rules.matching import Requirement
from rules.offers import Candidate, Keyed, Offer
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


_Selection = tuple[VisitTypePlan, Sequence[Offer | Keyed], list[Requirement]]


def selections(
    request: FindRequest,
    rules: RulesFile,
    index: AssetIndex,
    actors: Mapping[str, Actor],
    now: datetime,
    memo: MemoUse | None = None,
) -> list[_Selection]:
    """What :func:`choose` selects, before it resolves candidates: per requested visit
    type (and variant), its plan, its bare selected offers and its optional assets. For
    callers that need every offer's identity but no proposal (the rules preview): the
    same selection, without the cost of resolving and building each offer."""
    return _selections(request, rules, index, actors, now, memo)[0]


def _selections(
    request: FindRequest,
    rules: RulesFile,
    index: AssetIndex,
    actors: Mapping[str, Actor],
    now: datetime,
    memo: MemoUse | None,
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
    # An offer's place: start, visit type preference, primary asset, its schedule (an
    # asset's schedule has one free slot at a time). Built from the bare offer, so that
    # every offer of a window is counted and ordered while only a page of them is built.
    keyed = [
        ((offer[0], plan.pref, offer[1], offer[2]), plan, offer, deferred)
        for plan, offers, deferred in chosen
        for offer in offers
    ]
    keyed.sort(key=itemgetter(0))
    every = keyed
    prefs = [plan.pref for plan, _, _ in chosen]
    if len(prefs) != len(set(prefs)):  # only variants of one visit type can coincide
        every = [e for n, e in enumerate(keyed) if n == 0 or e[0] != keyed[n - 1][0]]
    first = 0 if page.after is None else bisect_right(every, page.after, key=itemgetter(0))
    shown = every[first : first + page.size]
    more = first + page.size < len(every)
    candidates = [plan.candidate(offer, deferred) for _, plan, offer, deferred in shown]
    return candidates, len(every), shown[-1][0] if more and shown else None, notices


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
