"""Why cached slots were not offered: the ``$find`` explain mode, as a pure function.

Separate from the composer on purpose: ``$find`` with explain off must not pay for
it, so nothing here runs inside the composer's loops. Instead this re-asks, slot by
slot, the questions the composer's stages ask (:class:`~rules.candidates.
VisitTypePlan` for lead time, horizon and the scan's checks, :mod:`rules.matching`
for the assets, :mod:`rules.hours` for opening hours and closures,
:mod:`rules.eligibility`), in the composer's order, and stops at the first that
says no. Each not-offered slot gets one reason: the one of the visit type that got
furthest with it (the one that came closest to offering it), with the rule's path
in the rules file. Back-to-back slots of one schedule with the same reason are one
:class:`Reason`; so is each stretch of opening hours without any cached slot (the
cache holds free slots only: that time is busy at the EHR).

Only the slots of schedules that can be the primary asset of a requested visit type
(after the request's practitioner, specialty and location filters) are explained,
plus schedules that no rule uses at all (``not-covered``); a room's or device's
slots are not offers on their own.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from app.core.domain import Actor, Schedule, Slot
from app.core.slot_columns import code_number, slot_codes
from rules.assets import AssetIndex, Unit, by_schedule_id
from rules.bookable import last_start
from rules.candidates import VisitTypePlan
from rules.eligibility import ineligible_reason
from rules.hours import Calendar
from rules.matching import Requirement
from rules.request import FindRequest, PatientInfo
from rules.schema import WEEKDAYS, Eligibility, RulesFile, VisitTypeRule
from rules.selection import choose

# The code system of the reasons (documented in the README).
NOT_OFFERED_SYSTEM = "http://slotsync.example/fhir/CodeSystem/not-offered"

# code -> display; in the order of the composer's checks (a later one got further).
CODES: dict[str, str] = {
    "not-covered": "no rule offers this schedule's asset",
    "busy": "no free slot at the EHR (busy, deleted or never offered)",
    "claimed": "held or booked through slotsync",
    "service-type": "the slot's service type is not allowed for the visit type",
    "lead-time": "within the minimum lead time",
    "horizon": "beyond the booking horizon",
    "outside-window": "the visit would end after the requested window",
    "eligibility": "the patient is not eligible",
    "no-contiguous-run": "no run of contiguous free slots is long enough for the visit",
    "buffer": "the buffer around the visit is not free",
    "holiday": "a closure (holiday)",
    "outside-hours": "outside opening hours",
    "asset-missing": "a required asset is not free",
    "day-cap": "the per-day cap of offers per practitioner is reached",
    "not-selected": "another offer took its place",
    "count-cap": "beyond the requested _count (page size)",
    "stale": "the schedule's cached availability is stale or its last sync failed",
}
_RANK = {code: n for n, code in enumerate(CODES)}


@dataclass(frozen=True, slots=True)
class Reason:
    """Why the slots ``slot_ids`` of one schedule, from ``start`` to ``end``, were not
    offered: ``code`` (of :data:`NOT_OFFERED_SYSTEM`), the rule that removed them as
    its path in the rules file (None when no rule did: busy, held), the visit type
    whose rule it is, and a sentence."""

    code: str
    schedule_id: str
    start: datetime
    end: datetime
    slot_ids: tuple[str, ...]
    rule: str | None = None
    visit_type: str | None = None
    detail: str = ""

    @property
    def display(self) -> str:
        return CODES[self.code]


@dataclass(frozen=True, slots=True)
class _Verdict:
    code: str
    rule: str | None = None
    visit_type: str | None = None
    detail: str = ""


# Shared: most explained slots get one of these, and a run compares them by identity.
_NOT_COVERED = _Verdict(
    "not-covered", "visit_types", None, "no requested visit type uses this schedule's asset"
)
_CLAIMED = _Verdict("claimed", None, None, "a hold or booking through slotsync")


def explain(
    request: FindRequest,
    rules: RulesFile,
    slots: Iterable[Slot],
    schedules: Mapping[str, Schedule],
    actors: Mapping[str, Actor],
    now: datetime,
    *,
    claimed: Collection[str] = (),
    offered: Collection[str] = (),
    stale: Mapping[str, str] | None = None,
) -> list[Reason]:
    """Why the cached slots starting in the request's window were not offered.

    ``slots``: every cached slot (any status) around the window, as wide as
    :func:`~rules.composer.slot_fetch_window` reads (buffers look outside it);
    ``claimed``: ids of slots a live claim holds; ``offered``: ids of the slots in
    the answer's offers; ``stale``: schedule id -> why its cached availability may
    be out of date. Reasons come grouped per schedule, in time order.
    """
    every = list(slots)
    claimed = frozenset(claimed)
    offered = frozenset(offered)
    free = [s for s in every if s.status == "free" and s.id not in claimed]
    by_schedule: dict[str, list[Slot]] = {sid: [] for sid in {s.schedule_id for s in every}}
    by_schedule.update(by_schedule_id(free))
    index = AssetIndex(by_schedule, schedules, actors)
    uncapped = replace(request, count=None)
    plans = _plans(uncapped, rules, index, actors, now)
    primaries: dict[str, list[_Plan]] = {}
    secondaries: set[str] = set()
    for plan in plans:
        for unit in plan.units:
            primaries.setdefault(unit.schedule.id, []).append(plan)
        for requirement in plan.required + plan.deferred:
            secondaries.update(u.schedule.id for u in requirement.everywhere)
    usable = secondaries | _primary_anywhere(request, rules, index, actors, now)
    chosen, _ = choose(uncapped, rules, index, actors, now)
    selected = {slot_id for c in chosen for slot_id in c.slot_ids}
    verdicts: dict[str, tuple[Slot, _Verdict]] = {}
    busy: dict[str, _Verdict] = {}  # one verdict object a status: runs compare by identity
    for slot in every:
        if not request.start <= slot.start < request.end or slot.id in offered:
            continue
        schedule = schedules.get(slot.schedule_id)
        if schedule is None:
            continue
        own = primaries.get(slot.schedule_id)
        if own is None:
            if slot.schedule_id in usable or not _wanted(request, schedule):
                continue
            verdict = _NOT_COVERED
        elif slot.status != "free":
            verdict = busy.get(slot.status) or busy.setdefault(
                slot.status, _Verdict("busy", None, None, f"the EHR has the slot {slot.status}")
            )
        elif slot.id in claimed:
            verdict = _CLAIMED
        elif len(own) == 1:
            verdict = own[0].verdict(slot, selected)
        else:
            verdict = max(
                (plan.verdict(slot, selected) for plan in own), key=lambda v: _RANK[v.code]
            )
        verdicts[slot.id] = (slot, verdict)
    reasons = _group(verdicts.values())
    reasons += _gaps(request, every, primaries)
    stale = stale or {}
    in_window: dict[str, list[Slot]] = {}
    for slot in every:
        inside = request.start <= slot.start < request.end
        if inside and slot.schedule_id in stale and slot.id not in offered:
            in_window.setdefault(slot.schedule_id, []).append(slot)
    for schedule_id, window in sorted(in_window.items()):
        if schedule_id in primaries or schedule_id in secondaries:
            window.sort(key=lambda s: s.start)
            reasons.append(
                Reason(
                    "stale",
                    schedule_id,
                    window[0].start,
                    max(s.end for s in window),
                    tuple(s.id for s in window),
                    None,
                    None,
                    stale[schedule_id],
                )
            )
    reasons.sort(key=lambda r: (r.schedule_id, r.start, _RANK[r.code]))
    return reasons


def coverable(
    request: FindRequest,
    rules: RulesFile,
    schedule_ids: Iterable[str],
    schedules: Mapping[str, Schedule],
    actors: Mapping[str, Actor],
    now: datetime,
) -> set[str]:
    """Of ``schedule_ids``, those a requested visit type could use at all, as its
    primary asset (whatever the request's filters) or another: :func:`explain` looks
    at the slots of these; of the others only at their times (``not-covered``).

    Which schedules a plan uses does not depend on their slots, so a reader can ask
    this before it reads any, and read the others' times only."""
    index = AssetIndex({sid: [] for sid in schedule_ids}, schedules, actors)
    out = _primary_anywhere(request, rules, index, actors, now)
    for plan in _plans(replace(request, count=None), rules, index, actors, now):
        for requirement in plan.required + plan.deferred:
            out.update(u.schedule.id for u in requirement.everywhere)
    return out


def _primary_anywhere(
    request: FindRequest,
    rules: RulesFile,
    index: AssetIndex,
    actors: Mapping[str, Actor],
    now: datetime,
) -> set[str]:
    """Schedules a requested visit type could use as its primary asset, whatever the
    request's practitioner, specialty and location filters."""
    bare = FindRequest(start=request.start, end=request.end, visit_types=request.visit_types)
    return {u.schedule.id for plan in _plans(bare, rules, index, actors, now) for u in plan.units}


def _gaps(
    request: FindRequest, every: Sequence[Slot], primaries: Mapping[str, list[_Plan]]
) -> list[Reason]:
    """Opening hours in the window where a schedule has no cached slot at all.

    The cache holds free slots only: a slot the EHR has busy, or deleted, is simply
    not there. So "why not Tuesday 10:00?" is often answered by the gap itself."""
    held: dict[str, list[tuple[datetime, datetime]]] = {sid: [] for sid in primaries}
    for slot in every:
        own_spans = held.get(slot.schedule_id)  # only the primaries' (rooms' are most slots)
        if own_spans is not None:
            own_spans.append((slot.start, slot.end))
    out = []
    for schedule_id, own in primaries.items():
        plan = own[0]
        unit = plan.units_by_schedule[schedule_id]
        spans = _Spans(sorted(held[schedule_id]))
        hours = plan.plan.calendar.site(unit.site)
        day = request.start.astimezone(hours.zone).date() - timedelta(days=1)
        last = request.end.astimezone(hours.zone).date()
        while day <= last:
            for opens, closes in hours.ranges(day):
                low, high = max(opens, request.start), min(closes, request.end)
                for start, end in spans.uncovered(low, high):
                    out.append(
                        Reason(
                            "busy",
                            schedule_id,
                            start,
                            end,
                            (),
                            None,
                            None,
                            "no cached free slot in opening hours (busy at the EHR, or none)",
                        )
                    )
            day += timedelta(days=1)
    return out


class _Spans:
    """Spans sorted by start, asked for the uncovered parts of one range after another:
    each question starts at its range (a bisection), not at the first span."""

    def __init__(self, spans: Sequence[tuple[datetime, datetime]]):
        self.spans = spans
        self.starts = [start for start, _ in spans]
        self.reach: list[datetime] = []  # the latest end of spans[: k + 1]
        for _, end in spans:
            self.reach.append(max(self.reach[-1], end) if self.reach else end)

    def uncovered(self, low: datetime, high: datetime) -> Iterable[tuple[datetime, datetime]]:
        k = bisect_left(self.starts, low)
        # the spans starting before ``low`` only move the cursor to their latest end
        cursor = max(low, self.reach[k - 1]) if k else low
        for start, end in self.spans[k:]:
            if cursor >= high or start >= high:
                break
            if end <= cursor:
                continue
            if start > cursor:
                yield cursor, start
            cursor = max(cursor, end)
        if cursor < high:
            yield cursor, high


def _wanted(request: FindRequest, schedule: Schedule) -> bool:
    """Whether the request's practitioner, location and specialty filters leave
    ``schedule`` in (for the schedules no rule uses: the others are filtered as the
    composer filters them)."""
    refs = set(schedule.actor_refs)
    if request.practitioners and refs.isdisjoint(request.practitioners):
        return False
    if request.locations and refs.isdisjoint(request.locations):
        return False
    return not (
        request.specialties
        and schedule.specialties
        and set(request.specialties).isdisjoint(schedule.specialties)
    )


def _group(verdicts: Iterable[tuple[Slot, _Verdict]]) -> list[Reason]:
    """Neighbouring slots of a schedule with one verdict, as one reason each."""
    ordered = sorted(verdicts, key=lambda sv: (sv[0].schedule_id, sv[0].start, sv[0].id))
    out: list[Reason] = []
    run: list[Slot] = []
    current: tuple[str, _Verdict] | None = None
    reach = datetime.min.replace(tzinfo=UTC)  # where the run's slots end

    def close() -> None:
        if current is not None and run:
            verdict = current[1]
            out.append(
                Reason(
                    verdict.code,
                    current[0],
                    run[0].start,
                    reach,
                    tuple(s.id for s in run),
                    verdict.rule,
                    verdict.visit_type,
                    verdict.detail,
                )
            )

    for slot, verdict in ordered:
        key = (slot.schedule_id, verdict)
        # a gap (time with no cached slot) ends a range: it has a reason of its own
        if key != current or slot.start > reach:
            close()
            run, current, reach = [], key, slot.end
        run.append(slot)
        if slot.end > reach:
            reach = slot.end
    close()
    return out


class _Plan:
    """One visit type's composition plan, asked about one slot at a time."""

    def __init__(
        self,
        rules: RulesFile,
        vt: VisitTypeRule,
        position: int,
        plan: VisitTypePlan,
        now: datetime,
    ):
        self.rules = rules
        self.now = now
        self.vt = vt
        self.at = f"visit_types[{position}]"
        self.plan = plan
        self.units = plan.matcher.primary_units()
        self.required, self.deferred = plan.matcher.requirements()
        self.accepts = plan.qualifiers[plan.primary].predicate
        self.units_by_schedule = {u.schedule.id: u for u in self.units}

    def _path(self, field: str, own: object) -> str:
        """Where a value comes from: the visit type's own, else ``defaults``."""
        return f"{self.at}.{field}" if own is not None else f"defaults.{field}"

    def verdict(self, slot: Slot, selected: Collection[str]) -> _Verdict:
        plan, vt, code = self.plan, self.vt, self.vt.code

        def no(kind: str, rule: str | None, detail: str) -> _Verdict:
            return _Verdict(kind, rule, code, detail)

        if self.accepts is not None and not self.accepts(code_number(slot_codes(slot))):
            asset = vt.assets[plan.primary]
            where = (
                f"{self.at}.assets[{plan.primary}].slot_service_types"
                if asset.slot_service_types is not None
                else f"{self.at}.slot_service_types"
            )
            listed = ", ".join(slot.service_types) or "none"
            return no("service-type", where, f"slot service types {listed} do not qualify")
        t = slot.start
        end = t + plan.duration
        if t < plan.earliest:
            minutes = plan.eff.min_lead_minutes
            return no(
                "lead-time",
                self._path("min_lead_minutes", vt.min_lead_minutes),
                f"bookable from {minutes} minutes after now",
            )
        if t > last_start(plan.eff, self.now):
            days = plan.eff.max_horizon_days
            return no(
                "horizon",
                self._path("max_horizon_days", vt.max_horizon_days),
                f"bookable up to {days} days ahead",
            )
        if t > plan.latest:
            return no(
                "outside-window",
                f"{self.at}.duration_minutes",
                f"a {vt.duration_minutes}-minute visit would end after the window",
            )
        unit = self.units_by_schedule[slot.schedule_id]
        site_hours = plan.calendar.site(unit.site)
        local_day = t.astimezone(site_hours.zone).date()
        patient = plan.request.patient
        field = _ineligible_field(vt.eligibility, patient, local_day)
        if field is not None:
            reason = ineligible_reason(vt.eligibility, patient, local_day, local_day)
            return no("eligibility", f"{self.at}.eligibility.{field}", reason or "")
        time = unit.free
        i = bisect_left(time.starts, t)
        held = i < len(time.starts) and time.slots[i].id == slot.id  # not dropped as overlapping
        stop = time.stop(i, t, end, plan.join, self.accepts) if held else 0
        if not stop:
            return no(
                "no-contiguous-run",
                self._path("join_contiguous", vt.join_contiguous)
                if not plan.join and slot.end < end
                else f"{self.at}.duration_minutes",
                f"needs {vt.duration_minutes} contiguous free minutes"
                + ("" if plan.join else " in one slot (join_contiguous is off)"),
            )
        if plan.buffered and not time.covers(t - plan.before, end + plan.after):
            before_free = time.covers(t - plan.before, end)
            field_name = "buffer_after_minutes" if before_free else "buffer_before_minutes"
            own = vt.buffer_after_minutes if before_free else vt.buffer_before_minutes
            minutes = (
                plan.eff.buffer_after_minutes if before_free else plan.eff.buffer_before_minutes
            )
            side = "after" if before_free else "before"
            return no(
                "buffer",
                self._path(field_name, own),
                f"{minutes} free minutes needed {side} the visit",
            )
        closure = self._closure(unit.site, local_day)
        if closure is not None:
            return no("holiday", closure[0], closure[1])
        if site_hours.open_day(t, end) is None:
            path, ranges = self._hours(unit.site, local_day)
            return no(
                "outside-hours",
                path,
                f"a {vt.duration_minutes}-minute visit does not fit inside the opening hours"
                f" ({', '.join(ranges) or 'closed'})",
            )
        if self.required:
            missing = self._missing_asset(unit, t, end)
            if missing is not None:
                asset = vt.assets[missing.index]
                return no(
                    "asset-missing",
                    f"{self.at}.assets[{missing.index}]",
                    f"no {asset.kind} free for the whole visit"
                    + (" at the same clinic" if missing.same_site else ""),
                )
        if slot.id in selected:
            return no("count-cap", "_count", "offered beyond the page the request asked for")
        cap = plan.eff.max_offers_per_day_per_practitioner
        if cap is not None:
            return no(
                "day-cap",
                self._path(
                    "max_offers_per_day_per_practitioner", vt.max_offers_per_day_per_practitioner
                ),
                f"at most {cap} offers a day per practitioner",
            )
        return no("not-selected", f"{self.at}.ordering", "another offer at this time came first")

    def _closure(self, site: str | None, day: date) -> tuple[str, str] | None:
        for k, closure in enumerate(self.rules.organization.closures):
            if closure.covers(day, site):
                return f"organization.closures[{k}]", f"closed: {closure.name or day.isoformat()}"
        return None

    def _hours(self, site: str | None, day: date) -> tuple[str, list[str]]:
        """Where the day's opening hours of ``site`` are in the rules file, and them."""
        weekday = WEEKDAYS[day.weekday()]
        for k, override in enumerate(self.rules.organization.sites):
            if override.ref == site and override.opening_hours is not None:
                ranges = getattr(override.opening_hours, weekday)
                return f"organization.sites[{k}].opening_hours.{weekday}", ranges
        ranges = getattr(self.rules.organization.opening_hours, weekday)
        return f"organization.opening_hours.{weekday}", ranges

    def _missing_asset(self, unit: Unit, start: datetime, end: datetime) -> Requirement | None:
        """The first required asset no free unit fills, as the composer looks for them."""
        used = {unit.ref}
        for requirement in self.required:
            found = self.plan.matcher.find_assets(unit, start, end, [requirement], used)
            if found is None:
                return requirement
        return None


def _ineligible_field(rule: Eligibility, patient: PatientInfo | None, day: date) -> str | None:
    """The eligibility field that rules the patient out on ``day``, or None."""
    reason = ineligible_reason(rule, patient, day, day)
    if reason is None:
        return None
    if "gender" in reason:
        return "genders"
    if "or older" in reason:
        return "min_age_years"
    if "or younger" in reason:
        return "max_age_years"
    return "patient_status"


def _plans(
    request: FindRequest,
    rules: RulesFile,
    index: AssetIndex,
    actors: Mapping[str, Actor],
    now: datetime,
) -> Sequence[_Plan]:
    """A plan per requested visit type (and variant), as the composer makes them."""
    calendar = Calendar(rules, actors)
    positions = {id(vt): n for n, vt in enumerate(rules.visit_types)}
    wanted = (
        [vt for code in request.visit_types for vt in rules.visit_types_for(code)]
        if request.visit_types
        else list(rules.visit_types)
    )
    seen: set[int] = set()
    out = []
    for pref, vt in enumerate(wanted):
        if id(vt) in seen:
            continue
        seen.add(id(vt))
        plan = VisitTypePlan(request, rules.effective(vt), pref, index, calendar, now)
        out.append(_Plan(rules, vt, positions[id(vt)], plan, now))
    return out
