"""Candidate offers remembered across ``$find`` requests while the cache stands still.

Why: a visit type ordered ``spread`` with a per-day cap must look at every
candidate offer of the window before it can pick ``_count`` of them, and finding a
candidate (qualifying slot, opening hours, buffers, the other required assets) is
most of the cost of a request. Yet whether a slot of a schedule starts an offer
depends only on the slots of that schedule and of the assets it could be paired
with, the rules and the catalog -- not on the request window, ``now`` or the
patient. So the composer keeps, per visit type, primary schedule and pool of other
assets, the candidates of each whole local day, computed from the *full* free-slot
lists of the schedules, and per request only cuts the days of its window,
drops the days the patient is not eligible on, and selects.

Soundness rests on :class:`Basis`, which the caller fills:

- ``slots``: every free slot of each schedule, sorted, as lists that are never
  changed in place (a changed schedule gets a new list). A day is reused only while
  every list it was computed from is the very same object, so a stale day can never
  be served, whatever the key says.
- ``taken``: the slots of ``slots`` inside the request's fetch window that the
  request's own slots leave out (claims). A primary schedule that has taken slots,
  or whose other assets have, is composed from the request's slots as without a
  memo.
- ``key``: changes whenever the slot lists may have changed (the cache
  generation); a new key drops everything, so that memory follows the current
  cache. Rules, schedules and actors join the key inside :meth:`OfferMemo.state`.

The request's own slots must be these lists cut to the fetch window minus
``taken`` (what :class:`app.availability.slot_index.SlotIndex` returns).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from operator import is_
from typing import Any

from app.core.domain import Actor, Schedule, Slot
from rules.assets import AssetIndex, Unit
from rules.offers import Found
from rules.schema import RulesFile

# Offers remembered at most, over all days of all entries: about 190 bytes each with
# their days and shared parts (43.9 MB for 235,588 offers at 1M slots, example rules).
DEFAULT_MAX_OFFERS = 2_000_000


@dataclass(frozen=True, slots=True)
class Basis:
    """The full slot lists a request's slots were cut from (see the module doc)."""

    key: Hashable
    slots: Mapping[str, Sequence[Slot]]
    taken: Collection[Slot] = ()


@dataclass(slots=True)
class Day:
    """The candidate offers of one primary unit on one local day, in start order
    (searched by their starts in place: a list of the starts beside them was 5 MB of
    a 1M-slot memo).

    ``capped`` is what the per-day cap keeps of the whole day, worked out once.
    """

    offers: list[Any]
    capped: list[Any] | None = None


@dataclass(slots=True)
class Entry:
    """Days of one visit type for one primary unit and pool of other assets."""

    key: Hashable  # (visit type, primary schedule, pools): where the memo files it
    sources: tuple[Sequence[Slot], ...]  # the slot lists the days were computed from
    primary: Unit
    others: list[list[Unit]]  # per deciding requirement, its pool as memo units
    days: dict[date, Day] = field(default_factory=dict)
    held: int = 0  # what its days count towards the memo's bound (see MemoState.hold)


