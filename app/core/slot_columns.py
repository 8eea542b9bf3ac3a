"""One schedule's free slots as columns, not one object per slot.

Why: every API process holds every free slot in memory (the slot index), and a
:class:`~app.core.domain.Slot` object costs ~190 bytes with its id string, ~250 MB
of a process at a million slots, and a million objects for the garbage collector to
walk. Held as columns the same slots cost ~20-30 bytes each:

- ``starts``, ``ends``: lists of the slots' instants, 8 bytes a slot each; the
  instants themselves are shared (slots sit on a grid of a few thousand times), and
  they are what the composer binary-searches, so it searches these very lists;
- ``codes``: per slot, the number of its ``(service_types, appointment_types,
  specialties)`` combination (:func:`code_number`; an organisation has a handful),
  2 bytes in an ``array``: a qualifier decides once per number, and hashing an int
  is cheaper than hashing the nested tuple;
- ids: what follows the prefix all of the schedule's ids share (an EHR's ids of one
  schedule often do: the sandbox's share 7 of their 11 characters), one ``bytes`` of
  those back to back, and an ``array`` of offsets into it: 4 bytes plus the rest of
  the id's length.

It is a read-only :class:`~collections.abc.Sequence` of slots: a :class:`Slot` is
made only for the position asked (a request's offers need a few dozen of a
schedule's thousands). A slice makes a list of them; :meth:`part` is the cheap cut
that stays columnar. Never changed once built, so that a consumer may trust its
identity (the composer's offer memo does).
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import pairwise
from os.path import commonprefix
from typing import overload

from app.core.domain import Slot

# What decides whether a slot qualifies for a visit type, in the composer's order.
Codes = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]

# A slot's part of the columns besides its code number (2 bytes, 4 past 65,535
# combinations) and id: 8 bytes in each of starts and ends, 4 of offset.
FIXED_BYTES_PER_SLOT = 20

# Every code combination this process has met, numbered in order of arrival. Only ever
# grows (numbers are held in columns and qualifiers' verdicts): combinations come from
# the EHR's code systems, a handful per organisation, not one per slot.
_COMBINATIONS: list[Codes] = []
_NUMBERS: dict[Codes, int] = {}
_NUMBERING = threading.Lock()


def slot_codes(slot: Slot) -> Codes:
    return (slot.service_types, slot.appointment_types, slot.specialties)


def code_number(codes: Codes) -> int:
    """The process-wide number of a code combination (see :data:`_COMBINATIONS`)."""
    number = _NUMBERS.get(codes)
    if number is None:
        with _NUMBERING:
            number = _NUMBERS.get(codes)
            if number is None:
                number = len(_COMBINATIONS)
                _COMBINATIONS.append(codes)
                _NUMBERS[codes] = number
    return number


def numbered_codes(number: int) -> Codes:
    """The code combination of :func:`code_number`'s ``number``."""
    return _COMBINATIONS[number]


