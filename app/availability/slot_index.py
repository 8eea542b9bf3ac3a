"""Free slots held in each API process, so that ``$find`` reads memory, not rows.

Why: with a million cached slots, reading a request's window from the database
(~15,000 rows for one specialty and one week, through the driver and the column
types) cost 0.2-0.9 s, and a broad request several seconds, while composing the
answer took milliseconds. Slots change only when a sync writes, and every such
transaction takes the next *cache generation* and files it as the
``slots_version`` of the schedules it changed (:func:`app.cache.repository.
bump_slots_version`); those transactions commit in generation order. So a
request reads one row, the current generation; only when it moved does it read
the schedules' versions and re-read the slots of the schedules that changed.

Consistency: the generation is read before the versions and the versions before
the slots, so slots in memory are never older than what they are filed under; a
reader racing a writer at worst reads a schedule once more. Claims (slots held
or booked through slotsync) change with every booking rather than with syncs and
are applied per request from the claims table, so a booked slot leaves ``$find``
at once.

Memory: each schedule's slots are held as columns (:class:`~app.core.slot_columns.
SlotColumns`), 22 bytes a slot plus what its id adds to the prefix its schedule's
ids share (~28 bytes a slot in all in the ``index-read`` benchmark), with instants
shared through the index's table and code combinations numbered;
:attr:`SlotIndex.nbytes` says what the columns hold. A :class:`Slot` object is made
only for what a request shows.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import le

from sqlalchemy.orm import Session

from app.cache import claims, slot_reads
from app.cache import repository as repo
from app.core.domain import Slot
from app.core.slot_columns import SlotColumns

WARM_BATCH = 50  # schedules read per query while warming up
# Shared instants held at most before the table is rebuilt from the slots held (a
# million slots on a 5-minute grid over 90 days use ~26,000).
_MAX_SHARED = 1 << 20


@dataclass(frozen=True, slots=True)
class _Entry:
    """One schedule's free slots, sorted by start, as of ``version``, as columns
    (:class:`SlotColumns`: no object per slot); ``tidy`` when they do not overlap,
    none is empty and none is longer than the look-back, so that every cut of them
    to a window is the whole list cut the same way."""

    version: int
    slots: SlotColumns
    tidy: bool

    def span(self, start: datetime, end: datetime, earliest: datetime) -> tuple[int, int]:
        """``(first, stop)``: in a tidy schedule, the positions of the slots overlapping
        ``[start, end)``; else those of the slots starting from ``earliest`` (that may
        reach into the window) up to ``end``, to be filtered by :meth:`cut`."""
        starts = self.slots.starts
        inside = bisect_left(starts, start)
        stop = bisect_left(starts, end, inside)
        # slots starting before the window count only if they reach into it; in a
        # tidy schedule (sorted, disjoint) only the last of them can
        if self.tidy:
            reaches = inside and self.slots.ends[inside - 1] > start
            return (inside - 1 if reaches else inside), stop
        return bisect_left(starts, earliest, 0, inside), stop

    def window(self, start: datetime, end: datetime, earliest: datetime) -> SlotColumns:
        """A tidy schedule's slots overlapping ``[start, end)``, still as columns."""
        return self.slots.part(*self.span(start, end, earliest))

    def cut(self, start: datetime, end: datetime, earliest: datetime) -> list[Slot]:
        """The slots overlapping ``[start, end)``; none starts before ``earliest``."""
        first, stop = self.span(start, end, earliest)
        held, ends = self.slots, self.slots.ends
        if self.tidy:
            return held[first:stop]
        return [held[i] for i in range(first, stop) if ends[i] > start]


