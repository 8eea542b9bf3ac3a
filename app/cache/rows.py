"""Reading rows: the columns queries select and the domain objects they make.

Shared by the repository, the free-slot reads and the claims overlay. A location's
address parts, telecom and position are JSON columns in FHIR's own field names, so
the two directions live here side by side.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, join, select

from app.core.domain import Actor, ContactPoint, Position, PostalAddress, Schedule, Slot

from .models import ActorRow, CodeSetRow, ScheduleRow, SlotRow

SLOT_COLUMNS = (
    SlotRow.id,
    SlotRow.schedule_id,
    SlotRow.start,
    SlotRow.end,
    SlotRow.status,
    CodeSetRow.service_types,
    CodeSetRow.specialties,
    CodeSetRow.appointment_types,
    SlotRow.overbooked,
    SlotRow.comment,
    SlotRow.version_id,
    SlotRow.ehr_last_updated,
)
# Slots with their code sets: what reads of slot codes select from (select_slots).
SLOTS_WITH_CODES = join(SlotRow, CodeSetRow, SlotRow.code_set_id == CodeSetRow.id)


def select_slots(*columns: Any) -> Select[Any]:
    """``SELECT columns FROM slots JOIN code_sets``: columns of a slot and its codes."""
    return select(*columns).select_from(SLOTS_WITH_CODES)


# The row ``select_slots(*SLOT_COLUMNS)`` yields, column by column (SQLAlchemy types rows
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
    ActorRow.postal_address,
    ActorRow.telecom,
    ActorRow.position,
)
# rows of the two column tuples above (schedule_from_row and actor_from_row read them
# by name, like the ORM entities they stand in for)
ScheduleRecord = Row[str, list[str], list[str], list[str], datetime | None, datetime | None]
ActorRecord = Row[
    str,
    str | None,
    list[str],
    str | None,
    str | None,
    str | None,
    dict[str, Any] | None,
    list[dict[str, str]],
    dict[str, float] | None,
]


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
        postal_address=address_from_json(row.postal_address),
        telecom=tuple(
            ContactPoint(p["system"], p["value"], p.get("use")) for p in row.telecom or ()
        ),
        position=Position(row.position["latitude"], row.position["longitude"])
        if row.position
        else None,
    )


_ADDRESS_FIELDS = (
    ("city", "city"),
    ("district", "district"),
    ("state", "state"),
    ("postal_code", "postalCode"),
    ("country", "country"),
)


def contact_json(actor: Actor) -> dict[str, Any]:
    """The JSON columns of an actor's address parts, telecom and position."""
    address: dict[str, Any] | None = None
    if actor.postal_address is not None:
        a = actor.postal_address
        address = {"line": list(a.line)} if a.line else {}
        address |= {key: getattr(a, name) for name, key in _ADDRESS_FIELDS if getattr(a, name)}
    return {
        "postal_address": address,
        "telecom": [
            {"system": p.system, "value": p.value} | ({"use": p.use} if p.use else {})
            for p in actor.telecom
        ],
        "position": {
            "latitude": actor.position.latitude,
            "longitude": actor.position.longitude,
        }
        if actor.position
        else None,
    }


def address_from_json(value: dict[str, Any] | None) -> PostalAddress | None:
    if value is None:
        return None
    return PostalAddress(
        line=tuple(value.get("line") or ()),
        **{name: value.get(key) for name, key in _ADDRESS_FIELDS},
    )