class MemoState:
    """Everything remembered for one state key; replaced, never cleared in place,
    so that a request holding it sees one consistent state."""

    def __init__(
        self,
        key: tuple[Hashable, RulesFile, Mapping[str, Schedule], Mapping[str, Actor]],
        max_offers: int,
        on_full: Callable[[int], None] | None = None,
    ):
        self.key = key
        _, _, schedules, actors = key
        self._schedules = schedules
        self._actors = actors
        self._index = AssetIndex({}, schedules, actors)
        self._units: dict[str, Unit | None] = {}
        self._entries: dict[Hashable, Entry] = {}
        self._max_offers = max_offers
        self._on_full = on_full
        self._held = 0  # offers (and days) the entries in _entries hold
        self._counting = threading.Lock()
        # schedule ids of a basis -> (their full lists, the schedules served by
        # memo units, the shared index of those units)
        self._indexes: dict[
            tuple[str, ...], tuple[tuple[Sequence[Slot], ...], set[str], AssetIndex]
        ]
        self._indexes = {}
        # The composer's plans (per visit type and request filters), each valid for
        # the shared index it was made against.
        self.plans: dict[Hashable, Any] = {}
        # the other assets' parts of an offer -> the one equal tuple of them the memo's
        # offers share (see share_others)
        self._others: dict[tuple[Found, ...], tuple[Found, ...]] = {}

    def index(
        self, basis: Basis, window: Mapping[str, Sequence[Slot]], dirty: Collection[str]
    ) -> tuple[AssetIndex, bool]:
        """The units of a request: the memo's, over the full lists, for each schedule
        of the basis that the memo can serve, so that they (their sorted slots and
        all the composer derives from them) are shared by requests; over the
        request's own slots (``window``) for the others and for ``dirty`` ones
        (with taken slots). Also whether the index is *shared*: made of memo units
        only, and the very same object while the full lists are."""
        full = basis.slots
        key = tuple(full)
        cached = self._indexes.get(key)
        if (
            cached is not None
            and not dirty
            and all(map(is_, cached[0], full.values()))
            and cached[1].issuperset(window)
        ):
            return cached[2], True
        units: dict[str, Unit] = {}
        for schedule_id in full:
            if schedule_id not in dirty and (unit := self._unit(schedule_id, basis)) is not None:
                units[schedule_id] = unit
        served = set(units)
        for schedule_id, slots in window.items():
            schedule = self._schedules.get(schedule_id)
            if schedule_id in served or schedule is None:
                continue
            if (unit := self._index.unit(schedule, slots)) is not None:
                units[schedule_id] = unit
        index = AssetIndex.of_units((units[sid] for sid in sorted(units)), self._actors)
        # shared only when every schedule of the basis is the memo's: a schedule with
        # taken slots is left out of this one (or is the request's own unit)
        shared = not dirty and len(units) == len(served)
        if shared:
            if len(self._indexes) >= 256:
                self._indexes = {}
            self._indexes[key] = (tuple(full.values()), served, index)
        return index, shared

    def plan(self, key: Hashable, index: AssetIndex) -> Any:
        """The composer's plan under ``key`` if it was made against ``index``."""
        plan = self.plans.get(key)
        return plan if plan is not None and plan.index is index else None

    def keep_plan(self, key: Hashable, plan: Any) -> None:
        if len(self.plans) >= 4096:
            self.plans = {}
        self.plans[key] = plan

    def entry(
        self, rule_id: int, primary: str, pools: tuple[tuple[str, ...], ...], basis: Basis
    ) -> Entry | None:
        """The entry of visit type ``rule_id`` (``id`` of its rules entry) for primary
        schedule ``primary`` and the schedules of each deciding requirement's pool;
        None when one of them cannot be memoised (not in the basis, or slots that
        the composer would have to tidy first)."""
        wanted = (primary, *(sid for pool in pools for sid in pool))
        sources = tuple(basis.slots.get(sid) for sid in wanted)
        key = (rule_id, primary, pools)
        entry = self._entries.get(key)
        if entry is not None and all(a is b for a, b in zip(entry.sources, sources, strict=True)):
            return entry
        units = {sid: self._unit(sid, basis) for sid in wanted}
        if any(unit is None for unit in units.values()):
            return None
        entry = Entry(
            key=key,
            sources=tuple(s for s in sources if s is not None),
            primary=units[primary],  # type: ignore[arg-type]
            others=[[units[sid] for sid in pool] for pool in pools],  # type: ignore[misc]
        )
        with self._counting:
            if len(self._entries) >= 1 << 16:
                self._entries = {}
                self._held = 0
            replaced = self._entries.get(key)
            if replaced is not None:  # a schedule of it changed: its days are let go
                self._held -= replaced.held
                self._others = {}  # nor may the shared parts keep its old units alive
            self._entries[key] = entry
        return entry

    def hold(self, entry: Entry, day: date, value: Day) -> None:
        """Remember a computed day, forgetting every entry first when full.

        The bound counts what the entries in the memo hold: a day computed again
        (two requests at once) replaces its twin, and an entry replaced because a
        schedule changed takes its days' count with it, so that notifications
        changing schedules one at a time never add up to a flush of every other
        schedule's offers."""
        size = len(value.offers) + 1
        with self._counting:
            if entry is not self._entries.get(entry.key):
                entry.days[day] = value  # an entry already let go: this request's only
                return
            twin = entry.days.get(day)
            if twin is not None:
                entry.held -= len(twin.offers) + 1
                self._held -= len(twin.offers) + 1
            if self._held + size > self._max_offers:
                if self._on_full is not None:
                    self._on_full(self._held)
                self._entries = {entry.key: entry}
                entry.days = {}
                entry.held = 0
                self.plans = {}  # they hold days of the entries too
                self._others = {}
                self._held = 0
            entry.days[day] = value
            entry.held += size
            self._held += size

    def share_others(self, others: Sequence[Found]) -> tuple[Found, ...]:
        """One tuple for equal other-asset parts: offers of several primary units at
        one time often pair with the same room slot (at 1M slots, 102k offers held
        58k distinct parts, 6 MB of copies). The parts are their own key: a
        :class:`~rules.assets.Unit` hashes and compares by identity, which the
        table's own reference keeps valid (a key of the units' ids beside it was
        another 8.6 MB at 1M slots). Emptied whenever an entry is replaced, so that
        units a sync replaced are let go with their entries (a request still
        computing a day of the replaced entry may put a few back, held until the
        next replacement)."""
        parts = tuple(others)
        shared = self._others.get(parts)
        if shared is None:
            if len(self._others) >= 1 << 18:
                self._others = {}
            shared = self._others[parts] = parts
        return shared

    def _unit(self, schedule_id: str, basis: Basis) -> Unit | None:
        """The memo's unit of a schedule over its full list, rebuilt when the list
        changed; None when its slots are not sorted and disjoint as they come (the
        composer would tidy a window of them differently from the whole)."""
        slots = basis.slots.get(schedule_id)
        if slots is None:
            return None
        unit = self._units.get(schedule_id)
        if unit is not None and unit.free.slots is slots:
            return unit
        schedule = self._schedules.get(schedule_id)
        unit = self._index.unit(schedule, slots) if schedule is not None else None
        if unit is not None and unit.free.slots is not slots:
            unit = None
        self._units[schedule_id] = unit
        return unit


