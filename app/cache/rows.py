"""Reading rows: the columns queries select and the domain objects they make.

Shared by the repository, the free-slot reads and the claims overlay.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Row

from app.core.domain import Actor, Schedule, Slot

from .models import ActorRow, ScheduleRow, SlotRow

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


SCHEDULE_COLUMNS = (
    ScheduleRow.id,
    ScheduleRow.actor_refs,
    ScheduleRow.service_types,
    ScheduleRow.specialties,
    ScheduleRow.horizon_start,
    ScheduleRow.horizon_end,
)
ACTOR_COLUMNS = (
    ActorRow.ref,
    ActorRow.display,
    ActorRow.codes,
    ActorRow.address,
    ActorRow.part_of,
    ActorRow.timezone,
)
# rows of the two column tuples above (schedule_from_row and actor_from_row read them
# by name, like the ORM entities they stand in for)
ScheduleRecord = Row[str, list[str], list[str], list[str], datetime | None, datetime | None]
ActorRecord = Row[str, str | None, list[str], str | None, str | None, str | None]


def schedule_from_row(row: ScheduleRow | ScheduleRecord) -> Schedule:
    return Schedule(
        id=row.id,
        actor_refs=tuple(row.actor_refs or ()),
        service_types=tuple(row.service_types or ()),
        specialties=tuple(row.specialties or ()),
        horizon_start=row.horizon_start,
        horizon_end=row.horizon_end,
    )


def actor_from_row(row: ActorRow | ActorRecord) -> Actor:
    return Actor(
        ref=row.ref,
        display=row.display,
        codes=tuple(row.codes or ()),
        address=row.address,
        part_of=row.part_of,
        timezone=row.timezone,
    )
