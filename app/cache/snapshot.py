"""Snapshot merge: what to write so that a cached (scope, window) equals the EHR's answer.

Plain Python over plain data (no database): the repository applies the plan in one
transaction. The cache holds free slots only, so a slot the EHR now reports as busy
is a delete, exactly like a slot that vanished.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter

from app.core.domain import Slot


@dataclass(frozen=True, slots=True)
class SnapshotPlan:
    upserts: tuple[Slot, ...]  # new or changed free slots
    deletes: tuple[str, ...]  # cached slot ids that are gone or no longer free
    unchanged: int

    @property
    def is_noop(self) -> bool:
        return not self.upserts and not self.deletes


_slot_id = attrgetter("id")


def plan_snapshot(
    cached: Mapping[str, Slot],
    fetched: Iterable[Slot],
    in_scope: Callable[[Slot], bool] = lambda _slot: True,
) -> SnapshotPlan:
    """Compare the cached slots of a scope with a complete EHR answer for that scope.

    ``cached`` must hold every cached slot of the scope (schedules x window);
    ``fetched`` is the whole answer for it. Fetched slots outside the scope (an EHR
    that answers more than asked) are ignored rather than trusted half-way. A slot
    id repeated across pages counts once, the last occurrence winning.
    """
    latest: dict[str, Slot] = {}
    for slot in fetched:
        if in_scope(slot):
            latest[slot.id] = slot

    upserts: list[Slot] = []
    unchanged = 0
    free_ids: set[str] = set()
    not_free: list[str] = []
    for slot_id, slot in latest.items():
        if slot.status != "free":
            not_free.append(slot_id)
            continue
        free_ids.add(slot_id)
        if cached.get(slot_id) == slot:
            unchanged += 1
        else:
            upserts.append(slot)

    deletes = [sid for sid in cached if sid not in free_ids]
    deletes.extend(sid for sid in not_free if sid not in cached)  # maybe cached outside the scope
    # In id order: concurrent writers lock rows in one order, and PostgreSQL's primary
    # key takes a chunk's new ids as runs of neighbours (a third less CPU to COPY than
    # the EHR's order at 1M slots).
    upserts.sort(key=_slot_id)
    return SnapshotPlan(upserts=tuple(upserts), deletes=tuple(sorted(deletes)), unchanged=unchanged)
