"""Slot state: the columns, the (start, id) index, keyset-paged queries and mutations.

Why this shape: a million slots must be searchable page by page in O(page) time
and mutable in place. Slots are rows of numpy columns; the index is one sorted
int64 array of composite keys ``start_minute << 32 | slot_index`` (so sorting by
key is sorting by (start, id), and a page cursor is just the last key served),
plus the same keys split per schedule for queries that name few schedules.

Every mutation bumps the slot's ``versionId`` and ``lastUpdated`` (strictly
increasing across the store, milliseconds) and reports one :class:`Change` per
touched schedule to the registered listeners (the notifier). All methods run on
the event loop thread, so no locking is needed.

A deleted slot (plain-r4 profile) keeps its row, flagged in ``deleted`` with the
deletion as its last version, but leaves the index: no query or read finds it any
more, only :meth:`SlotStore.history_page` (which is how ``_lastUpdated`` searches
cannot see a deletion, as on real servers, while ``_history`` can). ``seq`` orders
rows by their last change (unique, increasing), so history pages by a keyset.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from sandbox_ehr.model import FREE, Organisation, SlotArrays
from sandbox_ehr.org import generate, generate_day

KEY_SHIFT = 32
INDEX_MASK = (1 << KEY_SHIFT) - 1
# Below this many schedules a query merges per-schedule keys instead of scanning all.
FEW_SCHEDULES = 48
N_STATUS = 8


@dataclass(frozen=True, slots=True)
class Change:
    """Slots of one schedule changed within [start, end) (UTC epoch minutes)."""

    schedule: int
    start: int
    end: int
    slots: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SlotQuery:
    """What a search asks for; None means "no constraint"."""

    lo: int | None = None  # start >= lo (epoch minutes)
    hi: int | None = None  # start < hi
    schedules: frozenset[int] | None = None
    statuses: frozenset[int] | None = None
    updated_after_ms: int | None = None
    slots: frozenset[int] | None = None  # explicit slot indices (``_id``)


@dataclass(frozen=True, slots=True)
class Page:
    indices: list[int]
    next_key: int | None  # cursor for the following page, None when this is the last
    total: int | None


class SlotStore:
    """The mutable slot table of one sandbox, built from the seed."""

    def __init__(self, seed: int, size: int, start_date: date, horizon_days: int) -> None:
        self._params = (seed, size, start_date, horizon_days)
        self.listeners: list[Callable[[list[Change]], None]] = []
        self._last_ms = 0
        self._loaded = False
        self.org: Organisation
        self.reset()

    # ----- lifecycle -------------------------------------------------------------------
    def reset(self) -> list[Change]:
        """Back to the seed's state; returns a Change for every schedule that differed."""
        org, arrays = generate(*self._params)
        changes = self._diff(arrays) if self._loaded else []
        self._loaded = True
        self.org = org
        self.n = len(arrays)
        self.start = arrays.start.copy()
        self.dur = arrays.dur.copy()
        self.sched = arrays.sched.copy()
        self.status = arrays.status.copy()
        self.version = np.ones(self.n, dtype=np.int32)
        self.updated = np.full(self.n, self._tick(), dtype=np.int64)
        self.deleted = np.zeros(self.n, dtype=bool)
        self.removed: set[int] = set()  # schedules the EHR dropped
        self.seq = np.arange(self.n, dtype=np.int64)
        self._next_seq = self.n
        self.horizon_end = np.full(len(org.schedules), _epoch_minute_of(org.horizon_end), np.int64)
        self.last_day = org.horizon_end - timedelta(days=1)  # latest day generated or added
        self._rebuild_index()
        if changes:
            self._emit(changes)
        return changes

    def _diff(self, fresh: SlotArrays) -> list[Change]:
        """Schedules whose slots differ from a freshly generated table (for reset)."""
        n_common = min(self.n, len(fresh))
        differs = (
            (self.start[:n_common] != fresh.start[:n_common])
            | (self.status[:n_common] != fresh.status[:n_common])
            | self.deleted[:n_common]
        )
        touched = np.flatnonzero(differs).tolist() + list(range(n_common, self.n))
        per: dict[int, list[int]] = {}
        for i in touched:
            per.setdefault(int(self.sched[i]), []).append(i)
        out = []
        for s, idx in per.items():
            lows = [int(self.start[i]) for i in idx]
            highs = [int(self.start[i] + self.dur[i]) for i in idx]
            lows += [int(fresh.start[i]) for i in idx if i < len(fresh)]
            highs += [int(fresh.start[i] + fresh.dur[i]) for i in idx if i < len(fresh)]
            out.append(Change(s, min(lows), max(highs), tuple(idx)))
        return out

    def _tick(self) -> int:
        """A strictly increasing millisecond timestamp for lastUpdated."""
        now = int(time.time() * 1000)
        self._last_ms = max(now, self._last_ms + 1)
        return self._last_ms

    def _rebuild_index(self) -> None:
        alive = np.flatnonzero(~self.deleted[: self.n]).astype(np.int64)
        keys = (self.start[alive] << KEY_SHIFT) | alive
        self.keys = np.sort(keys)
        by_sched = self.sched[self.keys & INDEX_MASK]
        order = np.argsort(by_sched, kind="stable")
        counts = np.bincount(by_sched, minlength=len(self.org.schedules))
        self.sched_keys: list[np.ndarray] = np.split(self.keys[order], np.cumsum(counts)[:-1])

    # ----- reads -----------------------------------------------------------------------
    def page(self, q: SlotQuery, after_key: int | None, count: int, want_total: bool) -> Page:
        """Up to ``count`` slot indices matching ``q`` with key > ``after_key``, in key order."""
        lo_key = (q.lo << KEY_SHIFT) if q.lo is not None else -(2**62)
        hi_key = (q.hi << KEY_SHIFT) if q.hi is not None else 2**62
        if q.slots is not None:
            idx = np.array(sorted(i for i in q.slots if self.exists(i)), dtype=np.int64)
            keys = np.sort((self.start[idx] << KEY_SHIFT) | idx)
            window = keys[(keys >= lo_key) & (keys < hi_key)]
            matches = window[self._mask(window, q)]
            total = len(matches) if want_total else None
            if after_key is not None:
                matches = matches[np.searchsorted(matches, after_key, side="right") :]
            return self._cut(matches, count, total)
        if q.schedules is not None and len(q.schedules) <= FEW_SCHEDULES:
            parts = []
            for s in sorted(q.schedules):
                ks = self.sched_keys[s]
                a, b = np.searchsorted(ks, (lo_key, hi_key))
                parts.append(ks[a:b])
            window = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
            matches = window[self._mask(window, q)]
            total = len(matches) if want_total else None
            if after_key is not None:
                matches = matches[np.searchsorted(matches, after_key, side="right") :]
            return self._cut(matches, count, total)
        a, b = (int(x) for x in np.searchsorted(self.keys, (lo_key, hi_key)))
        total = None
        if want_total:
            window = self.keys[a:b]
            total = int(np.count_nonzero(self._mask(window, q)))
        pos = (
            a
            if after_key is None
            else max(a, int(np.searchsorted(self.keys, after_key, side="right")))
        )
        found: list[np.ndarray] = []
        n_found, chunk = 0, max(4 * count, 4096)
        while pos < b and n_found <= count:
            seg = self.keys[pos : min(b, pos + chunk)]
            sel = seg[self._mask(seg, q)]
            found.append(sel)
            n_found += len(sel)
            pos += len(seg)
            chunk *= 2
        matches = np.concatenate(found) if found else np.zeros(0, np.int64)
        return self._cut(matches, count, total)

    @staticmethod
    def _cut(matches: np.ndarray, count: int, total: int | None) -> Page:
        taken = matches[:count]
        next_key = int(taken[-1]) if len(matches) > count else None
        return Page((taken & INDEX_MASK).tolist(), next_key, total)

    def _mask(self, keys: np.ndarray, q: SlotQuery) -> np.ndarray:
        idx = keys & INDEX_MASK
        mask = np.ones(len(keys), dtype=bool)
        if q.statuses is not None:
            allowed = np.zeros(N_STATUS, dtype=bool)
            allowed[list(q.statuses)] = True
            mask &= allowed[self.status[idx]]
        if q.schedules is not None:
            allowed_s = np.zeros(len(self.org.schedules), dtype=bool)
            allowed_s[list(q.schedules)] = True
            mask &= allowed_s[self.sched[idx]]
        if q.updated_after_ms is not None:
            mask &= self.updated[idx] > q.updated_after_ms
        return mask

    def free_slots(
        self, schedules: Iterable[int] | None, lo: int | None, hi: int | None
    ) -> list[int]:
        """Every free slot index in the window, in (start, id) order (ground truth)."""
        q = SlotQuery(
            lo=lo,
            hi=hi,
            statuses=frozenset({FREE}),
            schedules=frozenset(schedules) if schedules is not None else None,
        )
        return self.page(q, None, self.n + 1, want_total=False).indices

    def schedule_slots(self, schedule: int, lo: int, hi: int) -> list[int]:
        """All slots of a schedule that start in [lo, hi), any status, in start order."""
        ks = self.sched_keys[schedule]
        a, b = np.searchsorted(ks, (lo << KEY_SHIFT, hi << KEY_SHIFT))
        return (ks[a:b] & INDEX_MASK).tolist()

    def overlapping(self, schedule: int, lo: int, hi: int) -> list[int]:
        """Slots of a schedule overlapping [lo, hi) (max slot length is well under a day)."""
        return [
            i
            for i in self.schedule_slots(schedule, lo - 24 * 60, hi)
            if self.start[i] + self.dur[i] > lo
        ]

    def exists(self, index: int) -> bool:
        return 0 <= index < self.n and not self.deleted[index]

    def was_deleted(self, index: int) -> bool:
        return 0 <= index < self.n and bool(self.deleted[index])

    def history_page(
        self, since_ms: int | None, before_seq: int | None, count: int, want_total: bool
    ) -> Page:
        """Slots, deleted ones included, last changed after ``since_ms``, newest change first.

        Keyset-paged on ``seq`` (``next_key`` is the last seq served): a slot changed
        while a client pages moves ahead of the cursor and shows in its next ``_since``.
        """
        mask = np.ones(self.n, dtype=bool)
        if since_ms is not None:
            mask &= self.updated[: self.n] > since_ms
        total = int(np.count_nonzero(mask)) if want_total else None
        if before_seq is not None:
            mask &= self.seq[: self.n] < before_seq
        idx = np.flatnonzero(mask)
        seqs = self.seq[idx]
        k = min(count + 1, len(idx))
        top = np.argpartition(-seqs, k - 1)[:k] if 0 < k < len(idx) else np.arange(len(idx))
        order = top[np.argsort(-seqs[top])]
        taken = idx[order[:count]]
        next_key = int(self.seq[taken[-1]]) if count and len(order) > count else None
        return Page(taken.tolist(), next_key, total)

    # ----- writes ----------------------------------------------------------------------
    def set_status(self, indices: Iterable[int], status: int) -> list[Change]:
        """Set the status of the given slots; slots already in that status are untouched."""
        idx = [i for i in indices if self.status[i] != status]
        if not idx:
            return []
        arr = np.array(idx, dtype=np.int64)
        self.status[arr] = status
        self._touch(arr)
        return self._emit(self._changes(arr, self.start[arr], self.start[arr] + self.dur[arr]))

    def delete(self, indices: Iterable[int]) -> list[Change]:
        """Delete existing slots: they leave the index; the deletion is their last version."""
        idx = sorted({i for i in indices if self.exists(i)})
        if not idx:
            return []
        arr = np.array(idx, dtype=np.int64)
        self.deleted[arr] = True
        self._touch(arr)
        gone = (self.start[arr] << KEY_SHIFT) | arr
        self.keys = np.delete(self.keys, np.searchsorted(self.keys, gone))
        for s in np.unique(self.sched[arr]).tolist():
            ks = self.sched_keys[s]
            self.sched_keys[s] = ks[~np.isin(ks, gone)]
        return self._emit(self._changes(arr, self.start[arr], self.start[arr] + self.dur[arr]))

    def remove_schedule(self, schedule: int) -> list[Change]:
        """The EHR drops a schedule: it leaves searches and reads, and its slots are deleted."""
        self.removed.add(schedule)
        return self.delete(np.flatnonzero(self.sched[: self.n] == schedule).tolist())

    def move(self, moves: Iterable[tuple[int, int]]) -> list[Change]:
        """Shift slots by (index, minutes); the notification period covers old and new times."""
        moves = [(i, m) for i, m in moves if m]
        if not moves:
            return []
        arr = np.array([i for i, _ in moves], dtype=np.int64)
        delta = np.array([m for _, m in moves], dtype=np.int64)
        old_start = self.start[arr].copy()
        old_keys = (old_start << KEY_SHIFT) | arr
        self.start[arr] = old_start + delta
        new_keys = (self.start[arr] << KEY_SHIFT) | arr
        self._touch(arr)
        if len(moves) > 64:
            self._rebuild_index()
        else:
            for old, new, i in zip(old_keys.tolist(), new_keys.tolist(), arr.tolist(), strict=True):
                self.keys = _rekey(self.keys, old, new)
                s = int(self.sched[i])
                self.sched_keys[s] = _rekey(self.sched_keys[s], old, new)
        lo = np.minimum(old_start, self.start[arr])
        hi = np.maximum(old_start, self.start[arr]) + self.dur[arr]
        return self._emit(self._changes(arr, lo, hi))

    def add_day(self, day: date, schedules: set[int] | None = None) -> list[Change]:
        """Generate one more day of slots (for schedules that have none that day yet)."""
        self.last_day = max(self.last_day, day)
        day_lo = _epoch_minute_of(day) - 14 * 60
        day_hi = day_lo + 24 * 60 + 28 * 60
        candidates = set(range(len(self.org.schedules))) if schedules is None else set(schedules)
        candidates -= self.removed
        empty = set()
        for s in candidates:
            zone_day = [
                i
                for i in self.schedule_slots(s, day_lo, day_hi)
                if _local_date(self, s, int(self.start[i])) == day
            ]
            if not zone_day:
                empty.add(s)
        fresh = generate_day(self.org, day)
        keep = np.isin(fresh.sched, np.fromiter(empty, dtype=np.int32, count=len(empty)))
        fresh = SlotArrays(
            fresh.start[keep], fresh.dur[keep], fresh.sched[keep], fresh.status[keep]
        )
        if not len(fresh):
            return []
        first = self.n
        self.start = np.concatenate([self.start, fresh.start])
        self.dur = np.concatenate([self.dur, fresh.dur])
        self.sched = np.concatenate([self.sched, fresh.sched])
        self.status = np.concatenate([self.status, fresh.status])
        self.version = np.concatenate([self.version, np.ones(len(fresh), np.int32)])
        self.deleted = np.concatenate([self.deleted, np.zeros(len(fresh), bool)])
        self.updated = np.concatenate([self.updated, np.zeros(len(fresh), np.int64)])
        self.seq = np.concatenate([self.seq, np.zeros(len(fresh), np.int64)])
        self.n = len(self.start)
        arr = np.arange(first, self.n, dtype=np.int64)
        self._stamp(arr)
        ends = self.start[arr] + self.dur[arr]
        np.maximum.at(self.horizon_end, self.sched[arr], ends)
        self._rebuild_index()
        return self._emit(self._changes(arr, self.start[arr], ends))

    def _touch(self, arr: np.ndarray) -> None:
        self.version[arr] += 1
        self._stamp(arr)

    def _stamp(self, arr: np.ndarray) -> None:
        self.updated[arr] = self._tick()
        self.seq[arr] = np.arange(self._next_seq, self._next_seq + len(arr), dtype=np.int64)
        self._next_seq += len(arr)

    def _changes(self, arr: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[Change]:
        per: dict[int, tuple[int, int, list[int]]] = {}
        for i, s, a, b in zip(
            arr.tolist(), self.sched[arr].tolist(), lo.tolist(), hi.tolist(), strict=True
        ):
            if s in per:
                pa, pb, idx = per[s]
                idx.append(i)
                per[s] = (min(pa, a), max(pb, b), idx)
            else:
                per[s] = (a, b, [i])
        return [Change(s, a, b, tuple(idx)) for s, (a, b, idx) in per.items()]

    def _emit(self, changes: list[Change]) -> list[Change]:
        for listener in self.listeners:
            listener(changes)
        return changes


def _rekey(keys: np.ndarray, old: int, new: int) -> np.ndarray:
    """Replace one key in a sorted array, shifting only the elements in between."""
    pos = int(np.searchsorted(keys, old))
    dest = int(np.searchsorted(keys, new))
    if dest > pos:
        keys[pos : dest - 1] = keys[pos + 1 : dest].copy()
        keys[dest - 1] = new
    else:
        keys[dest + 1 : pos + 1] = keys[dest:pos].copy()
        keys[dest] = new
    return keys


def _epoch_minute_of(day: date) -> int:
    return (day.toordinal() - date(1970, 1, 1).toordinal()) * 24 * 60


def _local_date(store: SlotStore, schedule: int, minute: int) -> date:
    from sandbox_ehr.timefmt import local_date

    clinic = store.org.clinics[store.org.schedules[schedule].clinic_index]
    return local_date(clinic.tz, minute)
