"""Slots held as columns read back as the very slots they were made from."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.core.domain import Slot
from app.core.slot_columns import ColumnsBuilder, SlotColumns, slot_codes
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
    assert columns.codes == [slot_codes(s) for s in slots]
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
    codes: dict = {}
    built = []
    for sid in ("sch-1", "sch-2"):
        builder = ColumnsBuilder(sid, instants, codes)
        for s in _slots():
            # fresh but equal objects, as every database row brings
            builder.add(s.id, s.start + timedelta(0), s.end + timedelta(0), slot_codes(s))
        built.append(builder.build())
    first, second = built
    assert all(a is b for a, b in zip(first.starts, second.starts, strict=True))
    assert all(a is b for a, b in zip(first.codes, second.codes, strict=True))
    assert second[0].schedule_id == "sch-2"
