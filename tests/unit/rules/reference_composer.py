"""The composer as it was before the performance work, frozen as a test oracle.

``rules.composer`` indexes lazily, skips work that cannot change the answer and
stops early; this straightforward version builds every run of every asset and
materialises every candidate. ``test_rules_fast_path`` asserts both give exactly
the same appointments (ids included) and notices on random organisations.
Do not optimise this file: its value is being obviously right.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.core.domain import Actor, Participant, ProposedAppointment, Schedule, Slot
from rules.appointment_id import ProposalPayload
from rules.eligibility import age_allows, ineligible_reason
from rules.request import ComposeResult, FindRequest, InvalidFindRequest, Notice, PatientInfo
from rules.schema import KIND_RESOURCE_TYPE, EffectiveRule, RulesFile, VisitTypeRule, WeeklyHours
from rules.tokens import TokenSet

Signer = Callable[[ProposalPayload], str]


_DAY = 24 * 60


class Calendar:
    """When each site is open, per the rules file (and the EHR's stated zones)."""

    def __init__(self, rules: RulesFile, actors: Mapping[str, Actor]):
        self._rules = rules
        self._actors = actors
        self._zones: dict[str | None, ZoneInfo] = {}
        self._days: dict[tuple[str | None, date], list[tuple[datetime, datetime]]] = {}

    def zone(self, site: str | None) -> ZoneInfo:
        """The site's zone: rules override, else the EHR's, else the organisation's."""
        zone = self._zones.get(site)
        if zone is None:
            zone = self._resolve_zone(site)
            self._zones[site] = zone
        return zone

    def local_date(self, site: str | None, moment: datetime) -> date:
        return moment.astimezone(self.zone(site)).date()

    def is_open(self, site: str | None, start: datetime, end: datetime) -> bool:
        """True when ``[start, end)`` lies inside one opening range of an open day."""
        return self.open_day(site, start, end) is not None

    def open_day(self, site: str | None, start: datetime, end: datetime) -> date | None:
        """The local date of ``start`` when ``[start, end)`` is inside opening hours."""
        day = self.local_date(site, start)
        for opens, closes in self.open_ranges(site, day):
            if opens <= start and end <= closes:
                return day
        return None

    def open_ranges(self, site: str | None, day: date) -> list[tuple[datetime, datetime]]:
        key = (site, day)
        ranges = self._days.get(key)
        if ranges is None:
            ranges = self._compute(site, day)
            self._days[key] = ranges
        return ranges

    def _compute(self, site: str | None, day: date) -> list[tuple[datetime, datetime]]:
        org = self._rules.organization
        if any(closure.covers(day, site) for closure in org.closures):
            return []
        zone = self.zone(site)
        return [
            (_instant(day, a, zone), _instant(day, b, zone))
            for a, b in self._hours(site).intervals(day.weekday())
        ]

    def _hours(self, site: str | None) -> WeeklyHours:
        override = self._rules.site(site)
        if override is not None and override.opening_hours is not None:
            return override.opening_hours
        return self._rules.organization.opening_hours

    def _resolve_zone(self, site: str | None) -> ZoneInfo:
        override = self._rules.site(site)
        if override is not None and override.timezone:
            return ZoneInfo(override.timezone)
        actor = self._actors.get(site) if site else None
        if actor is not None and actor.timezone:
            try:
                return ZoneInfo(actor.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                pass  # an EHR zone we cannot read: the organisation's zone is the rule
        return ZoneInfo(self._rules.organization.timezone)


def _instant(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """Local wall-clock ``minutes`` after midnight of ``day`` as a UTC instant."""
    if minutes >= _DAY:
        day, minutes = day + timedelta(days=1), minutes - _DAY
    local = datetime.combine(day, time(minutes // 60, minutes % 60), zone)
    return local.astimezone(ZoneInfo("UTC"))


# Which actor of a schedule is the schedulable asset (the rest say where it is).
_ASSET_PRIORITY = {"Practitioner": 0, "Device": 1, "HealthcareService": 2, "Location": 3}


class Runs:
    """Disjoint sorted slots grouped into runs: contiguous ones joined, or one slot each."""

    __slots__ = ("ends", "member_starts", "members", "starts")

    def __init__(self, slots: Sequence[Slot], *, join: bool):
        self.starts: list[datetime] = []
        self.ends: list[datetime] = []
        self.members: list[list[Slot]] = []
        self.member_starts: list[list[datetime]] = []
        for slot in slots:
            if join and self.members and slot.start == self.ends[-1]:
                self.members[-1].append(slot)
                self.member_starts[-1].append(slot.start)
                self.ends[-1] = slot.end
            else:
                self.starts.append(slot.start)
                self.ends.append(slot.end)
                self.members.append([slot])
                self.member_starts.append([slot.start])

    def __bool__(self) -> bool:
        return bool(self.members)

    def cover(self, start: datetime, end: datetime) -> list[Slot] | None:
        """The slots that together cover ``[start, end)`` without a gap, or None."""
        i = bisect_right(self.starts, start) - 1
        if i < 0 or self.ends[i] < end or self.ends[i] <= start:
            return None
        members = self.members[i]
        k = bisect_right(self.member_starts[i], start) - 1
        out = []
        for slot in members[k:]:
            if slot.start >= end:
                break
            out.append(slot)
        return out

    def covers(self, start: datetime, end: datetime) -> bool:
        i = bisect_right(self.starts, start) - 1
        return i >= 0 and self.ends[i] >= end and self.ends[i] > start


def disjoint(slots: Iterable[Slot]) -> list[Slot]:
    """Free slots of one schedule sorted by start; a slot overlapping an earlier one
    is dropped (an EHR data error), so that runs never double-count time."""
    out: list[Slot] = []
    for slot in sorted(slots, key=lambda s: (s.start, -(s.end - s.start).total_seconds(), s.id)):
        if slot.end <= slot.start:
            continue
        if out and slot.start < out[-1].end:
            continue
        out.append(slot)
    return out


class Unit:
    """One asset on one schedule: its free slots and the site where they are."""

    __slots__ = ("_runs", "actor", "codes", "schedule", "site", "slots")

    def __init__(self, actor: Actor, schedule: Schedule, site: str | None, slots: list[Slot]):
        self.actor = actor
        self.schedule = schedule
        self.site = site
        self.slots = slots
        self.codes: tuple[str, ...] = tuple(dict.fromkeys((*schedule.specialties, *actor.codes)))
        self._runs: dict[tuple[object, ...], Runs] = {}

    @property
    def ref(self) -> str:
        return self.actor.ref

    def free_runs(self) -> Runs:
        """All free time, joined: what buffers around an appointment need."""
        return self.runs(Qualifier(), join=True)

    def runs(self, qualifier: Qualifier, *, join: bool) -> Runs:
        key = (qualifier.key, join)
        runs = self._runs.get(key)
        if runs is None:
            runs = Runs([s for s in self.slots if qualifier.accepts(s)], join=join)
            self._runs[key] = runs
        return runs


class Qualifier:
    """Which slots may be used for one asset of one visit type."""

    __slots__ = ("_appointment_types", "_memo", "_service_types", "_specialties", "key")

    def __init__(
        self,
        service_types: Sequence[str] = (),
        appointment_types: Sequence[str] = (),
        specialties: Sequence[str] = (),
    ):
        self.key = (tuple(service_types), tuple(appointment_types), tuple(specialties))
        self._service_types = TokenSet(service_types)
        self._appointment_types = TokenSet(appointment_types)
        self._specialties = TokenSet(specialties)
        # Slots of one organisation share a handful of code combinations.
        self._memo: dict[tuple[tuple[str, ...], ...], bool] = {}

    def accepts(self, slot: Slot) -> bool:
        """A slot qualifies unless it states values and none is wanted; an empty
        wanted list accepts everything."""
        codes = (slot.service_types, slot.appointment_types, slot.specialties)
        verdict = self._memo.get(codes)
        if verdict is None:
            verdict = (
                _ok(self._service_types, slot.service_types)
                and _ok(self._appointment_types, slot.appointment_types)
                and _ok(self._specialties, slot.specialties)
            )
            self._memo[codes] = verdict
        return verdict


def _ok(wanted: TokenSet, have: tuple[str, ...]) -> bool:
    return not wanted or not have or wanted.any_of(have)


class AssetIndex:
    """All units of a request, grouped by FHIR resource type of the asset."""

    def __init__(
        self,
        slots: Iterable[Slot],
        schedules: Mapping[str, Schedule],
        actors: Mapping[str, Actor],
    ):
        self._actors = actors
        by_schedule: dict[str, list[Slot]] = defaultdict(list)
        for slot in slots:
            if slot.status == "free":
                by_schedule[slot.schedule_id].append(slot)
        self.by_type: dict[str, list[Unit]] = defaultdict(list)
        for schedule_id in sorted(by_schedule):
            schedule = schedules.get(schedule_id)
            if schedule is None or not schedule.actor_refs:
                continue
            asset_ref = min(
                schedule.actor_refs,
                key=lambda r: _ASSET_PRIORITY.get(r.split("/", 1)[0], 9),
            )
            actor = actors.get(asset_ref) or Actor(ref=asset_ref)
            site = self._site(schedule, asset_ref)
            unit = Unit(actor, schedule, site, disjoint(by_schedule[schedule_id]))
            self.by_type[actor.resource_type].append(unit)

    def actor(self, ref: str) -> Actor:
        return self._actors.get(ref) or Actor(ref=ref)

    def ancestors(self, ref: str) -> list[str]:
        """``ref`` and the chain of ``part_of`` above it (cycles cut)."""
        chain = [ref]
        actor = self._actors.get(ref)
        while actor is not None and actor.part_of and actor.part_of not in chain:
            chain.append(actor.part_of)
            actor = self._actors.get(actor.part_of)
        return chain

    def _site(self, schedule: Schedule, asset_ref: str) -> str | None:
        """The clinic of a schedule: its other Location actor, else where the asset is,
        climbed to the top of ``part_of`` (room -> clinic, device -> room -> clinic)."""
        others = [r for r in schedule.actor_refs if r != asset_ref and r.startswith("Location/")]
        start = others[0] if others else asset_ref
        chain = self.ancestors(start)
        locations = [r for r in chain if r.startswith("Location/")]
        return locations[-1] if locations else None


def reference_compose(
    request: FindRequest,
    rules: RulesFile,
    slots: Sequence[Slot],
    schedules: Mapping[str, Schedule],
    actors: Mapping[str, Actor],
    now: datetime,
    sign: Signer,
) -> ComposeResult:
    """Proposed appointments for ``request``, ordered by start, at most ``request.count``.

    ``slots`` are the cached slots overlapping :func:`slot_fetch_window` (non-free
    ones are ignored); ``schedules`` maps schedule id and ``actors`` maps reference
    to the cached resources; ``sign`` turns a proposal into its id token.
    """
    if now.tzinfo is None:
        raise InvalidFindRequest("now must be timezone-aware")
    index = AssetIndex(slots, schedules, actors)
    calendar = Calendar(rules, actors)
    notices: list[Notice] = []
    chosen: list[_Candidate] = []
    for pref, variants in enumerate(_requested_visit_types(request, rules, notices)):
        blocked: list[Notice] = []
        offered = False
        for vt in variants:
            plan = _VisitTypePlan(request, rules.effective(vt), pref, index, calendar, now)
            offers = plan.offers(blocked)
            if offers is not None:
                offered = True
                chosen.extend(offers)
        if not offered:  # a reason matters only when no variant of the visit type applies
            notices.extend(blocked)
    chosen = _unique(sorted(chosen, key=_Candidate.final_key))
    if request.count is not None:
        chosen = chosen[: request.count]
    return ComposeResult([_build(c, request, index, sign) for c in chosen], notices)


def reference_reconstruct(
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
    result = reference_compose(request, rules, slots, schedules, actors, now, sign)
    return next((a for a in result.appointments if a.id == token), None)


def _unique(candidates: list[_Candidate]) -> list[_Candidate]:
    """Drop offers that two variants of one visit type both found (same time, same slots)."""
    seen: set[tuple[object, ...]] = set()
    out = []
    for c in candidates:
        key = (c.rule.code, c.start, c.end, tuple(s.id for _, _, slots in c.parts for s in slots))
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


@dataclass(slots=True)
class _Candidate:
    start: datetime
    end: datetime
    pref: int  # visit type's position in the request
    rule: VisitTypeRule
    primary: Unit
    site: str | None
    day: date
    rank: int  # practitioner preference
    # (requirement index, unit, slots) for the primary and every chosen other asset
    parts: list[tuple[int, Unit, list[Slot]]] = field(default_factory=list)

    def unit_key(self) -> tuple[datetime, str, str]:
        return (self.start, self.primary.ref, self.primary.schedule.id)

    def final_key(self) -> tuple[object, ...]:
        return (
            self.start,
            self.pref,
            self.primary.ref,
            self.end,
            tuple(s.id for _, _, slots in self.parts for s in slots),
        )


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
        # the lead time counts from the next whole minute, the horizon from the last
        last_minute = now.replace(second=0, microsecond=0)
        next_minute = last_minute if last_minute == now else last_minute + timedelta(minutes=1)
        self.earliest = max(request.start, next_minute + timedelta(minutes=eff.min_lead_minutes))
        self.latest = min(
            last_minute + timedelta(days=eff.max_horizon_days), request.end - self.duration
        )
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

    def offers(self, notices: list[Notice]) -> list[_Candidate] | None:
        """Selected offers, or None (with a notice) when the request rules them out."""
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
        streams = self._streams()
        if self.eff.ordering == "earliest":
            # Each stream is in start order: merge lazily and stop at _count.
            return self._take_earliest(heapq.merge(*streams, key=_Candidate.unit_key))
        return self._select([c for stream in streams for c in stream])

    def _streams(self) -> list[Iterator[_Candidate]]:
        others = [
            (i, self._by_site(self._units(i)))
            for i in range(len(self.rule.assets))
            if i != self.primary
        ]
        preference = self._preference()
        return [
            self._unit_candidates(unit, others, preference.get(unit.ref, len(preference)))
            for unit in self._primary_units()
        ]

    def _unit_candidates(
        self,
        unit: Unit,
        others: list[tuple[int, tuple[dict[str | None, list[Unit]], list[Unit]]]],
        rank: int,
    ) -> Iterator[_Candidate]:
        """Offers with ``unit`` as primary asset, in start order."""
        runs = unit.runs(self.qualifiers[self.primary], join=self.eff.join_contiguous)
        free = unit.free_runs() if (self.before or self.after) else None
        age_rule, patient = self.rule.eligibility, self.request.patient
        for t in _starts(runs, self.earliest, self.latest):
            end = t + self.duration
            cover = runs.cover(t, end)
            if cover is None:
                continue
            if free is not None and not free.covers(t - self.before, end + self.after):
                continue
            day = self.calendar.open_day(unit.site, t, end)
            if day is None or not age_allows(age_rule, patient, day):
                continue
            parts = self._other_assets(unit, t, end, others)
            if parts is None:
                continue
            parts.insert(0, (self.primary, unit, cover))
            yield _Candidate(t, end, self.pref, self.rule, unit, unit.site, day, rank, parts)

    def _take_earliest(self, merged: Iterable[_Candidate]) -> list[_Candidate]:
        """The per-day cap and ``_count`` applied to offers arriving in start order."""
        cap = self.eff.max_offers_per_day_per_practitioner
        count = self.request.count
        per_day: dict[tuple[str, date], int] = defaultdict(int)
        out: list[_Candidate] = []
        if count == 0:
            return out
        for c in merged:
            if cap is not None:
                key = (c.primary.ref, c.day)
                if per_day[key] >= cap:
                    continue
                per_day[key] += 1
            out.append(c)
            if count is not None and len(out) >= count:
                break
        return out

    def _other_assets(
        self,
        primary: Unit,
        start: datetime,
        end: datetime,
        others: list[tuple[int, tuple[dict[str | None, list[Unit]], list[Unit]]]],
    ) -> list[tuple[int, Unit, list[Slot]]] | None:
        """A free unit for every other requirement (optional ones when available)."""
        used = {primary.ref}
        parts: list[tuple[int, Unit, list[Slot]]] = []
        join = self.eff.join_contiguous
        for i, (by_site, everywhere) in others:
            requirement = self.rule.assets[i]
            pool = (
                by_site.get(primary.site, [])
                if requirement.same_location_as_practitioner and primary.site is not None
                else everywhere
            )
            found = None
            for unit in pool:
                if unit.ref in used:
                    continue
                cover = unit.runs(self.qualifiers[i], join=join).cover(start, end)
                if cover is None:
                    continue
                if (self.before or self.after) and not unit.free_runs().covers(
                    start - self.before, end + self.after
                ):
                    continue
                found = (i, unit, cover)
                break
            if found is not None:
                used.add(found[1].ref)
                parts.append(found)
            elif not requirement.optional:
                return None
        return parts

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

    @staticmethod
    def _by_site(units: list[Unit]) -> tuple[dict[str | None, list[Unit]], list[Unit]]:
        by_site: dict[str | None, list[Unit]] = defaultdict(list)
        for unit in units:
            by_site[unit.site].append(unit)
        return by_site, units

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

    def _select(self, candidates: list[_Candidate]) -> list[_Candidate]:
        """Apply the per-day cap and ``_count`` in the rule's ordering."""
        ordering = self.eff.ordering
        candidates.sort(key=_Candidate.unit_key)
        if ordering == "practitioner-preference":
            candidates.sort(key=lambda c: c.rank)  # stable: earliest first within a rank
        cap = self.eff.max_offers_per_day_per_practitioner
        if cap is not None:
            groups: dict[tuple[str, date], list[_Candidate]] = defaultdict(list)
            for c in candidates:
                groups[(c.primary.ref, c.day)].append(c)
            kept = {
                id(c)
                for group in groups.values()
                for c in (_spread(group, cap) if ordering == "spread" else group[:cap])
            }
            candidates = [c for c in candidates if id(c) in kept]
        count = self.request.count
        if count is not None:
            candidates = _spread(candidates, count) if ordering == "spread" else candidates[:count]
        return candidates


def _starts(runs: Runs, earliest: datetime, latest: datetime) -> Iterator[datetime]:
    """Candidate starts: the start of every qualifying slot in ``[earliest, latest]``."""
    first = max(bisect_right(runs.ends, earliest) - 1, 0)
    for members in runs.members[first:]:
        for slot in members:
            if slot.start > latest:
                return
            if slot.start >= earliest:
                yield slot.start


def _spread(items: list[_Candidate], k: int) -> list[_Candidate]:
    """``k`` items evenly spaced through ``items`` (first and last included)."""
    n = len(items)
    if n <= k:
        return items
    if k <= 1:
        return items[:k]
    return [items[round(i * (n - 1) / (k - 1))] for i in range(k)]


def _build(
    c: _Candidate, request: FindRequest, index: AssetIndex, sign: Signer
) -> ProposedAppointment:
    rule = c.rule
    participants: list[Participant] = []
    seen: set[str] = set()

    def add(ref: str, required: str) -> None:
        if ref not in seen:
            seen.add(ref)
            participants.append(
                Participant(ref=ref, display=index.actor(ref).display, required=required)
            )

    primary_index, primary, _ = c.parts[0]
    add(primary.ref, "required")
    if c.site is not None:
        add(c.site, "required")
    for i, unit, _ in sorted(c.parts[1:], key=lambda p: p[0]):
        add(unit.ref, "optional" if rule.assets[i].optional else "required")
    patient = request.patient
    if patient is not None and (patient.ref or patient.display):
        participants.append(Participant(ref=patient.ref, display=patient.display))
    ordered = [c.parts[0], *sorted(c.parts[1:], key=lambda p: p[0])]
    slot_ids = tuple(s.id for _, _, slots in ordered for s in slots)
    payload = ProposalPayload(
        visit_type=rule.code,
        start=c.start,
        end=c.end,
        slot_ids=slot_ids,
        participants=tuple(p.ref for p in participants if p.ref),
    )
    return ProposedAppointment(
        id=sign(payload),
        start=c.start,
        end=c.end,
        slot_ids=slot_ids,
        participants=tuple(participants),
        service_types=(rule.code,),
        specialties=_specialties(rule, primary_index, primary),
        appointment_type=rule.appointment_type,
        visit_type_display=rule.display,
        schedule_ids=tuple(dict.fromkeys(unit.schedule.id for _, unit, _ in ordered)),
    )


def _specialties(rule: VisitTypeRule, primary_index: int, primary: Unit) -> tuple[str, ...]:
    if rule.specialties:
        return tuple(rule.specialties)
    requirement = rule.assets[primary_index]
    if requirement.kind != "practitioner":
        return ()
    wanted = TokenSet(requirement.codes)
    return tuple(code for code in primary.codes if not wanted or wanted.matches(code))