class SlotColumns(Sequence[Slot]):
    """Free slots of one schedule as columns (see the module doc), in the order given."""

    __slots__ = ("_ids", "_offsets", "_prefix", "codes", "ends", "schedule_id", "starts")

    def __init__(
        self,
        schedule_id: str,
        starts: list[datetime],
        ends: list[datetime],
        codes: array[int],
        ids: bytes,
        offsets: array[int],
        prefix: str = "",
    ):
        self.schedule_id = schedule_id
        self.starts = starts
        self.ends = ends
        self.codes = codes  # code numbers (code_number)
        self._ids = ids  # may be shared with the columns this was cut from (part)
        self._offsets = offsets  # len(self) + 1 positions into _ids
        self._prefix = prefix  # of every id; _ids holds what follows it

    @classmethod
    def of(cls, schedule_id: str, slots: Iterable[Slot]) -> SlotColumns:
        """Columns of ``slots`` (all of ``schedule_id``), in the order given."""
        builder = ColumnsBuilder(schedule_id)
        for s in slots:
            builder.add(s.id, s.start, s.end, slot_codes(s))
        return builder.build()

    def __len__(self) -> int:
        return len(self.starts)

    @overload
    def __getitem__(self, index: int) -> Slot: ...

    @overload
    def __getitem__(self, index: slice) -> list[Slot]: ...

    def __getitem__(self, index: int | slice) -> Slot | list[Slot]:
        if isinstance(index, slice):
            return [self._slot(i) for i in range(*index.indices(len(self.starts)))]
        n = len(self.starts)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("slot index out of range")
        return self._slot(index)

    def __iter__(self) -> Iterator[Slot]:
        return map(self._slot, range(len(self.starts)))

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same slots (a list of them, say)."""
        if other is self:
            return True
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # compared by content, as a list is

    def __repr__(self) -> str:
        return f"SlotColumns({self.schedule_id!r}, {len(self)} slots)"

    def id_at(self, i: int) -> str:
        offsets = self._offsets
        return self._prefix + self._ids[offsets[i] : offsets[i + 1]].decode()

    def ids_between(self, first: int, stop: int) -> tuple[str, ...]:
        """The ids of positions ``[first, stop)``, without a slot made for each."""
        ids, offsets, prefix = self._ids, self._offsets, self._prefix
        if stop - first == 2:  # a visit on two joined slots, the usual case: no loop
            a, b, c = offsets[first], offsets[first + 1], offsets[first + 2]
            return (prefix + ids[a:b].decode(), prefix + ids[b:c].decode())
        return tuple([prefix + ids[a:b].decode() for a, b in pairwise(offsets[first : stop + 1])])

    def ids(self) -> list[str]:
        ids, prefix = self._ids, self._prefix
        return [prefix + ids[a:b].decode() for a, b in pairwise(self._offsets)]

    def part(self, first: int, stop: int) -> SlotColumns:
        """Positions ``[first, stop)`` as columns of their own (the ids are shared)."""
        return SlotColumns(
            self.schedule_id,
            self.starts[first:stop],
            self.ends[first:stop],
            self.codes[first:stop],
            self._ids,
            self._offsets[first : stop + 1],
            self._prefix,
        )

    def _slot(self, i: int) -> Slot:
        service_types, appointment_types, specialties = _COMBINATIONS[self.codes[i]]
        offsets = self._offsets
        return Slot(
            id=self._prefix + self._ids[offsets[i] : offsets[i + 1]].decode(),
            schedule_id=self.schedule_id,
            start=self.starts[i],
            end=self.ends[i],
            service_types=service_types,
            specialties=specialties,
            appointment_types=appointment_types,
        )

    @property
    def nbytes(self) -> int:
        """What the columns hold beyond the shared instants and code tuples."""
        fixed = (FIXED_BYTES_PER_SLOT + self.codes.itemsize) * len(self)
        return fixed + len(self._ids) + len(self._prefix.encode())


class ColumnsBuilder:
    """Builds one :class:`SlotColumns` slot by slot. ``instants``: the table equal
    instants are shared through (one per index, so that every schedule's columns point
    at the same objects)."""

    __slots__ = (
        "_ids",
        "_instants",
        "_offsets",
        "_prefix",
        "codes",
        "ends",
        "schedule_id",
        "starts",
    )

    def __init__(
        self,
        schedule_id: str,
        instants: dict[datetime, datetime] | None = None,
    ):
        self.schedule_id = schedule_id
        self._instants = {} if instants is None else instants
        self.starts: list[datetime] = []
        self.ends: list[datetime] = []
        self.codes = array("H")
        self._ids = bytearray()
        self._offsets = array("I", (0,))
        self._prefix: str | None = None  # shared by every id added so far

    def add(self, slot_id: str, start: datetime, end: datetime, codes: Codes) -> None:
        instants = self._instants
        self.starts.append(instants.setdefault(start, start))
        self.ends.append(instants.setdefault(end, end))
        number = code_number(codes)
        if number > 0xFFFF and self.codes.typecode == "H":
            self.codes = array("I", self.codes)
        self.codes.append(number)
        self._ids += slot_id.encode()
        self._offsets.append(len(self._ids))
        prefix = self._prefix
        if prefix is None:
            self._prefix = slot_id
        elif not slot_id.startswith(prefix):
            # character by character is what is wanted here (ids, not paths)
            self._prefix = commonprefix((prefix, slot_id))  # noqa: RUF071

    def build(self) -> SlotColumns:
        """The columns, each id stored without the prefix they all share (UTF-8 keeps a
        common prefix of the strings a common prefix of their bytes)."""
        prefix = self._prefix or ""
        cut = len(prefix.encode())
        ids, offsets = self._ids, self._offsets
        if cut:
            with memoryview(ids) as whole:
                rest = b"".join([whole[a + cut : b] for a, b in pairwise(offsets)])
            offsets = array("I", (a - cut * n for n, a in enumerate(offsets)))
        else:
            rest = bytes(ids)
        return SlotColumns(
            self.schedule_id, self.starts, self.ends, self.codes, rest, offsets, prefix
        )
