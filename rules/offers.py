"""The shapes a candidate offer takes while the composer works: the vocabulary its
stages share.

Separate from the stages because every one of them passes these values on: asset
matching finds :data:`Found`, the scan yields :data:`Offer`, the memo keeps them
(:func:`remembered`), the ordering picks among them, and the builder turns a
:class:`Candidate` into a proposed appointment. Plain tuples and one small
dataclass, no logic beyond sharing equal values.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from app.core.domain import Slot
from rules.assets import Unit
from rules.schema import VisitTypeRule

# (requirement index, unit, first, stop) of one other asset: unit.free.slots[first:stop]
Found = tuple[int, Unit, int, int]

# A candidate offer while a visit type is being composed:
#   (start, ref, unit, day, first, stop, others)
# ``ref`` is the primary asset's and ``unit`` the primary unit (its schedule:
# ``unit.schedule``); ``day`` is the local date at its site (for the per-day cap);
# its slots are ``unit.free.slots[first:stop]``; ``others`` are the other assets that
# decide whether the offer exists (or None). Most candidates are dropped by the
# ordering, the cap or ``_count``, so this is a bare tuple (a class costs several
# times more to build), and the memo keeps a quarter of a million of them at 1M
# slots: seven fields are 96 bytes, eight 112 (the allocator's sizes step by 16).
# The first three fields are unique within one visit type and give the start order
# (a unit orders by its schedule id), so offers sort and merge as tuples without
# ever comparing the fields after them.
Offer = tuple[datetime, str, Unit, date, int, int, Sequence[Found] | None]
# Slot positions as shared int objects: the scan makes a new int for every position
# past 256, and two of them per remembered offer (``first``, ``stop``) were a fifth of
# the offer memo's memory. The table grows to the positions met (a schedule holds a
# few thousand slots; all 65,536 made up front were 2.4 MB of every process) and only
# ever grows, so a reader that saw a length may index below it. Positions beyond
# _POSITIONS_HELD (a schedule with more slots) stay as made.
_POSITIONS: list[int] = list(range(1 << 10))
_POSITIONS_HELD = 1 << 16
_GROWING = threading.Lock()


def _grow_positions(stop: int) -> bool:
    """Make the table hold ``stop`` when it may; whether it does."""
    with _GROWING:
        held = len(_POSITIONS)
        if held <= stop < _POSITIONS_HELD:
            _POSITIONS.extend(range(held, min(max(stop + 1, 2 * held), _POSITIONS_HELD)))
        return stop < len(_POSITIONS)


def found(requirement: int, unit: Unit, first: int, stop: int) -> Found:
    """Another asset's part of an offer, its slot positions shared (as in :func:`remembered`)."""
    if stop < len(_POSITIONS) or _grow_positions(stop):
        first, stop = _POSITIONS[first], _POSITIONS[stop]
    return (requirement, unit, first, stop)


def remembered(
    offer: Offer, share: Callable[[Sequence[Found]], Sequence[Found]] | None = None
) -> Offer:
    """``offer`` as the memo keeps it: its slot positions shared ints, and with
    ``share`` (the memo's) its other assets' parts one object shared by equal parts.
    (The start in microseconds, kept for cheaper sorts, and the schedule id were 16
    more bytes an offer; sorting by the start instead is ~18% slower on the merges
    the plans keep, which run once per day.)"""
    start, ref, unit, day, first, stop, others = offer
    if others is not None and share is not None:
        others = share(others)
    if stop < len(_POSITIONS) or _grow_positions(stop):
        first, stop = _POSITIONS[first], _POSITIONS[stop]
    return (start, ref, unit, day, first, stop, others)


# (requirement index, unit, slots) of one asset of a chosen offer
Part = tuple[int, Unit, Sequence[Slot]]


@dataclass(slots=True)
class Candidate:
    """An offer that survived its visit type's selection, with every part resolved."""

    start: datetime
    end: datetime
    pref: int  # visit type's position in the request
    rule: VisitTypeRule
    primary: Unit
    site: str | None
    # (requirement index, unit, slots) for the primary, then every chosen other asset
    # in requirement order
    parts: list[Part]
    slot_ids: tuple[str, ...]  # of all parts, in that order

    def final_key(self) -> tuple[object, ...]:
        return (self.start, self.pref, self.primary.ref, self.end, self.slot_ids)
