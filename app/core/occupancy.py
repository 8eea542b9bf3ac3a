"""Which slots are taken, given the EHR's Slots and Appointments: plain Python over plain data.

A slot is taken when its own status says so, or when any active Appointment
references it, whatever the Slot says: a generic FHIR server accepts a booked
Appointment and leaves its Slot ``free``. Appointments arrive as FHIR JSON
dicts (R4 or STU3 spell ``Appointment.slot`` and ``status`` the same way).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import msgspec

from app.core.domain import Slot

# Appointment.status values that keep a slot from being offered (FHIR R4 and STU3).
ACTIVE_STATUSES = ("proposed", "pending", "booked", "arrived", "checked-in", "waitlist")
TAKEN = "busy"  # how a slot taken by an Appointment is recorded (the cache keeps free ones only)


def is_active(appointment: Mapping[str, Any]) -> bool:
    return appointment.get("status") in ACTIVE_STATUSES


def slot_ids_of(appointment: Mapping[str, Any]) -> list[str]:
    """The ids of the Slots an Appointment references (relative or absolute references)."""
    ids = []
    for ref in appointment.get("slot") or ():
        value = ref.get("reference") if isinstance(ref, Mapping) else None
        if isinstance(value, str) and "Slot/" in value:
            sid = value.rsplit("Slot/", 1)[1].split("/", 1)[0]
            if sid:
                ids.append(sid)
    return ids


def taken_slot_ids(
    appointments: Iterable[Mapping[str, Any]], *, ignore: Collection[str] = ()
) -> set[str]:
    """Ids of the slots referenced by an active appointment (``ignore``: appointment ids
    that do not count, such as the hold being booked)."""
    taken: set[str] = set()
    for appt in appointments:
        if is_active(appt) and appt.get("id") not in ignore:
            taken.update(slot_ids_of(appt))
    return taken


def mark_taken(slots: Iterable[Slot], taken: Collection[str]) -> list[Slot]:
    """The slots with those taken by an appointment marked busy, so that a snapshot
    drops them from the cache exactly like slots the EHR itself reports busy."""
    return [
        msgspec.structs.replace(s, status=TAKEN) if s.id in taken and s.status == "free" else s
        for s in slots
    ]


def unavailable(
    slot_ids: Iterable[str],
    found: Mapping[str, str | None],
    appointments: Iterable[Mapping[str, Any]],
    *,
    ignore: Collection[str] = (),
    busy_ok: bool = False,
) -> dict[str, str]:
    """Why each of ``slot_ids`` cannot be booked now, from the EHR's current state.

    ``found`` maps a slot id to its Slot.status at the EHR, or None when the EHR no
    longer has the slot (404/410); a slot missing from ``found`` counts as gone.
    ``busy_ok``: the Slot's own status does not count (booking our own hold, which
    an EHR may have marked busy). Returns ``{slot id: "gone" | "busy" | "taken"}``,
    empty when every slot is free.
    """
    taken = taken_slot_ids(appointments, ignore=ignore)
    why: dict[str, str] = {}
    for sid in dict.fromkeys(slot_ids):
        status = found.get(sid)
        if status is None:
            why[sid] = "gone"
        elif status != "free" and not busy_ok:
            why[sid] = "busy"
        elif sid in taken:
            why[sid] = "taken"
    return why
