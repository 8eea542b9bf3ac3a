"""Reading slot rows: the columns every slot query selects and the Slot they make.

Shared by the repository and the claims overlay, which both read slots.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Row

from app.core.domain import Slot

from .models import SlotRow

SLOT_COLUMNS = (
    SlotRow.id,
    SlotRow.schedule_id,
    SlotRow.start,
    SlotRow.end,
    SlotRow.status,
    SlotRow.service_types,
    SlotRow.specialties,
    SlotRow.appointment_types,
    SlotRow.overbooked,
    SlotRow.comment,
    SlotRow.version_id,
    SlotRow.ehr_last_updated,
)
# The row ``select(*SLOT_COLUMNS)`` yields, column by column (SQLAlchemy types rows
# per selected column, so a bare ``Row[Any]`` would mean a one-column row).
SlotRecord = Row[
    str,
    str,
    datetime,
    datetime,
    str,
    list[str],
    list[str],
    list[str],
    bool,
    str | None,
    str | None,
    datetime | None,
]


def slot_from_row(row: SlotRecord) -> Slot:
    return Slot(
        id=row[0],
        schedule_id=row[1],
        start=row[2],
        end=row[3],
        status=row[4],
        service_types=tuple(row[5] or ()),
        specialties=tuple(row[6] or ()),
        appointment_types=tuple(row[7] or ()),
        overbooked=bool(row[8]),
        comment=row[9],
        version_id=row[10],
        last_updated=row[11],
    )
