"""Free time of each schedulable asset, as runs of slots.

A *unit* is one asset (practitioner, room, device...) on one of its schedules,
with the clinic (*site*) where that schedule's time is spent. Its free slots are
kept sorted and disjoint; :class:`Runs` groups them into maximal stretches so
that "is this asset free for all of ``[t, t+d)``, and with which slots?" is one
binary search.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from app.domain import Actor, Schedule, Slot
from rules.tokens import TokenSet

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


def covering_slots(
    slots: Iterable[Slot], start: datetime, end: datetime, *, join: bool
) -> list[Slot] | None:
    """The free slots of one schedule that cover ``[start, end)``, or None.

    With ``join`` the cover may be several contiguous slots (no gap, each starting
    where the previous ends); without, it is a single slot. Used by the composer,
    and by ``$hold``/``$book`` to re-check a proposal against the current cache.
    """
    free = [s for s in slots if s.status == "free"]
    return Runs(disjoint(free), join=join).cover(start, end)


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
