"""What the EHR does for scheduling beyond plain reads, decided in one place.

For now the answers come from settings (``SLOTSYNC_EHR_FHIR_VERSION`` and
``SLOTSYNC_EHR_BOOKING``); capability discovery can later feed the same two
functions from the EHR's CapabilityStatement, and every caller follows.

* :func:`booking_path`: ``operations`` = the EHR has ``$hold``/``$book`` (it checks
  and marks the slots itself); ``appointment`` = a plain server where a hold is a
  ``pending`` and a booking a ``booked`` ``POST Appointment``, which slotsync has to
  re-check before writing and whose lapsed holds slotsync has to cancel.
* :func:`reads_appointments`: whether a Slot's status alone can be trusted. Where
  the EHR has no ``$prefetch`` bookkeeping (plain R4 Slot search), a slot is taken
  as soon as an active Appointment references it, whatever the Slot says, so the
  sync reads the window's Appointments beside its Slots.
"""

from __future__ import annotations

from typing import Literal

BookingPath = Literal["operations", "appointment"]


def booking_path(fhir_version: str, setting: str = "auto") -> BookingPath:
    """``$hold``/``$book`` or plain Appointment writes (auto: operations for STU3 only)."""
    if setting == "operations":
        return "operations"
    if setting == "appointment":
        return "appointment"
    return "operations" if fhir_version == "stu3" else "appointment"


def reads_appointments(fhir_version: str) -> bool:
    """True where availability must be read from Appointments too (no ``$prefetch``)."""
    return fhir_version != "stu3"