class WindowRead:
    """A request's slots with what they were cut from, for the composer's memo.

    ``full``: schedule id -> every free slot of the tidy schedules read (columns that
    are replaced, never changed, when a schedule changes); ``cut``: schedule id ->
    the free, unclaimed slots overlapping the window of each schedule that is not
    tidy or has claimed slots there (left out when none is left); ``taken``: the
    claimed slots the window left out. :attr:`slots` has every schedule's window,
    cut when first asked: a composition served by the memo only needs ``cut``.
    """

    __slots__ = ("_entries", "_slots", "_span", "cut", "full", "taken")

    def __init__(
        self,
        full: dict[str, SlotColumns],
        cut: dict[str, list[Slot]],
        taken: list[Slot],
        entries: dict[str, _Entry],
        span: tuple[datetime, datetime, datetime],
    ):
        self.full = full
        self.cut = cut
        self.taken = taken
        self._entries = entries
        self._span = span
        self._slots: dict[str, Sequence[Slot]] | None = None

    @property
    def slots(self) -> dict[str, Sequence[Slot]]:
        """Schedule id -> its free, unclaimed slots overlapping the window, in start
        order (schedules without any are left out); a tidy schedule's as columns."""
        if self._slots is None:
            # a schedule not in ``cut`` and not tidy, or with taken slots, has none left
            settled = self.cut.keys() | {slot.schedule_id for slot in self.taken}
            out: dict[str, Sequence[Slot]] = {}
            for schedule_id, entry in self._entries.items():
                if schedule_id in self.cut:
                    out[schedule_id] = self.cut[schedule_id]
                elif entry.tidy and schedule_id not in settled:
                    slots = entry.window(*self._span)
                    if slots:
                        out[schedule_id] = slots
            self._slots = out
        return self._slots


