"""Free time of each schedulable asset, as sorted slots searched by binary search.

A *unit* is one asset (practitioner, room, device...) on one of its schedules,
with the clinic (*site*) where that schedule's time is spent. Its free slots are
kept sorted and disjoint in a :class:`FreeTime`, so that "is this asset free for
all of ``[t, t+d)``, and with which slots?" is one binary search and a short walk
over contiguous slots.

This is the hot path of ``$find``: a request may bring a quarter of a million
slots of which it uses a fraction. So a unit sorts its slots only when first
asked (and not at all when they arrive sorted, as the cache returns them), every
visit type searches the unit's one sorted list, and whether a slot qualifies for a
visit type (its codes) is asked only of the slots a search reaches, memoised per
code combination: a room's slots are looked at near the offers that need the room,
not all of them.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from operator import attrgetter, le, lt

from app.core.domain import Actor, Schedule, Slot
from app.core.slot_columns import Codes, SlotColumns, code_number, numbered_codes
from rules.tokens import TokenSet

# Which actor of a schedule is the schedulable asset (the rest say where it is).
_ASSET_PRIORITY = {"Practitioner": 0, "Device": 1, "HealthcareService": 2, "Location": 3}

# Whether a slot qualifies, asked of its code combination's number (:attr:`FreeTime.codes`).
Accepts = Callable[[int], bool]
# The codes a Qualifier looks at, as one hashable value per slot.
_codes: attrgetter[Codes] = attrgetter("service_types", "appointment_types", "specialties")


class FreeTime:
    """Disjoint, non-empty slots sorted by start, with their starts, ends and code
    numbers (:func:`~app.core.slot_columns.code_number`) as sequences.

    Searches answer with index spans into :attr:`slots` rather than lists of
    slots: the composer tries far more spans than it keeps, and reading lists of
    datetimes is cheaper than visiting the slot objects. Slots held as columns
    (:class:`SlotColumns`, the slot index's) are searched in their own lists, and
    a slot object is made only for the spans an offer keeps.
    """

    __slots__ = ("codes", "ends", "slots", "starts")

    def __init__(self, slots: Sequence[Slot]):
        self.slots = slots
        self.codes: Sequence[int]
        if isinstance(slots, SlotColumns):
            self.starts, self.ends, self.codes = slots.starts, slots.ends, slots.codes
        else:
            self.starts = [s.start for s in slots]
            self.ends = [s.end for s in slots]
            self.codes = [code_number(_codes(s)) for s in slots]

    def span(
        self, start: datetime, end: datetime, join: bool, accepts: Accepts | None = None
    ) -> tuple[int, int] | None:
        """``(i, stop)`` such that ``slots[i:stop]`` cover ``[start, end)`` without a
        gap, or None. Without ``join`` that is one slot; with it, the slot holding
        ``start`` and the ones following it back to back. With ``accepts``, only
        slots it accepts count (the others are gaps)."""
        i = bisect_right(self.starts, start) - 1
        if i < 0 or (accepts is not None and not accepts(self.codes[i])):
            return None
        stop = self.stop(i, start, end, join, accepts)
        return (i, stop) if stop else None

    def stop(
        self, i: int, start: datetime, end: datetime, join: bool, accepts: Accepts | None = None
    ) -> int:
        """:meth:`span` when ``slots[i]`` is known to be the last slot starting at or
        before ``start``, and accepted: the end of the span, or 0 when there is none."""
        reach = self.ends[i]
        if reach >= end:
            return i + 1 if reach > start else 0
        if not join or reach <= start:
            return 0
        codes, starts, ends = self.codes, self.starts, self.ends
        n = i + 1
        while n < len(starts) and starts[n] == reach:
            if accepts is not None and not accepts(codes[n]):
                return 0
            reach = ends[n]
            n += 1
            if reach >= end:
                return n
        return 0

    def window(self, first: int, stop: int) -> Sequence[Slot]:
        """``slots[first:stop]``; held as columns, still columns (no slot made)."""
        slots = self.slots
        if isinstance(slots, SlotColumns):
            return slots.part(first, stop)
        return slots[first:stop]

    def cover(self, start: datetime, end: datetime, join: bool) -> list[Slot] | None:
        """The slots of :meth:`span`, or None."""
        found = self.span(start, end, join)
        return None if found is None else list(self.slots[found[0] : found[1]])

    def covers(self, start: datetime, end: datetime) -> bool:
        """Whether contiguous slots cover ``[start, end)`` (buffers around a visit)."""
        return self.span(start, end, True) is not None


def slot_ids_of(slots: Sequence[Slot]) -> list[str]:
    """The ids of ``slots``, read from the columns when they are held so."""
    if isinstance(slots, SlotColumns):
        return slots.ids()
    return [slot.id for slot in slots]


def disjoint(slots: Iterable[Slot]) -> list[Slot]:
    """Free slots of one schedule sorted by start; a slot overlapping an earlier one
    is dropped (an EHR data error), so that free time is never counted twice."""
    out: list[Slot] = []
    for slot in sorted(slots, key=lambda s: (s.start, -(s.end - s.start).total_seconds(), s.id)):
        if slot.end <= slot.start:
            continue
        if out and slot.start < out[-1].end:
            continue
        out.append(slot)
    return out


def _free_time(slots: Sequence[Slot]) -> FreeTime:
    """:func:`disjoint` of ``slots`` as FreeTime, without sorting when they already are
    in order, non-empty and non-overlapping (then :func:`disjoint` keeps them as
    they are: the starts strictly increase, so the sort key never looks further)."""
    time = FreeTime(slots)
    starts, ends = time.starts, time.ends
    if all(map(lt, starts, ends)) and all(map(le, ends, starts[1:])):
        return time
    return FreeTime(disjoint(slots))


def covering_slots(
    slots: Iterable[Slot], start: datetime, end: datetime, *, join: bool
) -> list[Slot] | None:
    """The free slots of one schedule that cover ``[start, end)``, or None.

    With ``join`` the cover may be several contiguous slots (no gap, each starting
    where the previous ends); without, it is a single slot: the composer's rule, for
    ``$hold``/``$book`` to re-check a proposal against the current cache.
    """
    free = [s for s in slots if s.status == "free"]
    return FreeTime(disjoint(free)).cover(start, end, join)


class Qualifier:
    """Which slots may be used for one asset of one visit type.

    The slots of an organisation share a handful of code combinations, so the
    verdict is worked out once per combination, by its number.
    """

    __slots__ = ("_appointment_types", "_memo", "_service_types", "_specialties")

    def __init__(
        self,
        service_types: Sequence[str] = (),
        appointment_types: Sequence[str] = (),
        specialties: Sequence[str] = (),
    ):
        self._service_types = TokenSet(service_types)
        self._appointment_types = TokenSet(appointment_types)
        self._specialties = TokenSet(specialties)
        self._memo: dict[int, bool] = {}

    @property
    def predicate(self) -> Accepts | None:
        """:meth:`accepts_codes`, or None when every slot qualifies (nothing to check)."""
        if self._service_types or self._appointment_types or self._specialties:
            return self.accepts_codes
        return None

    def accepts(self, slot: Slot) -> bool:
        """A slot qualifies unless it states values and none is wanted; an empty
        wanted list accepts everything."""
        return self.accepts_codes(code_number(_codes(slot)))

    def accepts_codes(self, number: int) -> bool:
        """:meth:`accepts` of a slot with the code combination numbered ``number``."""
        verdict = self._memo.get(number)
        if verdict is None:
            service_types, appointment_types, specialties = numbered_codes(number)
            verdict = (
                _ok(self._service_types, service_types)
                and _ok(self._appointment_types, appointment_types)
                and _ok(self._specialties, specialties)
            )
            self._memo[number] = verdict
        return verdict


def _ok(wanted: TokenSet, have: tuple[str, ...]) -> bool:
    return not wanted or not have or wanted.any_of(have)


class Unit:
    """One asset on one schedule: its free slots and the site where they are."""

    __slots__ = ("_free", "_raw", "actor", "codes", "ref", "schedule", "site")

    def __init__(self, actor: Actor, schedule: Schedule, site: str | None, slots: Sequence[Slot]):
        self.actor = actor
        self.ref = actor.ref
        self.schedule = schedule
        self.site = site
        self.codes: tuple[str, ...] = tuple(dict.fromkeys((*schedule.specialties, *actor.codes)))
        self._raw = slots  # free slots in arrival order, sorted on first use
        self._free: FreeTime | None = None

    def __lt__(self, other: Unit) -> bool:
        """By schedule id: offers (:data:`rules.offers.Offer`) sort as tuples by start,
        asset and then unit, which must mean its schedule. Equality stays identity."""
        return self.schedule.id < other.schedule.id

    def __gt__(self, other: Unit) -> bool:
        return self.schedule.id > other.schedule.id

    @property
    def free(self) -> FreeTime:
        """All free slots, sorted; whether one qualifies for a visit type is asked of
        a :class:`Qualifier` for the slots a search actually reaches."""
        if self._free is None:
            self._free = _free_time(self._raw)
        return self._free


def by_schedule_id(slots: Iterable[Slot]) -> dict[str, list[Slot]]:
    """The free ones of ``slots`` per schedule, in the order given."""
    grouped: dict[str, list[Slot]] = defaultdict(list)
    for slot in slots:
        if slot.status == "free":
            grouped[slot.schedule_id].append(slot)
    return grouped


class AssetIndex:
    """All units of a request, grouped by FHIR resource type of the asset.

    Building it only groups slots by schedule; each unit sorts its own slots when
    a visit type first needs them.
    """

    def __init__(
        self,
        slots: Iterable[Slot] | Mapping[str, Sequence[Slot]],
        schedules: Mapping[str, Schedule],
        actors: Mapping[str, Actor],
    ):
        self._actors = actors
        by_schedule = slots if isinstance(slots, Mapping) else by_schedule_id(slots)
        self.by_type: dict[str, list[Unit]] = defaultdict(list)
        for schedule_id in sorted(by_schedule):
            schedule = schedules.get(schedule_id)
            unit = self.unit(schedule, by_schedule[schedule_id]) if schedule else None
            if unit is not None:
                self.by_type[unit.actor.resource_type].append(unit)

    @classmethod
    def of_units(cls, units: Iterable[Unit], actors: Mapping[str, Actor]) -> AssetIndex:
        """An index of units made elsewhere (the offer memo's, shared by requests)."""
        index = cls({}, {}, actors)
        for unit in units:
            index.by_type[unit.actor.resource_type].append(unit)
        return index

    def unit(self, schedule: Schedule, slots: Sequence[Slot]) -> Unit | None:
        """The unit of ``schedule`` with these free slots; None when the schedule
        names no actor."""
        if not schedule.actor_refs:
            return None
        asset_ref = min(
            schedule.actor_refs,
            key=lambda r: _ASSET_PRIORITY.get(r.split("/", 1)[0], 9),
        )
        actor = self._actors.get(asset_ref) or Actor(ref=asset_ref)
        return Unit(actor, schedule, self._site(schedule, asset_ref), slots)

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
