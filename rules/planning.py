"""Candidates from the offer memo: a visit type's plan for a request's filters and
the remembered days of its primary units, merged, capped and cut to the window.

Separate from :mod:`rules.candidates` because it is a second way to the same
answer: with an offer memo (:mod:`rules.offer_memo`) the candidates of each whole
local day are scanned once and kept, and a request only takes, cuts and caps days.
:class:`MemoisedPlan` is the :class:`~rules.candidates.VisitTypePlan` used then;
the oracle tests hold both to one reference.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import time as wall_time
from itertools import chain, groupby, pairwise
from operator import itemgetter

from rules.assets import AssetIndex, Unit
from rules.candidates import VisitTypePlan
from rules.eligibility import age_allows
from rules.hours import Calendar
from rules.joined import Joined
from rules.matching import Requirement
from rules.offer_memo import Basis, Day, Entry, MemoState
from rules.offers import Offer, remembered
from rules.request import FindRequest
from rules.schema import EffectiveRule

_start = itemgetter(0)
_day = itemgetter(3)
_ONE_DAY = timedelta(days=1)
# Wider than any UTC offset change around a local midnight: a day's offers are
# searched this far beyond it, then kept by their local date.
_DAY_MARGIN = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class MemoUse:
    """The memo state of one composition, its basis, the schedules that have
    slots taken in this request (their offers are composed as without a memo), and
    whether the request's index is the memo's shared one (then plans made against
    it are kept for the next requests)."""

    state: MemoState
    basis: Basis
    dirty: frozenset[str]
    shared: bool


@dataclass(slots=True)
class MergedDay:
    """What the per-day cap keeps of every primary unit of a plan on one local day,
    merged in start order (then primary asset and schedule), with every start of
    all their offers: a request whose window holds them all takes the day whole."""

    offers: list[Offer]
    starts: list[datetime]  # each start among the units' offers of the day (uncapped), sorted
    # span (see below) -> the day cut to a window holding those starts: windows recur
    # (this week, from tomorrow...), and a cut goes through every unit
    cuts: dict[tuple[int, int], list[Offer]] = field(default_factory=dict)

    def inside(self, earliest: datetime, latest: datetime) -> bool:
        """Whether every offer of the day starts from ``earliest`` to ``latest``."""
        starts = self.starts
        return not starts or (earliest <= starts[0] and starts[-1] <= latest)

    def span(self, earliest: datetime, latest: datetime) -> tuple[int, int]:
        """Which of the day's starts a window from ``earliest`` to ``latest`` holds, as
        ``(first, stop)`` positions in :attr:`starts`. Two windows holding the same
        starts cut the day alike whatever their bounds, so the cut is remembered by
        this: a window reaching the horizon ends at ``now`` + the horizon, a new
        instant every request, and keyed by its bounds the last day's cut (every unit
        of the plan gone through again) was never found."""
        return bisect_left(self.starts, earliest), bisect_right(self.starts, latest)


@dataclass(slots=True)
class Plan:
    """One visit type's primary units (in unit order), other assets and memo entries
    for one set of request filters, made against one index, with the days merged so
    far. While the index is the same shared object, every request with the same
    filters reuses it: the per-request work is then the days of its window, not
    the units."""

    index: AssetIndex
    units: list[Unit]
    required: list[Requirement]
    deferred: list[Requirement]
    entries: list[Entry | None]  # per unit; None: composed from the request's slots
    zones: list[tzinfo]  # per unit, of its site
    shared: set[str]  # practitioners with several schedules among the units
    days: dict[date, MergedDay]  # by local date (each unit's own zone)
    schedules: frozenset[str] | None = None  # of the units, once asked


# Offers of one primary unit on one local day, in start order: (ref, day, offers,
# the memo's whole day when the offers are all of it, else None).
Run = tuple[str, date, list[Offer], Day | None]


class MemoisedPlan(VisitTypePlan):
    """A visit type composed for one request from the memo's days where it can."""

    def __init__(
        self,
        request: FindRequest,
        eff: EffectiveRule,
        pref: int,
        index: AssetIndex,
        calendar: Calendar,
        now: datetime,
        memo: MemoUse,
    ):
        super().__init__(request, eff, pref, index, calendar, now)
        self.memo = memo

    def offers(self) -> tuple[Sequence[Offer], list[Requirement]]:
        """The selection from the plan's days, and the optional assets to look up."""
        plan = self._plan()
        return self._select_planned(plan), plan.deferred

    def primary_schedules(self) -> frozenset[str]:
        plan = self._plan()
        if plan.schedules is None:
            plan.schedules = frozenset(unit.schedule.id for unit in plan.units)
        return plan.schedules

    def _plan(self) -> Plan:
        """The plan of this visit type for the request's filters: the memo's when it
        was made against this very index, else made now (and kept when the index is
        shared)."""
        use = self.memo
        request = self.request
        key = (
            id(self.rule),
            request.practitioners,
            request.specialties,
            request.locations,
            request.location_strings,
        )
        plan: Plan | None = use.state.plan(key, self.index)
        if plan is not None:
            return plan
        units = sorted(self.matcher.primary_units(), key=_unit_order)
        required, deferred = self.matcher.requirements()
        refs = [unit.ref for unit in units]
        plan = Plan(
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

    def _select_planned(self, plan: Plan) -> Sequence[Offer]:
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
        parts: list[list[Offer]] = []  # the days' offers, each a list the plan keeps
        in_order = True
        day = first
        while day is not None and last is not None and day <= last:
            if patient is None or age_allows(age_rule, patient, day):
                merged = plan.days.get(day) or self._merge_day(plan, day)
                part: list[Offer] | None  # a list again once the cut is looked up or made
                if merged.inside(earliest, latest):
                    part = merged.offers
                else:
                    span = merged.span(earliest, latest)
                    part = merged.cuts.get(span)
                    if part is None:
                        part = self._cut_day(plan, day) if span[0] < span[1] else []
                        if len(merged.cuts) >= 8:
                            merged.cuts.clear()
                        merged.cuts[span] = part
                if part:
                    if parts and _order(part[0]) < _order(parts[-1][-1]):
                        in_order = False
                    parts.append(part)
            day += _ONE_DAY
        joined = Joined(parts)
        count = self.request.count
        if self.eff.ordering == "earliest" and in_order:
            return joined if count is None else joined.head(count)
        offers = list(joined)
        if not in_order:
            offers.sort()  # by start, primary asset, schedule (unique in a visit type)
        if self.eff.ordering == "earliest":
            return offers if count is None else offers[:count]
        return self.ordering.rank_and_count(offers)  # type: ignore[arg-type,return-value]

    def _merge_day(self, plan: Plan, day: date) -> MergedDay:
        """Merge (and remember) the capped whole-day offers of every unit of ``plan``."""
        runs: list[Run] = []
        starts: set[datetime] = set()
        for unit, entry, zone in zip(plan.units, plan.entries, plan.zones, strict=True):
            assert entry is not None
            memo_day = entry.days.get(day) or self._memo_day(entry, plan.required, day, zone)
            if memo_day.offers:
                runs.append((unit.ref, day, memo_day.offers, memo_day))
                starts.update(map(_start, memo_day.offers))
        merged = plan.days[day] = MergedDay(self._capped(runs, plan.shared), sorted(starts))
        return merged

    def _cut_day(self, plan: Plan, day: date) -> list[Offer]:
        """The capped offers of every unit of ``plan`` on ``day`` that start in the
        bookable window, in order."""
        runs = []
        for unit, entry, zone in zip(plan.units, plan.entries, plan.zones, strict=True):
            assert entry is not None
            run = self._day_run(unit, entry, plan.required, day, day, day, zone)
            if run is not None:
                runs.append(run)
        return self._capped(runs, plan.shared)

    def _select_memoised(self, plan: Plan) -> list[Offer]:
        """:meth:`offers`' selection unit by unit from the memo's days (what
        :meth:`Ordering.select` and :meth:`Ordering.take_earliest` would select from
        :meth:`unit_offers`), for plans whose days cannot be merged."""
        per_unit = [
            self._runs(unit, entry, plan.required)
            for unit, entry in zip(plan.units, plan.entries, strict=True)
        ]
        if self.eff.ordering == "earliest":
            streams = [chain.from_iterable(run[2] for run in runs) for runs in per_unit]
            return self.ordering.take_earliest(heapq.merge(*streams))  # type: ignore[return-value]
        runs = [run for unit_runs in per_unit for run in unit_runs]
        return self.ordering.rank_and_count(self._capped(runs, plan.shared))  # type: ignore[arg-type,return-value]

    def _runs(self, unit: Unit, entry: Entry | None, required: list[Requirement]) -> list[Run]:
        """The offers of ``unit`` in the request, per local day: the memo's days cut to
        the bookable window, less the days the patient's age rules out; composed
        from the request's slots when the memo cannot serve the unit (no entry)."""
        if entry is None:
            offers = [remembered(offer) for offer in self.unit_offers(unit, required)]
            return [(unit.ref, day, list(run), None) for day, run in groupby(offers, _day)]
        zone = self.calendar.zone(unit.site)
        first, last = self.earliest.astimezone(zone).date(), self.latest.astimezone(zone).date()
        age_rule, patient = self.rule.eligibility, self.request.patient
        runs: list[Run] = []
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
        required: list[Requirement],
        day: date,
        first: date,
        last: date,
        zone: tzinfo,
    ) -> Run | None:
        """The memo's offers of ``unit`` on ``day`` cut to the bookable window (which
        spans local days ``first`` to ``last``); None when there are none."""
        memo_day = entry.days.get(day) or self._memo_day(entry, required, day, zone)
        offers = memo_day.offers
        a, b = 0, len(offers)
        if day == first:
            a = bisect_left(offers, self.earliest, key=_start)
        if day == last:
            b = bisect_right(offers, self.latest, key=_start)
        if a == 0 and b == len(offers):
            return (unit.ref, day, offers, memo_day) if offers else None
        return (unit.ref, day, offers[a:b], None) if a < b else None

    def _memo_entry(self, unit: Unit, required: list[Requirement]) -> Entry | None:
        """The memo entry of primary ``unit`` with the other assets this request could
        pair it with; None when slots of any of them are taken in this request, or
        the memo cannot hold them."""
        use = self.memo
        dirty = use.dirty
        if unit.schedule.id in dirty:
            return None
        pools = tuple(tuple(u.schedule.id for u in r.pool(unit.site)) for r in required)
        if dirty and any(sid in dirty for pool in pools for sid in pool):
            return None
        return use.state.entry(id(self.rule), unit.schedule.id, pools, use.basis)

    def _memo_day(self, entry: Entry, required: list[Requirement], day: date, zone: tzinfo) -> Day:
        """Compute and remember every candidate of ``entry`` on local date ``day``,
        for any window and patient: the full slot lists, no age check."""
        use = self.memo
        unit = entry.primary
        others = [
            replace(r, by_site={unit.site: pool}, everywhere=pool)
            for r, pool in zip(required, entry.others, strict=True)
        ]
        midnight = datetime.combine(day, wall_time(0), zone)
        lo = (midnight - _DAY_MARGIN).astimezone(UTC)
        hi = (midnight + _ONE_DAY + _DAY_MARGIN).astimezone(UTC)
        starts = unit.free.starts
        scan = self.scan(unit, others, bisect_left(starts, lo), bisect_left(starts, hi), None)
        share = use.state.share_others
        offers = [remembered(offer, share) for offer in scan if offer[3] == day]
        computed = Day(offers)
        use.state.hold(entry, day, computed)
        return computed

    def _capped(self, runs: list[Run], shared: set[str]) -> list[Offer]:
        """What the per-day cap keeps of runs of offers (each unit's in start order,
        units in order of primary asset and schedule), in start order. The cap of a
        whole memo day is remembered; a practitioner on several schedules has its
        days merged first."""
        cap = self.eff.max_offers_per_day_per_practitioner
        offers: list[Offer] = []
        if cap is None:
            for run in runs:
                offers += run[2]
        else:
            cap_day = self.ordering.cap
            groups: dict[tuple[str, date], list[Offer]] = defaultdict(list)
            for ref, day, part, memo_day in runs:
                if ref in shared:
                    groups[ref, day] += part
                elif memo_day is None:
                    offers += cap_day(part, cap)
                else:
                    if memo_day.capped is None:
                        memo_day.capped = cap_day(part, cap)
                    offers += memo_day.capped
            for group in groups.values():
                group.sort()
                offers += cap_day(group, cap)
        if shared:
            offers.sort()
        else:
            # Runs come by primary asset and schedule, each in start order: a stable
            # sort by start alone gives the order of start, asset, schedule.
            offers.sort(key=_start)
        return offers


def _order(offer: Offer) -> tuple[datetime, str, str]:
    """An offer's place among its visit type's: start, primary asset, schedule."""
    return (offer[0], offer[1], offer[2].schedule.id)


def _unit_order(unit: Unit) -> tuple[str, str]:
    return (unit.ref, unit.schedule.id)