class SlotIndex:
    """Per-process free slots by schedule, kept current against the database."""

    def __init__(self, lookback: timedelta):
        # a slot that began this long before a window can still overlap it
        self._lookback = lookback
        self._entries: dict[str, _Entry] = {}
        # equal instants, one object each for every schedule
        self._instants: dict[datetime, datetime] = {}
        self._versions: dict[str, int] = {}  # every cached schedule, as of _generation
        # schedules of _versions not held at that version (so that a request whose
        # generation is current checks a set, not every schedule it reads)
        self._stale: set[str] = set()
        self._generation: int | None = None
        self._lock = threading.Lock()
        self.warm_done = False  # whether warm() has read every schedule once

    def read(
        self,
        session: Session,
        schedule_ids: Collection[str],
        start: datetime,
        end: datetime,
        now: datetime,
        state: tuple[int, Collection[str]] | None = None,
    ) -> WindowRead:
        """The free, unclaimed slots of ``schedule_ids`` overlapping ``[start, end)``
        as of now (:class:`WindowRead`), with the full lists they are cut from and
        the claimed slots left out. Tidy schedules are cut only when asked.
        ``state``: :meth:`state` of the same window and ``now``, when already read."""
        earliest = start - self._lookback
        generation, claimed = state or self.state(session, start, end, now)
        self._catch_up(session, schedule_ids, generation)
        read: dict[str, _Entry] = {}
        full: dict[str, SlotColumns] = {}
        cut: dict[str, list[Slot]] = {}
        taken: list[Slot] = []
        for schedule_id in schedule_ids:
            entry = self._entries.get(schedule_id)
            if entry is None:  # not cached (any more)
                continue
            read[schedule_id] = entry
            if entry.tidy:
                full[schedule_id] = entry.slots
                if not claimed:
                    continue  # cut only if asked (WindowRead.slots)
                first, stop = entry.span(start, end, earliest)
                held = entry.slots
                hidden_at = [i for i in range(first, stop) if held.id_at(i) in claimed]
                if not hidden_at:
                    continue
                taken += [held[i] for i in hidden_at]
                hidden = set(hidden_at)
                kept = [held[i] for i in range(first, stop) if i not in hidden]
                if kept:
                    cut[schedule_id] = kept
                continue
            slots = entry.cut(start, end, earliest)
            if claimed:
                taken += [s for s in slots if s.id in claimed]
                slots = [s for s in slots if s.id not in claimed]
            if slots:
                cut[schedule_id] = slots
        return WindowRead(full, cut, taken, read, (start, end, earliest))

    def state(
        self, session: Session, start: datetime, end: datetime, now: datetime
    ) -> tuple[int, set[str]]:
        """What :meth:`read` of ``[start, end)`` depends on besides the schedules asked
        for, in one round trip: the cache generation (the slots held) and the ids of
        the slots there that a live claim hides."""
        return claims.generation_and_claimed(session, start - self._lookback, end, now)

    def first_start_after(
        self, schedule_ids: Collection[str], after: datetime, before: datetime
    ) -> datetime | None:
        """The earliest start of a held slot of ``schedule_ids`` later than ``after`` and
        earlier than ``before`` (claimed or not), None when there is none: where a
        horizon at ``after`` next reaches a slot (:func:`rules.bookable.same_answer_until`).
        A bisection per schedule; asked only when an answer is made, not served again."""
        found: datetime | None = None
        for schedule_id in schedule_ids:
            entry = self._entries.get(schedule_id)
            if entry is None:
                continue
            starts = entry.slots.starts
            i = bisect_right(starts, after)
            if i < len(starts) and starts[i] < before and (found is None or starts[i] < found):
                found = starts[i]
        return found

    def warm(self, session_scope: Callable[[], AbstractContextManager[Session]]) -> int:
        """Read every cached schedule now (at start-up, off the request path), in
        batches so that requests arriving meanwhile are not held up for long.
        Returns how many slots are held."""
        with session_scope() as session:
            self._catch_up(session, (), repo.cache_generation(session))
        ids = sorted(self._versions)
        for i in range(0, len(ids), WARM_BATCH):
            with session_scope() as session:
                generation = repo.cache_generation(session)
                self._catch_up(session, ids[i : i + WARM_BATCH], generation)
        self.warm_done = True
        return self.size

    @property
    def size(self) -> int:
        return sum(len(e.slots) for e in list(self._entries.values()))

    @property
    def nbytes(self) -> int:
        """Bytes the held columns take beyond the shared instants and code tuples."""
        return sum(e.slots.nbytes for e in list(self._entries.values()))

    def _catch_up(self, session: Session, wanted: Collection[str], generation: int) -> None:
        """Bring the index up to ``generation`` (just read) for the wanted schedules."""
        if generation == self._generation and not self._missing(wanted):
            return
        with self._lock:  # one reader per process reads; the others wait for it
            if generation != self._generation:
                versions = slot_reads.slot_versions(session)
                entries = self._entries
                for gone in entries.keys() - versions.keys():
                    del entries[gone]
                self._stale = {
                    sid
                    for sid, version in versions.items()
                    if (entry := entries.get(sid)) is None or entry.version != version
                }
                self._versions = versions
                self._generation = generation
            missing = self._missing(wanted)
            if missing:
                loaded = slot_reads.free_slot_columns(session, missing, instants=self._instants)
                for schedule_id in missing:
                    slots = loaded[schedule_id]
                    self._entries[schedule_id] = _Entry(
                        self._versions[schedule_id], slots, self._tidy(slots)
                    )
                self._stale.difference_update(missing)
                if len(self._instants) > _MAX_SHARED:
                    self._forget_shared()

    def _tidy(self, slots: SlotColumns) -> bool:
        lookback = self._lookback
        starts, ends = slots.starts, slots.ends
        if not all(a < b and b - a <= lookback for a, b in zip(starts, ends, strict=True)):
            return False
        return all(map(le, ends, starts[1:]))

    def _forget_shared(self) -> None:
        """Start the table of shared instants afresh from what is held (instants of
        slots long gone would otherwise pile up over weeks of syncs)."""
        instants: dict[datetime, datetime] = {}
        for entry in self._entries.values():
            held = entry.slots
            for moment in (*held.starts, *held.ends):
                instants.setdefault(moment, moment)
        self._instants = instants

    def _missing(self, wanted: Collection[str]) -> list[str]:
        """Wanted cached schedules not held, or held at an older version."""
        stale = self._stale
        return [sid for sid in wanted if sid in stale] if stale else []
