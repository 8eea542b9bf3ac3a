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
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from sqlalchemy.orm import Session

from app.cache import claims, slot_reads
from app.cache import repository as repo
from app.core.domain import Slot

WARM_BATCH = 50  # schedules read per query while warming up


@dataclass(frozen=True, slots=True)
class _Entry:
    """One schedule's free slots, sorted by start, as of ``version``; ``tidy`` when
    they do not overlap, none is empty and none is longer than the look-back, so
    that every cut of them to a window is the whole list cut the same way."""

    version: int
    slots: list[Slot]
    starts: list[datetime]
    tidy: bool

    def cut(self, start: datetime, end: datetime, earliest: datetime) -> list[Slot]:
        """The slots overlapping ``[start, end)``; none starts before ``earliest``."""
        starts, held = self.starts, self.slots
        inside = bisect_left(starts, start)
        stop = bisect_left(starts, end, inside)
        # slots starting before the window count only if they reach into it; in a
        # tidy schedule (sorted, disjoint) only the last of them can
        if self.tidy:
            reaches = inside and held[inside - 1].end > start
            return held[inside - 1 if reaches else inside : stop]
        first = bisect_left(starts, earliest, 0, inside)
        return [s for s in held[first:inside] if s.end > start] + held[inside:stop]


class WindowRead:
    """A request's slots with what they were cut from, for the composer's memo.

    ``full``: schedule id -> every free slot of the tidy schedules read (lists that
    are replaced, never changed, when a schedule changes); ``cut``: schedule id ->
    the free, unclaimed slots overlapping the window of each schedule that is not
    tidy or has claimed slots there (left out when none is left); ``taken``: the
    claimed slots the window left out. :attr:`slots` has every schedule's window,
    cut when first asked: a composition served by the memo only needs ``cut``.
    """

    __slots__ = ("_entries", "_slots", "_span", "cut", "full", "taken")

    def __init__(
        self,
        full: dict[str, list[Slot]],
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
        self._slots: dict[str, list[Slot]] | None = None

    @property
    def slots(self) -> dict[str, list[Slot]]:
        """Schedule id -> its free, unclaimed slots overlapping the window, in start
        order (schedules without any are left out)."""
        if self._slots is None:
            # a schedule not in ``cut`` and not tidy, or with taken slots, has none left
            settled = self.cut.keys() | {slot.schedule_id for slot in self.taken}
            out: dict[str, list[Slot]] = {}
            for schedule_id, entry in self._entries.items():
                if schedule_id in self.cut:
                    out[schedule_id] = self.cut[schedule_id]
                elif entry.tidy and schedule_id not in settled:
                    slots = entry.cut(*self._span)
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
    ) -> WindowRead:
        """The free, unclaimed slots of ``schedule_ids`` overlapping ``[start, end)``
        as of now (:class:`WindowRead`), with the full lists they are cut from and
        the claimed slots left out. Tidy schedules are cut only when asked."""
        earliest = start - self._lookback
        generation, claimed = claims.generation_and_claimed(session, earliest, end, now)
        self._catch_up(session, schedule_ids, generation)
        read: dict[str, _Entry] = {}
        full: dict[str, list[Slot]] = {}
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
            slots = entry.cut(start, end, earliest)
            if claimed:
                hidden = [s for s in slots if s.id in claimed]
                if hidden:
                    taken += hidden
                    slots = [s for s in slots if s.id not in claimed]
                elif entry.tidy:
                    continue
            if slots:
                cut[schedule_id] = slots
        return WindowRead(full, cut, taken, read, (start, end, earliest))

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
                loaded = slot_reads.free_slots_by_schedule(session, missing)
                for schedule_id in missing:
                    slots = loaded[schedule_id]
                    self._entries[schedule_id] = _Entry(
                        self._versions[schedule_id],
                        slots,
                        [s.start for s in slots],
                        self._tidy(slots),
                    )
                self._stale.difference_update(missing)

    def _tidy(self, slots: list[Slot]) -> bool:
        lookback = self._lookback
        if not all(s.start < s.end and s.end - s.start <= lookback for s in slots):
            return False
        return all(a.end <= b.start for a, b in pairwise(slots))

    def _missing(self, wanted: Collection[str]) -> list[str]:
        """Wanted cached schedules not held, or held at an older version."""
        stale = self._stale
        return [sid for sid in wanted if sid in stale] if stale else []
