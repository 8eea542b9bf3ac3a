"""Lists read one after another as one sequence, none of them copied.

Why: a broad ``$find`` (every visit type, 30 days) selects tens of thousands of
offers from the memo's merged days, counts them all and shows a hundred. Copying
the days into one list per visit type touched every offer tuple twice (a reference
count up, and down again when the list went), scattered over the heap: ~6 % of such
a request. The days are kept lists that no reader changes, so the selection hands
them on joined instead.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from itertools import accumulate, chain, islice
from typing import TypeVar, overload

T = TypeVar("T")


class Joined(Sequence[T]):
    """``parts`` read in order as one sequence (they must not change while it is read)."""

    __slots__ = ("_ends", "_parts")

    def __init__(self, parts: list[list[T]]):
        self._parts = parts
        self._ends = list(accumulate(map(len, parts)))  # where each part ends in the whole

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    @overload
    def __getitem__(self, i: int) -> T: ...
    @overload
    def __getitem__(self, i: slice) -> list[T]: ...
    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            return list(chain.from_iterable(self._parts))[i]
        size = len(self)
        if i < 0:
            i += size
        if not 0 <= i < size:
            raise IndexError("Joined index out of range")
        part, offset = self._locate(i)
        return self._parts[part][offset]

    def __iter__(self) -> Iterator[T]:
        return chain.from_iterable(self._parts)

    def head(self, count: int) -> list[T]:
        """The first ``count`` items, as a list."""
        return list(islice(chain.from_iterable(self._parts), count))

    def from_position(self, first: int) -> Iterator[T]:
        """The items from position ``first`` on, without stepping over those before."""
        if first >= len(self):
            return iter(())
        part, skip = self._locate(first)
        rest = self._parts[part + 1 :]
        return chain(islice(self._parts[part], skip, None), chain.from_iterable(rest))

    def _locate(self, i: int) -> tuple[int, int]:
        """``(part, offset)`` of position ``i`` (0 <= i < len)."""
        part = bisect_right(self._ends, i)
        return part, i - (self._ends[part - 1] if part else 0)


def items_from(items: Sequence[T], first: int) -> Iterator[T]:
    """``items[first:]`` one by one, without copying a list or a :class:`Joined`."""
    if isinstance(items, Joined):
        return items.from_position(first)
    return (items[i] for i in range(first, len(items)))