class OfferMemo:
    """Candidate offers shared by the requests of one process (see the module doc).

    Thread-safe for FastAPI's thread pool: a state is swapped in whole; within one,
    concurrent requests may compute the same day twice and store equal values.
    """

    def __init__(
        self,
        max_offers: int = DEFAULT_MAX_OFFERS,
        on_full: Callable[[int], None] | None = None,
    ):
        """``on_full`` is told how many offers were held each time the bound makes the
        memo forget them all (a memo too small for its cache does so again and again:
        operators need to see it)."""
        self._max_offers = max_offers
        self._on_full = on_full
        self._state: MemoState | None = None
        self._lock = threading.Lock()

    def state(
        self,
        key: Hashable,
        rules: RulesFile,
        schedules: Mapping[str, Schedule],
        actors: Mapping[str, Actor],
    ) -> MemoState:
        """The state for ``key`` with these rules and catalog; a fresh one when any
        differs. Equal but newly loaded rules or catalog keep the state (and are
        remembered, so that the next comparison is by identity again)."""
        full = (key, rules, schedules, actors)
        state = self._state
        if state is not None and state.key == full:
            if any(a is not b for a, b in zip(state.key, full, strict=True)):
                state.key = full
            return state
        with self._lock:
            state = self._state
            if state is None or state.key != full:
                state = self._state = MemoState(full, self._max_offers, self._on_full)
            return state
