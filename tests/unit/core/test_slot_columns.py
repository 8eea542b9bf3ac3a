"""Slots held as columns read back as the very slots they were made from."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.core import slot_columns
from app.core.domain import Slot
from app.core.slot_columns import (
    ColumnsBuilder,
    SlotColumns,
    code_number,
    numbered_codes,
    slot_codes,
)
from tests.factories import T0


def _slots() -> list[Slot]:
    return [
        Slot(
            id=f"sl-{n}-é" if n == 2 else f"sl-{n}",
            schedule_id="sch-1",
            start=T0 + timedelta(minutes=20 * n),
            end=T0 + timedelta(minutes=20 * n + 15),
            service_types=("st|a",) if n % 2 else ("st|b", "st|c"),
            specialties=("sp|x",),
            appointment_types=() if n < 3 else ("at|y",),
        )
        for n in range(5)
    ]


def test_columns_read_back_every_slot_and_slice() -> None:
    slots = _slots()
    columns = SlotColumns.of("sch-1", slots)
    assert len(columns) == 5
    assert list(columns) == slots
    assert columns[2] == slots[2] and columns[-1] == slots[-1]
    assert columns[1:4] == slots[1:4]
    assert columns == slots and columns != slots[:4]
    assert columns.ids() == [s.id for s in slots]
    assert columns.starts == [s.start for s in slots]
    assert [numbered_codes(n) for n in columns.codes] == [slot_codes(s) for s in slots]
    assert columns.codes.itemsize == 2  # a number each, not a tuple
    with pytest.raises(IndexError):
        columns[5]


def test_a_part_is_the_same_slots_as_columns_of_their_own() -> None:
    slots = _slots()
    columns = SlotColumns.of("sch-1", slots)
    part = columns.part(1, 4)
    assert isinstance(part, SlotColumns)
    assert list(part) == slots[1:4]
    assert part.id_at(1) == slots[2].id
    assert list(columns.part(3, 3)) == []
    # ids of a run of positions, of the columns and of a part cut from them
    assert columns.ids_between(1, 4) == tuple(s.id for s in slots[1:4])
    assert part.ids_between(1, 3) == (slots[2].id, slots[3].id)
    assert columns.ids_between(2, 2) == ()


def test_equal_instants_and_codes_are_shared_across_schedules() -> None:
    instants: dict = {}
    built = []
    for sid in ("sch-1", "sch-2"):
        builder = ColumnsBuilder(sid, instants)
        for s in _slots():
            # fresh but equal objects, as every database row brings
            builder.add(s.id, s.start + timedelta(0), s.end + timedelta(0), slot_codes(s))
        built.append(builder.build())
    first, second = built
    assert all(a is b for a, b in zip(first.starts, second.starts, strict=True))
    assert list(first.codes) == list(second.codes)
    assert second[0].schedule_id == "sch-2"


def test_code_numbers_are_one_per_combination_and_read_back() -> None:
    """Equal combinations (fresh tuples, as every row brings) get one number; distinct
    ones distinct numbers; a number reads back its combination."""
    combos = {slot_codes(s) for s in _slots()}
    numbers = {code_number(c) for c in combos}
    assert len(numbers) == len(combos)
    for combo in combos:
        fresh = tuple(tuple(list(part)) for part in combo)
        assert code_number(fresh) == code_number(combo)  # type: ignore[arg-type]
        assert numbered_codes(code_number(combo)) == combo


def test_columns_widen_past_65535_combinations(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2-byte number column becomes 4-byte when a combination numbered past 65,535
    arrives, and every slot still reads back its own codes."""
    slots = _slots()
    early = slot_codes(slots[0])
    # a process that has met 65,536 combinations already (the table only grows)
    monkeypatch.setattr(slot_columns, "_COMBINATIONS", [early] * 0x10000)
    monkeypatch.setattr(slot_columns, "_NUMBERS", {early: 0})
    builder = ColumnsBuilder("sch-1")
    builder.add(slots[0].id, slots[0].start, slots[0].end, early)
    assert builder.codes.itemsize == 2
    late = (("st|wide",), (), ("sp|late",))
    builder.add("late", slots[1].start, slots[1].end, late)
    columns = builder.build()
    assert columns.codes.itemsize == 4
    assert list(columns.codes) == [0, 0x10000]
    assert columns[0] == slots[0]
    assert (columns[1].service_types, columns[1].specialties) == (late[0], late[2])


@pytest.mark.parametrize(
    ("ids", "prefix"),
    [
        (["sch-9/sl-00012", "sch-9/sl-00013", "sch-9/sl-00107"], "sch-9/sl-00"),
        (["é-1", "é-2"], "é-"),  # a prefix ending in a two-byte character
        (["é1", "è2"], ""),  # the same first byte, not the same character
        (["a", "ab", "abc"], "a"),  # an id that is the whole prefix
        (["only"], "only"),
        (["x1", "y1"], ""),
    ],
)
def test_ids_are_held_once_past_their_shared_prefix(ids: list[str], prefix: str) -> None:
    base = _slots()[0]
    slots = [
        Slot(
            id=sid,
            schedule_id="sch-1",
            start=base.start + timedelta(minutes=20 * n),
            end=base.end + timedelta(minutes=20 * n),
            service_types=base.service_types,
            specialties=base.specialties,
            appointment_types=base.appointment_types,
        )
        for n, sid in enumerate(ids)
    ]
    columns = SlotColumns.of("sch-1", slots)
    assert columns.ids() == ids and list(columns) == slots
    assert [columns.id_at(i) for i in range(len(ids))] == ids
    assert columns.ids_between(0, len(ids)) == tuple(ids)
    part = columns.part(1, len(ids))
    assert part.ids() == ids[1:] and list(part) == slots[1:]
    held = sum(len(i.encode()) for i in ids) - len(prefix.encode()) * (len(ids) - 1)
    assert columns.nbytes == (2 + 20) * len(ids) + held
