"""Which slots are taken, from Slots and Appointments as plain data."""

from __future__ import annotations

from typing import Any

from app.core.occupancy import (
    ACTIVE_STATUSES,
    mark_taken,
    slot_ids_of,
    taken_slot_ids,
    unavailable,
)
from app.ehr.booking_path import booking_path
from app.fhir.versions import R4, STU3
from tests.factories import slot


def appt(rid: str, status: str, *slots: str) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": rid,
        "status": status,
        "slot": [{"reference": ref} for ref in slots],
    }


def test_every_active_status_takes_its_slots_and_no_other_does() -> None:
    statuses = [*ACTIVE_STATUSES, "cancelled", "noshow", "fulfilled", "entered-in-error"]
    appointments = [appt(f"a{n}", st, f"Slot/s{n}") for n, st in enumerate(statuses)]
    assert taken_slot_ids(appointments) == {f"s{n}" for n in range(len(ACTIVE_STATUSES))}
    assert set(ACTIVE_STATUSES) == {
        "proposed", "pending", "booked", "arrived", "checked-in", "waitlist",
    }  # fmt: skip


def test_slot_references_relative_absolute_and_versioned() -> None:
    a = appt("a", "booked", "Slot/s1", "https://ehr.example/fhir/Slot/s2", "Slot/s3/_history/2")
    a["slot"] += [{"display": "no reference"}, "junk", {"reference": "Schedule/x"}]
    assert slot_ids_of(a) == ["s1", "s2", "s3"]


def test_ignored_appointments_do_not_count() -> None:
    appointments = [appt("hold-1", "pending", "Slot/s1"), appt("other", "booked", "Slot/s2")]
    assert taken_slot_ids(appointments, ignore={"hold-1"}) == {"s2"}


def test_taken_slots_become_busy_whatever_the_slot_says() -> None:
    slots = [slot(0), slot(1), slot(2, status="busy")]
    marked = mark_taken(slots, {slots[1].id, slots[2].id})
    assert [s.status for s in marked] == ["free", "busy", "busy"]
    assert marked[0] is slots[0] and marked[1].start == slots[1].start


def test_why_a_slot_cannot_be_booked() -> None:
    found = {"s1": "free", "s2": "busy", "s3": None, "s4": "free", "s5": "busy-tentative"}
    appointments = [appt("a", "booked", "Slot/s4"), appt("b", "cancelled", "Slot/s1")]
    why = unavailable(["s1", "s2", "s3", "s4", "s5", "s6", "s1"], found, appointments)
    assert why == {
        "s2": "busy", "s3": "gone", "s4": "taken", "s5": "busy", "s6": "gone",
    }  # fmt: skip
    assert unavailable(["s4"], found, appointments, ignore={"a"}) == {}
    assert unavailable(["s2", "s3"], found, [], busy_ok=True) == {"s3": "gone"}


def test_booking_path_follows_the_setting_then_the_fhir_version() -> None:
    assert booking_path(STU3) == "operations" and booking_path(R4) == "appointment"
    assert booking_path(R4, "operations") == "operations"
    assert booking_path(STU3, "appointment") == "appointment"
    assert R4.slots_need_appointments and not STU3.slots_need_appointments
