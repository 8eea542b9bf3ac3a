"""Slot store: keyset paging equals a brute-force filter; mutations keep the index right."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from sandbox_ehr.model import BUSY, FREE
from sandbox_ehr.store import KEY_SHIFT, Change, SlotQuery, SlotStore


@pytest.fixture(scope="module")
def store() -> SlotStore:
    return SlotStore(3, 20_000, date(2026, 11, 26), 30)


def _all_pages(store: SlotStore, q: SlotQuery, count: int) -> tuple[list[int], int | None]:
    out, after, total = [], None, None
    while True:
        page = store.page(q, after, count, want_total=after is None)
        total = page.total if after is None else total
        out += page.indices
        if page.next_key is None:
            return out, total
        after = page.next_key


def _brute(store: SlotStore, q: SlotQuery) -> list[int]:
    idx = [
        i
        for i in range(store.n)
        if (q.lo is None or store.start[i] >= q.lo)
        and (q.hi is None or store.start[i] < q.hi)
        and (q.statuses is None or int(store.status[i]) in q.statuses)
        and (q.schedules is None or int(store.sched[i]) in q.schedules)
    ]
    return sorted(idx, key=lambda i: (int(store.start[i]), i))


@pytest.mark.parametrize("few", [0, 48], ids=["global-scan", "per-schedule"])
@pytest.mark.parametrize("pick", [None, {1}, "even"])
def test_paging_matches_brute_force(
    store: SlotStore, pick: object, few: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sandbox_ehr.store.FEW_SCHEDULES", few)
    n_sched = len(store.org.schedules)
    schedules = (
        None if pick is None else frozenset(range(0, n_sched, 2) if pick == "even" else pick)
    )
    lo = int(np.percentile(store.start, 10))
    hi = int(np.percentile(store.start, 80))
    q = SlotQuery(lo=lo, hi=hi, schedules=schedules, statuses=frozenset({FREE}))
    got, total = _all_pages(store, q, 97)
    expected = _brute(store, q)
    assert got == expected and total == len(expected)


def test_mutations_version_notify_and_reindex() -> None:
    store = SlotStore(3, 3000, date(2026, 11, 26), 30)
    seen: list[Change] = []
    store.listeners.append(seen.extend)
    free = store.free_slots(None, None, None)
    i = free[0]
    v0, t0 = int(store.version[i]), int(store.updated[i])
    changes = store.set_status([i], BUSY)
    assert store.version[i] == v0 + 1 and store.updated[i] > t0
    assert changes == seen and changes[0].slots == (i,)
    assert i not in store.free_slots(None, None, None)
    old_start = int(store.start[i])
    store.move([(i, 45)])
    assert store.start[i] == old_start + 45
    assert seen[-1].start == old_start and seen[-1].end == old_start + 45 + int(store.dur[i])
    assert np.all(np.diff(store.keys) > 0)
    for keys in store.sched_keys:
        assert np.all(np.diff(keys) > 0)
    assert set((store.keys & ((1 << KEY_SHIFT) - 1)).tolist()) == set(range(store.n))
    n = store.n
    added = store.add_day(date(2026, 12, 28))
    assert store.n > n and added and store.add_day(date(2026, 12, 28)) == []
    assert len(store.keys) == store.n
    changed = store.reset()
    assert store.n == n and {c.schedule for c in changed} >= {int(store.sched[i])}
