"""Composing proposed appointments from cached free slots and the rules file.

Pure: plain data in, plain data out, no web or database imports, so the API,
the CLI (``rules check``) and tests share one implementation.

An appointment of visit type V at ``[t, t+d)`` is offered when every required
asset of V is free for the whole span: a *primary* asset (the first required
practitioner, else the first required asset) supplies candidate starts (the
start of each of its qualifying slots), and every other asset must have
qualifying free slots covering the same span -- one slot, or contiguous slots
when V allows joining. Opening hours, closures, lead time, horizon, buffers,
eligibility and the per-day cap then filter, and the ``ordering`` picks which
offers survive ``_count``. Each asset's slots are scanned once per visit type and
other assets are found by binary search, so the cost is linear in the slots of
the window (times a log factor).

This runs on every ``$find``, so work that cannot change the answer is skipped:
units sort their slots only when a visit type first needs them and slots are
qualified only where a search reaches them (``rules.assets``); candidates stay
bare tuples until they survive the ordering, the cap and ``_count``; offers in
``earliest`` order are merged lazily and stop at ``_count``; and optional assets
that no required one depends on are looked up only for the offers kept.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import time as wall_time
from itertools import chain, groupby, pairwise
from operator import itemgetter
from typing import TypeVar

from app.core.domain import Actor, Participant, ProposedAppointment, Schedule, Slot
from rules.appointment_id import ProposalPayload
from rules.assets import Accepts, AssetIndex, Qualifier, Unit, by_schedule_id, covering_slots
from rules.eligibility import age_allows, ineligible_reason
from rules.hours import Calendar
from rules.offer_memo import Basis, Day, Entry, MemoState, OfferMemo
from rules.request import (
    ComposeResult,
    FindRequest,
    InvalidFindRequest,
    Notice,
    Page,
    PageKey,
    PatientInfo,
)
from rules.schema import KIND_RESOURCE_TYPE, EffectiveRule, RulesFile, VisitTypeRule
from rules.tokens import TokenSet

__all__ = ["Signer", "compose", "covering_slots", "reconstruct", "slot_fetch_window"]

Signer = Callable[[ProposalPayload], str]


def compose(
    request: FindRequest,
    rules: RulesFile,
    slots: Sequence[Slot] | Mapping[str, list[Slot]],
    schedules: Mapping[str, Schedule],
    actors: Mapping[str, Actor],
    now: datetime,
    sign: Signer,
    *,
    memo: OfferMemo | None = None,
    basis: Basis | None = None,
    page: Page | None = None,
) -> ComposeResult:
    """Proposed appointments for ``request``, ordered by start, at most ``request.count``.

    With ``page``, every offer is worked out (``request.count`` is not used) so that the
    result can say how many match, and only the page's are built and signed.

    ``slots`` are the cached slots overlapping :func:`slot_fetch_window` (non-free
    ones are ignored), or already the free ones per schedule id, each in start
    order; ``schedules`` maps schedule id and ``actors`` maps reference to the
    cached resources; ``sign`` turns a proposal into its id token.

    With ``memo`` and the ``basis`` the slots were cut from, candidate offers are
    reused from earlier requests (:mod:`rules.offer_memo`); the answer is the same.
    Then ``slots`` need only hold the schedules the memo cannot serve from the
    basis: those not in ``basis.slots`` and those with taken slots (passing every
    schedule's is fine too).
    """
    use = None
    if memo is not None and basis is not None:
        state = memo.state(basis.key, rules, schedules, actors)
        dirty = frozenset(slot.schedule_id for slot in basis.taken)
        window = slots if isinstance(slots, Mapping) else by_schedule_id(slots)
        index, shared = state.index(basis, window, dirty)
        use = _MemoUse(state, basis, dirty, shared)
    else:
        index = AssetIndex(slots, schedules, actors)
    builder = _Builder(request, index, sign)
    if page is None:
        chosen, notices = _choose(request, rules, index, actors, now, use)
        return ComposeResult([builder.build(c) for c in chosen], notices)
    shown, total, next_after, notices = _choose_page(request, rules, index, actors, now, use, page)
    return ComposeResult(
        [builder.build(c) for c in shown], notices, total=total, next_after=next_after
    )


def reconstruct(
    token: str,
    payload: ProposalPayload,
    rules: RulesFile,
    slots: Sequence[Slot],
    schedules: Mapping[str, Schedule],
    actors: Mapping[str, Actor],
    now: datetime,
    sign: Signer,
) -> ProposedAppointment | None:
    """The appointment a ``$find`` token names, if it is still offered now; else None.

    ``$hold``/``$book`` with an ``appt-id`` decode the token (which proves we issued
    it) and call this with the current cache: composing again for exactly that
    visit type and span, with the same patient, re-checks every rule (slots still
    free, lead time, hours...) on any replica without stored state. ``slots`` must
    cover :func:`slot_fetch_window` of ``[payload.start, payload.end)``.
    """
    patients = [ref for ref in payload.participants if ref.startswith("Patient/")]
    request = FindRequest(
        start=payload.start,
        end=payload.end,
        visit_types=(payload.visit_type,),
        patient=PatientInfo(ref=patients[0]) if patients else None,
    )
    index = AssetIndex(slots, schedules, actors)
    chosen, _ = _choose(request, rules, index, actors, now)
    # The token holds the slot ids, so only an offer on the same slots can have it:
    # sign just those.
    same_slots = (c for c in chosen if c.slot_ids == payload.slot_ids)
    builder = _Builder(request, index, sign)
    offers = (builder.build(c) for c in same_slots)
    return next((a for a in offers if a.id == token), None)


def _choose(
    request: FindRequest,
    rules: RulesFile,
    index: AssetIndex,
    actors: Mapping[str, Actor],
    now: datetime,
    memo: _MemoUse | None = None,
) -> tuple[list[_Candidate], list[Notice]]:
    """The offers :func:`compose` returns, in order, before they are built and signed."""
    chosen, notices = _selections(request, rules, index, actors, now, memo)
    candidates = [
        plan._candidate(offer, deferred) for plan, offers, deferred in chosen for offer in offers
    ]
    return _unique(sorted(candidates, key=_Candidate.final_key), request.count), notices


_Selection = tuple["_VisitTypePlan", Sequence["_Offer | _Keyed"], list["_Requirement"]]


def _selections(
    request: FindRequest,
    rules: RulesFile,
    index: AssetIndex,
    actors: Mapping[str, Actor],
    now: datetime,
    memo: _MemoUse | None,
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
            plan = _VisitTypePlan(request, rules.effective(vt), pref, index, calendar, now, memo)
            selected = plan.selected(blocked)
            if selected is not None:
                offered = True
                chosen.append((plan, *selected))
        if not offered:  # a reason matters only when no variant of the visit type applies
            notices.extend(blocked)
    return chosen, notices


def _choose_page(
    request: FindRequest,
    rules: RulesFile,
    index: AssetIndex,
    actors: Mapping[str, Actor],
    now: datetime,
    memo: _MemoUse | None,
    page: Page,
) -> tuple[list[_Candidate], int, PageKey | None, list[Notice]]:
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
    candidates = [plan._candidate(offer, deferred) for _, plan, offer, deferred in shown]
    return candidates, len(every), shown[-1][0] if more and shown else None, notices


def _unique(candidates: list[_Candidate], count: int | None) -> list[_Candidate]:
    """The first ``count`` offers, dropping those that two variants of one visit type
    both found (same time, same slots)."""
    seen: set[tuple[object, ...]] = set()
    out: list[_Candidate] = []
    for c in candidates:
        if count is not None and len(out) >= count:
            break
        key = (c.rule.code, c.start, c.end, c.slot_ids)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def slot_fetch_window(
    request: FindRequest, rules: RulesFile, now: datetime
) -> tuple[datetime, datetime]:
    """The span of cached slots :func:`compose` needs for ``request``.

    Wider than the request by the largest buffers (an asset must be free around
    the appointment) and narrowed to what any visit type could book from ``now``.
    Pass every slot overlapping ``[start, end)``.
    """
    effective = [rules.effective(vt) for vt in rules.visit_types]
    lead = min(e.min_lead_minutes for e in effective)
    horizon = max(e.max_horizon_days for e in effective)
    before = max(e.buffer_before_minutes for e in effective)
    after = max(e.buffer_after_minutes for e in effective)
    longest = max(e.rule.duration_minutes for e in effective)
    start = max(request.start, now + timedelta(minutes=lead))
    end = min(request.end, now + timedelta(days=horizon, minutes=longest))
    return start - timedelta(minutes=before), max(end, start) + timedelta(minutes=after)


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


# (requirement index, unit, first, stop) of one other asset: unit.free.slots[first:stop]
_Found = tuple[int, Unit, int, int]

# A candidate offer while a visit type is being composed:
#   (start, ref, schedule_id, unit, day, first, stop, others)
# ``ref`` and ``schedule_id`` are the primary asset's and ``unit`` the primary unit;
# ``day`` is the local date at its site (for the per-day cap); its slots are
# ``unit.free.slots[first:stop]``; ``others`` are the other assets that
# decide whether the offer exists (or None). Most candidates are dropped by the
# ordering, the cap or ``_count``, so this is a bare tuple (a class costs several
# times more to build). The first three fields are unique within one visit type
# and give the start order, so offers sort and merge as tuples without ever
# comparing the fields after them.
_Offer = tuple[datetime, str, str, Unit, date, int, int, list[_Found] | None]
# An offer remembered by the memo, with its start in microseconds appended: sorting
# thousands of offers by an int is several times cheaper than by their tuples.
_Keyed = tuple[datetime, str, str, Unit, date, int, int, list[_Found] | None, int]
_ref = itemgetter(1)
_ref_and_day = itemgetter(1, 4)
_start_key = itemgetter(8)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_ONE_DAY = timedelta(days=1)
# Wider than any UTC offset change around a local midnight: a day's offers are
# searched this far beyond it, then kept by their local date.
_DAY_MARGIN = timedelta(hours=6)


def _keyed(offer: _Offer) -> _Keyed:
    return (*offer, (offer[0] - _EPOCH) // _MICROSECOND)


@dataclass(frozen=True, slots=True)
class _MemoUse:
    """The memo state of one composition, its basis, the schedules that have
    slots taken in this request (their offers are composed as without a memo), and
    whether the request's index is the memo's shared one (then plans made against
    it are kept for the next requests)."""

    state: MemoState
    basis: Basis
    dirty: frozenset[str]
    shared: bool


@dataclass(slots=True)
class _MergedDay:
    """What the per-day cap keeps of every primary unit of a plan on one local day,
    merged in start order (then primary asset and schedule), with the first and
    last start of all their offers: a request whose window holds both takes the
    day whole."""

    offers: list[_Keyed]
    first: datetime | None
    last: datetime | None
    # (earliest, latest) -> the day cut by a window from earliest to latest: windows
    # recur (this week, from tomorrow...), and a cut goes through every unit
    cuts: dict[tuple[datetime, datetime], list[_Keyed]] = field(default_factory=dict)

    def inside(self, earliest: datetime, latest: datetime) -> bool:
        """Whether every offer of the day starts from ``earliest`` to ``latest``."""
        if self.first is None or self.last is None:
            return True
        return earliest <= self.first and self.last <= latest


@dataclass(slots=True)
class _Plan:
    """One visit type's primary units (in unit order), other assets and memo entries
    for one set of request filters, made against one index, with the days merged so
    far. While the index is the same shared object, every request with the same
    filters reuses it: the per-request work is then the days of its window, not
    the units."""

    index: AssetIndex
    units: list[Unit]
    required: list[_Requirement]
    deferred: list[_Requirement]
    entries: list[Entry | None]  # per unit; None: composed from the request's slots
    zones: list[tzinfo]  # per unit, of its site
    shared: set[str]  # practitioners with several schedules among the units
    days: dict[date, _MergedDay]  # by local date (each unit's own zone)


# Offers of one primary unit on one local day, in start order: (ref, day, offers,
# the memo's whole day when the offers are all of it, else None).
_Run = tuple[str, date, list[_Keyed], Day | None]


@dataclass(slots=True)
class _Candidate:
    """An offer that survived its visit type's selection, with every part resolved."""

    start: datetime
    end: datetime
    pref: int  # visit type's position in the request
    rule: VisitTypeRule
    primary: Unit
    site: str | None
    # (requirement index, unit, slots) for the primary, then every chosen other asset
    # in requirement order
    parts: list[_Part]
    slot_ids: tuple[str, ...]  # of all parts, in that order

    def final_key(self) -> tuple[object, ...]:
        return (self.start, self.pref, self.primary.ref, self.end, self.slot_ids)


_Part = tuple[int, Unit, list[Slot]]


@dataclass(frozen=True, slots=True)
class _Requirement:
    """A non-primary asset of a visit type with the units that can fill it."""

    index: int
    optional: bool
    same_site: bool
    by_site: dict[str | None, list[Unit]]
    everywhere: list[Unit]
    accepts: Accepts | None  # whether a slot qualifies; None: every slot does

    def pool(self, site: str | None) -> list[Unit]:
        if self.same_site and site is not None:
            return self.by_site.get(site, [])
        return self.everywhere


class _VisitTypePlan:
    """Everything needed to compose one visit type for one request."""

    def __init__(
        self,
        request: FindRequest,
        eff: EffectiveRule,
        pref: int,
        index: AssetIndex,
        calendar: Calendar,
        now: datetime,
        memo: _MemoUse | None = None,
    ):
        self.request = request
        self.memo = memo
        self.eff = eff
        self.rule = eff.rule
        self.pref = pref
        self.index = index
        self.calendar = calendar
        self.duration = timedelta(minutes=self.rule.duration_minutes)
        self.before = timedelta(minutes=eff.buffer_before_minutes)
        self.after = timedelta(minutes=eff.buffer_after_minutes)
        self.buffered = bool(self.before or self.after)
        self.join = eff.join_contiguous
        self.earliest = max(request.start, now + timedelta(minutes=eff.min_lead_minutes))
        self.latest = min(now + timedelta(days=eff.max_horizon_days), request.end - self.duration)
        assets = self.rule.assets
        required = [i for i, a in enumerate(assets) if not a.optional]
        self.primary = next((i for i in required if assets[i].kind == "practitioner"), required[0])
        self.qualifiers = [
            Qualifier(
                service_types=(
                    a.slot_service_types
                    if a.slot_service_types is not None
                    else eff.slot_service_types
                ),
                appointment_types=self.rule.slot_appointment_types,
                specialties=a.codes if a.kind == "practitioner" else (),
            )
            for a in assets
        ]
        self.preference = self._preference()

    def selected(
        self, notices: list[Notice]
    ) -> tuple[Sequence[_Offer | _Keyed], list[_Requirement]] | None:
        """Selected offers, bare (built by :meth:`_candidate` only if kept), and the
        optional assets to look up for those kept; None (with a notice) when the request
        rules them out."""
        label = self.rule.display or self.rule.name or self.rule.code
        if self.earliest > self.latest:
            notices.append(
                Notice(
                    "outside-bookable-window",
                    f"{label}: nothing can be booked in the requested window "
                    f"(bookable from {self.earliest.isoformat()} for "
                    f"{self.eff.max_horizon_days} days after now)",
                    visit_type=self.rule.code,
                )
            )
            return None
        org_zone = self.calendar.zone(None)
        reason = ineligible_reason(
            self.rule.eligibility,
            self.request.patient,
            self.earliest.astimezone(org_zone).date(),
            self.latest.astimezone(org_zone).date(),
        )
        if reason:
            notices.append(
                Notice(
                    "ineligible",
                    f"{label}: patient is not eligible ({reason})",
                    visit_type=self.rule.code,
                )
            )
            return None
        if self.memo is not None:
            plan = self._plan()
            return self._select_planned(plan), plan.deferred
        required, deferred = self._requirements()
        selected: list[_Offer] | list[_Offer | _Keyed]
        streams = [self._unit_offers(unit, required) for unit in self._primary_units()]
        if self.eff.ordering == "earliest":
            # Each stream is in start order: merge lazily and stop at _count.
            selected = self._take_earliest(heapq.merge(*streams))
        else:
            selected = self._select([offer for stream in streams for offer in stream])
        return selected, deferred

    def _requirements(self) -> tuple[list[_Requirement], list[_Requirement]]:
        """The other assets, split into those that decide whether an offer exists (up
        to the last required one) and the optional ones after it, which only add a
        participant: those are looked up for the offers kept, not for every candidate."""
        others = [self._requirement(i) for i in range(len(self.rule.assets)) if i != self.primary]
        last = max((n for n, r in enumerate(others) if not r.optional), default=-1)
        return others[: last + 1], others[last + 1 :]

    def _requirement(self, i: int) -> _Requirement:
        requirement = self.rule.assets[i]
        units = self._units(i)
        by_site: dict[str | None, list[Unit]] = defaultdict(list)
        for unit in units:
            by_site[unit.site].append(unit)
        return _Requirement(
            index=i,
            optional=requirement.optional,
            same_site=requirement.same_location_as_practitioner,
            by_site=by_site,
            everywhere=units,
            accepts=self.qualifiers[i].predicate,
        )

    def _unit_offers(self, unit: Unit, required: list[_Requirement]) -> Iterator[_Offer]:
        """Offers with ``unit`` as primary asset, in start order: one per qualifying
        slot starting in the bookable window that passes every check."""
        starts = unit.free.starts
        first = bisect_left(starts, self.earliest)
        stop = bisect_right(starts, self.latest)
        return self._scan(unit, required, first, stop, self.request.patient)

    def _scan(
        self,
        unit: Unit,
        required: list[_Requirement],
        first: int,
        stop_at: int,
        patient: PatientInfo | None,
    ) -> Iterator[_Offer]:
        """Offers starting at ``unit.free.slots[first:stop_at]``: each qualifying slot
        that passes every check (the patient's age on the day, when given)."""
        time = unit.free
        slots, starts, ends = time.slots, time.starts, time.ends
        accepts = self.qualifiers[self.primary].predicate
        buffered = self.buffered
        join, duration, before, after = self.join, self.duration, self.before, self.after
        open_day = self.calendar.site(unit.site).open_day
        age_rule = self.rule.eligibility
        ref, schedule_id = unit.ref, unit.schedule.id
        others = None
        for i in range(first, stop_at):
            if accepts is not None and not accepts(slots[i]):
                continue
            t = starts[i]
            end = t + duration
            # Most slots are long enough by themselves: skip the call then.
            stop = i + 1 if ends[i] >= end else time.stop(i, t, end, join, accepts)
            if not stop:
                continue
            if buffered and not time.covers(t - before, end + after):
                continue
            day = open_day(t, end)
            if day is None or (patient is not None and not age_allows(age_rule, patient, day)):
                continue
            if required:
                others = self._find_assets(unit, t, end, required, {ref})
                if others is None:
                    continue
            yield (t, ref, schedule_id, unit, day, i, stop, others)

    def _candidate(self, offer: _Offer | _Keyed, deferred: list[_Requirement]) -> _Candidate:
        """A selected offer with its slots, plus the optional assets left out while
        selecting."""
        start, unit, first, stop, others = offer[0], offer[3], offer[5], offer[6], offer[7]
        end = start + self.duration
        found = list(others or ())
        if deferred:
            used = {unit.ref, *(other.ref for _, other, _, _ in found)}
            found += self._find_assets(unit, start, end, deferred, used) or []
        parts: list[_Part] = [(self.primary, unit, unit.free.slots[first:stop])]
        parts += [(i, other, other.free.slots[a:b]) for i, other, a, b in found]
        slot_ids = tuple(s.id for _, _, part in parts for s in part)
        return _Candidate(start, end, self.pref, self.rule, unit, unit.site, parts, slot_ids)

    def _take_earliest(self, merged: Iterable[_Offer | _Keyed]) -> list[_Offer | _Keyed]:
        """The per-day cap and ``_count`` applied to offers arriving in start order."""
        cap = self.eff.max_offers_per_day_per_practitioner
        count = self.request.count
        per_day: dict[tuple[str, date], int] = defaultdict(int)
        out: list[_Offer | _Keyed] = []
        if count == 0:
            return out
        for offer in merged:
            if cap is not None:
                key = _ref_and_day(offer)
                if per_day[key] >= cap:
                    continue
                per_day[key] += 1
            out.append(offer)
            if count is not None and len(out) >= count:
                break
        return out

    def _find_assets(
        self,
        primary: Unit,
        start: datetime,
        end: datetime,
        requirements: list[_Requirement],
        used: set[str],
    ) -> list[_Found] | None:
        """A free unit for each requirement (an optional one when available), never
        one in ``used`` (which grows with each unit found); None when a required one
        has none."""
        found: list[_Found] = []
        for requirement in requirements:
            for unit in requirement.pool(primary.site):
                if unit.ref in used:
                    continue
                time = unit.free
                span = time.span(start, end, self.join, requirement.accepts)
                if span is None:
                    continue
                if self.buffered and not time.covers(start - self.before, end + self.after):
                    continue
                used.add(unit.ref)
                found.append((requirement.index, unit, *span))
                break
            else:
                if not requirement.optional:
                    return None
        return found

    def _units(self, i: int) -> list[Unit]:
        """Units that can fill requirement ``i``, in the rule's preference order."""
        requirement = self.rule.assets[i]
        codes = TokenSet(requirement.codes)
        ids = {ref: n for n, ref in enumerate(requirement.ids)}
        units = [
            u
            for u in self.index.by_type.get(KIND_RESOURCE_TYPE[requirement.kind], [])
            if (not ids or u.ref in ids) and (not codes or codes.any_of(u.codes))
        ]
        units.sort(key=lambda u: (ids.get(u.ref, len(ids)), u.ref, u.schedule.id))
        return units

    def _primary_units(self) -> list[Unit]:
        """Primary candidates narrowed by the request's practitioner, specialty and
        location parameters and the rule's clinics."""
        request, rule = self.request, self.rule
        is_practitioner = rule.assets[self.primary].kind == "practitioner"
        if request.practitioners and not is_practitioner:
            return []
        specialties = TokenSet(request.specialties)
        if specialties and not is_practitioner and not specialties.any_of(rule.specialties):
            return []
        locations = set(request.locations)
        strings = [s.casefold() for s in request.location_strings]
        out = []
        for unit in self._units(self.primary):
            if rule.locations and unit.site not in rule.locations:
                continue
            if request.practitioners and unit.ref not in request.practitioners:
                continue
            if specialties and is_practitioner and not specialties.any_of(unit.codes):
                continue
            if locations and not self._at_location(unit, locations):
                continue
            if strings and not self._matches_address(unit, strings):
                continue
            out.append(unit)
        return out

    def _at_location(self, unit: Unit, locations: set[str]) -> bool:
        places = [unit.ref, *(self.index.ancestors(unit.site) if unit.site else [])]
        return not locations.isdisjoint(places)

    def _matches_address(self, unit: Unit, strings: list[str]) -> bool:
        address = self.index.actor(unit.site).address if unit.site else None
        if not address:
            return False
        folded = address.casefold()
        return any(s in folded for s in strings)

    def _preference(self) -> dict[str, int]:
        refs = self.request.practitioners or tuple(self.rule.assets[self.primary].ids)
        return {ref: n for n, ref in enumerate(refs)}

    def _select(self, offers: list[_Offer]) -> list[_Offer]:
        """Apply the per-day cap and ``_count`` in the rule's ordering."""
        ordering = self.eff.ordering
        cap = self.eff.max_offers_per_day_per_practitioner
        if cap is not None:
            # Cap each practitioner-day (its offers in start order), then order what is
            # left: sorting the survivors is cheaper than sorting every candidate.
            groups: dict[tuple[str, date], list[_Offer]] = defaultdict(list)
            for offer in offers:
                groups[_ref_and_day(offer)].append(offer)
            offers = []
            for group in groups.values():
                group.sort()  # usually sorted already: one unit's offers
                offers += _spread(group, cap) if ordering == "spread" else group[:cap]
        offers.sort()  # by start, primary asset, schedule
        return self._rank_and_count(offers)

    def _rank_and_count(self, offers: list[_Offer]) -> list[_Offer]:
        """The rule's ordering and ``_count`` over capped offers sorted by start."""
        ordering = self.eff.ordering
        if ordering == "practitioner-preference":
            rank, last = self.preference.get, len(self.preference)
            offers.sort(key=lambda o: rank(_ref(o), last))  # stable: earliest first per rank
        count = self.request.count
        if count is not None:
            offers = _spread(offers, count) if ordering == "spread" else offers[:count]
        return offers

    # ------------------------------------------------------------ with the memo

    def _plan(self) -> _Plan:
        """The plan of this visit type for the request's filters: the memo's when it
        was made against this very index, else made now (and kept when the index is
        shared)."""
        use = self.memo
        assert use is not None
        request = self.request
        key = (
            id(self.rule),
            request.practitioners,
            request.specialties,
            request.locations,
            request.location_strings,
        )
        plan: _Plan | None = use.state.plan(key, self.index)
        if plan is not None:
            return plan
        units = sorted(self._primary_units(), key=_unit_order)
        required, deferred = self._requirements()
        refs = [unit.ref for unit in units]
        plan = _Plan(
            index=self.index,
            units=units,
            required=required,
            deferred=deferred,
            entries=[self._memo_entry(unit, required) for unit in units],
            zones=[self.calendar.zone(unit.site) for unit in units],
            shared={ref for ref, next_ref in pairwise(refs) if ref == next_ref},
            days={},
        )
        if use.shared:
            use.state.keep_plan(key, plan)
        return plan

    def _select_planned(self, plan: _Plan) -> list[_Keyed]:
        """:meth:`offers`' selection from the plan's merged days.

        A unit's offers on a local day D between the window's first and last local
        dates are those starting in ``[earliest, latest]``, and its offers on other
        days all start outside it; so whatever the units' zones, the request takes
        each merged day whole when all of the day's offers start inside, and cuts
        it unit by unit from the memo's days otherwise. Merged days follow one
        another in time unless sites in different zones keep hours that overlap
        across local midnight; then the offers are sorted once more."""
        if None in plan.entries:
            return self._select_memoised(plan)
        earliest, latest = self.earliest, self.latest
        zones = set(plan.zones)
        first = min((earliest.astimezone(zone).date() for zone in zones), default=None)
        last = max((latest.astimezone(zone).date() for zone in zones), default=None)
        age_rule, patient = self.rule.eligibility, self.request.patient
        offers: list[_Keyed] = []
        in_order = True
        day = first
        while day is not None and last is not None and day <= last:
            if patient is None or age_allows(age_rule, patient, day):
                merged = plan.days.get(day) or self._merge_day(plan, day)
                part: list[_Keyed] | None  # a list again once the cut is looked up or made
                if merged.inside(earliest, latest):
                    part = merged.offers
                else:
                    part = merged.cuts.get((earliest, latest))
                    if part is None:
                        part = self._cut_day(plan, day)
                        if len(merged.cuts) >= 8:
                            merged.cuts.clear()
                        merged.cuts[earliest, latest] = part
                if part:
                    if offers and _order(part[0]) < _order(offers[-1]):
                        in_order = False
                    offers += part
            day += _ONE_DAY
        if not in_order:
            offers.sort()  # by start, primary asset, schedule (unique in a visit type)
        if self.eff.ordering == "earliest":
            count = self.request.count
            return offers if count is None else offers[:count]
        return self._rank_and_count(offers)  # type: ignore[arg-type,return-value]

    def _merge_day(self, plan: _Plan, day: date) -> _MergedDay:
        """Merge (and remember) the capped whole-day offers of every unit of ``plan``."""
        runs: list[_Run] = []
        first = last = None
        for unit, entry, zone in zip(plan.units, plan.entries, plan.zones, strict=True):
            assert entry is not None
            memo_day = entry.days.get(day) or self._memo_day(entry, plan.required, day, zone)
            if memo_day.offers:
                runs.append((unit.ref, day, memo_day.offers, memo_day))
                starts = memo_day.starts
                first = starts[0] if first is None or starts[0] < first else first
                last = starts[-1] if last is None or starts[-1] > last else last
        merged = plan.days[day] = _MergedDay(self._capped(runs, plan.shared), first, last)
        return merged

    def _cut_day(self, plan: _Plan, day: date) -> list[_Keyed]:
        """The capped offers of every unit of ``plan`` on ``day`` that start in the
        bookable window, in order."""
        runs = []
        for unit, entry, zone in zip(plan.units, plan.entries, plan.zones, strict=True):
            assert entry is not None
            run = self._day_run(unit, entry, plan.required, day, day, day, zone)
            if run is not None:
                runs.append(run)
        return self._capped(runs, plan.shared)

    def _select_memoised(self, plan: _Plan) -> list[_Keyed]:
        """:meth:`offers`' selection unit by unit from the memo's days (what
        :meth:`_select` and :meth:`_take_earliest` would select from
        :meth:`_unit_offers`), for plans whose days cannot be merged."""
        per_unit = [
            self._runs(unit, entry, plan.required)
            for unit, entry in zip(plan.units, plan.entries, strict=True)
        ]
        if self.eff.ordering == "earliest":
            streams = [chain.from_iterable(run[2] for run in runs) for runs in per_unit]
            return self._take_earliest(heapq.merge(*streams))  # type: ignore[return-value]
        runs = [run for unit_runs in per_unit for run in unit_runs]
        return self._rank_and_count(self._capped(runs, plan.shared))  # type: ignore[arg-type,return-value]

    def _runs(self, unit: Unit, entry: Entry | None, required: list[_Requirement]) -> list[_Run]:
        """The offers of ``unit`` in the request, per local day: the memo's days cut to
        the bookable window, less the days the patient's age rules out; composed
        from the request's slots when the memo cannot serve the unit (no entry)."""
        if entry is None:
            keyed = [_keyed(offer) for offer in self._unit_offers(unit, required)]
            return [(unit.ref, day, list(run), None) for day, run in groupby(keyed, _day)]
        zone = self.calendar.zone(unit.site)
        first, last = self.earliest.astimezone(zone).date(), self.latest.astimezone(zone).date()
        age_rule, patient = self.rule.eligibility, self.request.patient
        runs: list[_Run] = []
        day = first
        while day <= last:
            if patient is None or age_allows(age_rule, patient, day):
                run = self._day_run(unit, entry, required, day, first, last, zone)
                if run is not None:
                    runs.append(run)
            day += _ONE_DAY
        return runs

    def _day_run(
        self,
        unit: Unit,
        entry: Entry,
        required: list[_Requirement],
        day: date,
        first: date,
        last: date,
        zone: tzinfo,
    ) -> _Run | None:
        """The memo's offers of ``unit`` on ``day`` cut to the bookable window (which
        spans local days ``first`` to ``last``); None when there are none."""
        memo_day = entry.days.get(day) or self._memo_day(entry, required, day, zone)
        offers = memo_day.offers
        a, b = 0, len(offers)
        if day == first:
            a = bisect_left(memo_day.starts, self.earliest)
        if day == last:
            b = bisect_right(memo_day.starts, self.latest)
        if a == 0 and b == len(offers):
            return (unit.ref, day, offers, memo_day) if offers else None
        return (unit.ref, day, offers[a:b], None) if a < b else None

    def _memo_entry(self, unit: Unit, required: list[_Requirement]) -> Entry | None:
        """The memo entry of primary ``unit`` with the other assets this request could
        pair it with; None when slots of any of them are taken in this request, or
        the memo cannot hold them."""
        use = self.memo
        assert use is not None
        dirty = use.dirty
        if unit.schedule.id in dirty:
            return None
        pools = tuple(tuple(u.schedule.id for u in r.pool(unit.site)) for r in required)
        if dirty and any(sid in dirty for pool in pools for sid in pool):
            return None
        return use.state.entry(id(self.rule), unit.schedule.id, pools, use.basis)

    def _memo_day(self, entry: Entry, required: list[_Requirement], day: date, zone: tzinfo) -> Day:
        """Compute and remember every candidate of ``entry`` on local date ``day``,
        for any window and patient: the full slot lists, no age check."""
        use = self.memo
        assert use is not None
        unit = entry.primary
        others = [
            replace(r, by_site={unit.site: pool}, everywhere=pool)
            for r, pool in zip(required, entry.others, strict=True)
        ]
        midnight = datetime.combine(day, wall_time(0), zone)
        lo = (midnight - _DAY_MARGIN).astimezone(UTC)
        hi = (midnight + _ONE_DAY + _DAY_MARGIN).astimezone(UTC)
        starts = unit.free.starts
        scan = self._scan(unit, others, bisect_left(starts, lo), bisect_left(starts, hi), None)
        offers = [_keyed(offer) for offer in scan if offer[4] == day]
        computed = Day(offers, [offer[0] for offer in offers])
        use.state.hold(entry, day, computed)
        return computed

    def _capped(self, runs: list[_Run], shared: set[str]) -> list[_Keyed]:
        """What the per-day cap keeps of runs of offers (each unit's in start order,
        units in order of primary asset and schedule), in start order. The cap of a
        whole memo day is remembered; a practitioner on several schedules has its
        days merged first."""
        cap = self.eff.max_offers_per_day_per_practitioner
        offers: list[_Keyed] = []
        if cap is None:
            for run in runs:
                offers += run[2]
        else:
            groups: dict[tuple[str, date], list[_Keyed]] = defaultdict(list)
            for ref, day, part, memo_day in runs:
                if ref in shared:
                    groups[ref, day] += part
                elif memo_day is None:
                    offers += self._cap(part, cap)
                else:
                    if memo_day.capped is None:
                        memo_day.capped = self._cap(part, cap)
                    offers += memo_day.capped
            for group in groups.values():
                group.sort()
                offers += self._cap(group, cap)
        if shared:
            offers.sort()
        else:
            # Runs come by primary asset and schedule, each in start order: a stable
            # sort by start alone gives the order of start, asset, schedule.
            offers.sort(key=_start_key)
        return offers

    def _cap(self, offers: list[_Keyed], cap: int) -> list[_Keyed]:
        """What the per-day cap keeps of one practitioner-day in start order."""
        return _spread(offers, cap) if self.eff.ordering == "spread" else offers[:cap]


def _order(offer: _Keyed) -> tuple[int, str, str]:
    """An offer's place among its visit type's: start, primary asset, schedule."""
    return (offer[8], offer[1], offer[2])


def _unit_order(unit: Unit) -> tuple[str, str]:
    return (unit.ref, unit.schedule.id)


_day = itemgetter(4)
_T = TypeVar("_T")


def _spread(items: list[_T], k: int) -> list[_T]:
    """``k`` items evenly spaced through ``items`` (first and last included)."""
    n = len(items)
    if n <= k:
        return items
    if k <= 1:
        return items[:k]
    return [items[round(i * (n - 1) / (k - 1))] for i in range(k)]


class _Builder:
    """Turns chosen offers into signed :class:`ProposedAppointment`.

    An answer may hold thousands of offers among a few hundred participants, so each
    participant (an immutable value) is built once per composition and shared.
    """

    def __init__(self, request: FindRequest, index: AssetIndex, sign: Signer):
        self._index = index
        self._sign = sign
        patient = request.patient
        self._patient = (
            Participant(ref=patient.ref, display=patient.display)
            if patient is not None and (patient.ref or patient.display)
            else None
        )
        self._participants: dict[tuple[str, str], Participant] = {}
        self._specialties: dict[tuple[int, int, Unit], tuple[str, ...]] = {}

    def build(self, c: _Candidate) -> ProposedAppointment:
        rule = c.rule
        participants: list[Participant] = []
        seen: set[str] = set()

        def add(ref: str, required: str) -> None:
            if ref not in seen:
                seen.add(ref)
                participants.append(self._participant(ref, required))

        primary_index, primary, _ = c.parts[0]
        add(primary.ref, "required")
        if c.site is not None:
            add(c.site, "required")
        for i, unit, _ in c.parts[1:]:  # in requirement order
            add(unit.ref, "optional" if rule.assets[i].optional else "required")
        if self._patient is not None:
            participants.append(self._patient)
        payload = ProposalPayload(
            visit_type=rule.code,
            start=c.start,
            end=c.end,
            slot_ids=c.slot_ids,
            participants=tuple(p.ref for p in participants if p.ref),
        )
        return ProposedAppointment(
            id=self._sign(payload),
            start=c.start,
            end=c.end,
            slot_ids=c.slot_ids,
            participants=tuple(participants),
            service_types=(rule.code,),
            specialties=self._specialties_of(rule, primary_index, primary),
            appointment_type=rule.appointment_type,
            visit_type_display=rule.display,
            schedule_ids=tuple(dict.fromkeys(unit.schedule.id for _, unit, _ in c.parts)),
        )

    def _participant(self, ref: str, required: str) -> Participant:
        key = (ref, required)
        participant = self._participants.get(key)
        if participant is None:
            display = self._index.actor(ref).display
            participant = self._participants[key] = Participant(
                ref=ref, display=display, required=required
            )
        return participant

    def _specialties_of(
        self, rule: VisitTypeRule, primary_index: int, primary: Unit
    ) -> tuple[str, ...]:
        key = (id(rule), primary_index, primary)  # the unit: its schedule adds codes
        found = self._specialties.get(key)
        if found is None:
            found = self._specialties[key] = _specialties(rule, primary_index, primary)
        return found


def _specialties(rule: VisitTypeRule, primary_index: int, primary: Unit) -> tuple[str, ...]:
    if rule.specialties:
        return tuple(rule.specialties)
    requirement = rule.assets[primary_index]
    if requirement.kind != "practitioner":
        return ()
    wanted = TokenSet(requirement.codes)
    return tuple(code for code in primary.codes if not wanted or wanted.matches(code))
