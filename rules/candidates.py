"""Candidate offers of one visit type: its primary asset's slots scanned, each
assembled into a run of contiguous slots long enough for the visit, and checked.

Separate from the other stages because this is the inner loop of ``$find``: for
each qualifying slot of a primary unit in the bookable window, the run of
contiguous slots covering the visit (:meth:`rules.assets.FreeTime.stop`, one slot
when the visit type does not join), the buffers, the opening hours, the patient's
age and the other assets (:mod:`rules.matching`). Candidates stay bare tuples
(:mod:`rules.offers`) until the ordering (:mod:`rules.ordering`) has kept them;
:meth:`VisitTypePlan.candidate` then resolves their slots. :mod:`rules.planning`
does the same from remembered days when there is an offer memo.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta

from rules.assets import AssetIndex, Qualifier, Unit, slot_ids_of
from rules.bookable import first_start, last_start
from rules.eligibility import age_allows, ineligible_reason
from rules.hours import Calendar
from rules.matching import AssetMatcher, Requirement
from rules.offers import Candidate, Offer, Part
from rules.ordering import Ordering
from rules.request import FindRequest, Notice, PatientInfo
from rules.schema import EffectiveRule

# An opening range that holds no span, with a day never used: where a scan starts.
_NO_RANGE = (datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC), date.min)


class VisitTypePlan:
    """Everything needed to compose one visit type for one request."""

    # Whether the selected offers must come in start order ($find pages merge them);
    # a caller that only collects them as a set (the rules preview) says not, and an
    # uncapped ``earliest`` visit type then skips merging its units' offers.
    ordered = True

    def __init__(
        self,
        request: FindRequest,
        eff: EffectiveRule,
        pref: int,
        index: AssetIndex,
        calendar: Calendar,
        now: datetime,
    ):
        self.request = request
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
        self.earliest = max(request.start, first_start(eff, now))
        self.latest = min(last_start(eff, now), request.end - self.duration)
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
        self.matcher = AssetMatcher(
            request,
            self.rule,
            index,
            self.primary,
            self.qualifiers,
            join=self.join,
            before=self.before,
            after=self.after,
        )
        self.find_assets = self.matcher.find_assets
        refs = request.practitioners or tuple(assets[self.primary].ids)
        self.ordering = Ordering(
            eff.ordering,
            eff.max_offers_per_day_per_practitioner,
            request.count,
            {ref: n for n, ref in enumerate(refs)},
        )

    def selected(self, notices: list[Notice]) -> tuple[Sequence[Offer], list[Requirement]] | None:
        """Selected offers, bare (built by :meth:`candidate` only if kept), and the
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
        return self.offers()

    def offers(self) -> tuple[Sequence[Offer], list[Requirement]]:
        """:meth:`selected` once the request allows the visit type, composed from the
        request's slots."""
        required, deferred = self.matcher.requirements()
        selected: list[Offer]
        streams = [self.unit_offers(unit, required) for unit in self.matcher.primary_units()]
        uncapped = self.ordering.count is None and self.ordering.per_day is None
        if self.eff.ordering == "earliest" and uncapped and not self.ordered:
            # every offer, in no particular order: the caller wants them as a set
            selected = [offer for stream in streams for offer in stream]
        elif self.eff.ordering == "earliest":
            # Each stream is in start order: merge lazily and stop at _count.
            selected = self.ordering.take_earliest(heapq.merge(*streams))
        else:
            selected = self.ordering.select([offer for stream in streams for offer in stream])
        return selected, deferred

    def primary_schedules(self) -> frozenset[str]:
        """The schedules its offers can start on (an offer's place names one)."""
        return frozenset(unit.schedule.id for unit in self.matcher.primary_units())

    def unit_offers(self, unit: Unit, required: list[Requirement]) -> Iterator[Offer]:
        """Offers with ``unit`` as primary asset, in start order: one per qualifying
        slot starting in the bookable window that passes every check."""
        starts = unit.free.starts
        first = bisect_left(starts, self.earliest)
        stop = bisect_right(starts, self.latest)
        return self.scan(unit, required, first, stop, self.request.patient)

    def scan(
        self,
        unit: Unit,
        required: list[Requirement],
        first: int,
        stop_at: int,
        patient: PatientInfo | None,
    ) -> Iterator[Offer]:
        """Offers starting at ``unit.free.slots[first:stop_at]``: each qualifying slot
        that passes every check (the patient's age on the day, when given)."""
        time = unit.free
        codes, starts, ends = time.codes, time.starts, time.ends
        accepts = self.qualifiers[self.primary].predicate
        buffered = self.buffered
        join, duration, before, after = self.join, self.duration, self.before, self.after
        open_range = self.calendar.site(unit.site).open_range
        # the opening range the last candidate was inside, and its day: none yet
        opens, closes, day = _NO_RANGE
        age_rule = self.rule.eligibility
        find_assets = self.find_assets
        ref = unit.ref
        others = None
        for i in range(first, stop_at):
            if accepts is not None and not accepts(codes[i]):
                continue
            t = starts[i]
            end = t + duration
            # Most slots are long enough by themselves: skip the call then.
            stop = i + 1 if ends[i] >= end else time.stop(i, t, end, join, accepts)
            if not stop:
                continue
            if buffered and not time.covers(t - before, end + after):
                continue
            if not (opens <= t and end <= closes):
                found = open_range(t, end)
                if found is None:
                    continue
                day, opens, closes = found
            if patient is not None and not age_allows(age_rule, patient, day):
                continue
            if required:
                others = find_assets(unit, t, end, required, {ref})
                if others is None:
                    continue
            yield (t, ref, unit, day, i, stop, others)

    def candidate(self, offer: Offer, deferred: list[Requirement]) -> Candidate:
        """A selected offer with its slots, plus the optional assets left out while
        selecting."""
        start, unit, first, stop, others = offer[0], offer[2], offer[4], offer[5], offer[6]
        end = start + self.duration
        found = list(others or ())
        if deferred:
            used = {unit.ref, *(other.ref for _, other, _, _ in found)}
            found += self.find_assets(unit, start, end, deferred, used) or []
        parts: list[Part] = [(self.primary, unit, unit.free.window(first, stop))]
        parts += [(i, other, other.free.window(a, b)) for i, other, a, b in found]
        slot_ids = tuple(sid for _, _, part in parts for sid in slot_ids_of(part))
        return Candidate(start, end, self.pref, self.rule, unit, unit.site, parts, slot_ids)
