"""Which offers survive: a visit type's per-day cap, its ``ordering`` and ``_count``,
applied to bare offers.

Separate from the scan and the memo because both feed it: the offers of one
request's slots and the days the memo remembered are capped, ordered and cut the
same way. It works on bare tuples (:mod:`rules.offers`) in start order and never
looks at slots.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from operator import itemgetter
from typing import TypeVar

from rules.offers import Offer

_ref = itemgetter(1)
_ref_and_day = itemgetter(1, 3)
_T = TypeVar("_T")


def spread(items: list[_T], k: int) -> list[_T]:
    """``k`` items evenly spaced through ``items`` (first and last included)."""
    n = len(items)
    if n <= k:
        return items
    if k <= 1:
        return items[:k]
    return [items[round(i * (n - 1) / (k - 1))] for i in range(k)]


class Ordering:
    """One visit type's ``ordering`` and per-day cap with the request's ``_count``."""

    __slots__ = ("count", "kind", "per_day", "preference")

    def __init__(
        self, kind: str, per_day: int | None, count: int | None, preference: dict[str, int]
    ):
        self.kind = kind  # the rule's ordering: earliest, spread, practitioner-preference
        self.per_day = per_day  # offers per practitioner and day; None: no cap
        self.count = count
        self.preference = preference  # practitioner ref -> rank

    def take_earliest(self, merged: Iterable[Offer]) -> list[Offer]:
        """The per-day cap and ``_count`` applied to offers arriving in start order."""
        cap = self.per_day
        count = self.count
        per_day: dict[tuple[str, date], int] = defaultdict(int)
        out: list[Offer] = []
        if count == 0:
            return out
        for offer in merged:
            if cap is not None:
                key = _ref_and_day(offer)
                if per_day[key] >= cap:
                    continue
                per_day[key] += 1
            out.append(offer)
            if count is not None and len(out) >= count:
                break
        return out

    def select(self, offers: list[Offer]) -> list[Offer]:
        """Apply the per-day cap and ``_count`` in the rule's ordering."""
        ordering = self.kind
        cap = self.per_day
        if cap is not None:
            # Cap each practitioner-day (its offers in start order), then order what is
            # left: sorting the survivors is cheaper than sorting every candidate.
            groups: dict[tuple[str, date], list[Offer]] = defaultdict(list)
            for offer in offers:
                groups[_ref_and_day(offer)].append(offer)
            offers = []
            for group in groups.values():
                group.sort()  # usually sorted already: one unit's offers
                offers += spread(group, cap) if ordering == "spread" else group[:cap]
        offers.sort()  # by start, primary asset, schedule
        return self.rank_and_count(offers)

    def rank_and_count(self, offers: list[Offer]) -> list[Offer]:
        """The rule's ordering and ``_count`` over capped offers sorted by start."""
        ordering = self.kind
        if ordering == "practitioner-preference":
            rank, last = self.preference.get, len(self.preference)
            offers.sort(key=lambda o: rank(_ref(o), last))  # stable: earliest first per rank
        count = self.count
        if count is not None:
            offers = spread(offers, count) if ordering == "spread" else offers[:count]
        return offers

    def cap(self, offers: list[Offer], cap: int) -> list[Offer]:
        """What the per-day cap keeps of one practitioner-day in start order."""
        return spread(offers, cap) if self.kind == "spread" else offers[:cap]
