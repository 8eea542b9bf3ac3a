"""What the EHR does for scheduling beyond plain reads, decided in one place.

The booking path comes from what the EHR's CapabilityStatement declares (read by
:mod:`app.sync.capabilities`), unless ``SLOTSYNC_EHR_BOOKING`` forces one; until a
CapabilityStatement has been read, the FHIR version decides (Argonaut STU3 EHRs
have the operations, plain R4 servers do not).

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

from app.fhir.ehr_capabilities import EhrCapabilities

BookingPath = Literal["operations", "appointment"]


def booking_path(
    fhir_version: str, setting: str = "auto", capabilities: EhrCapabilities | None = None
) -> BookingPath:
    """``$hold``/``$book`` or plain Appointment writes: the setting if it names one, else
    what the EHR declares, else (nothing read yet) operations for STU3 only."""
    if setting == "operations":
        return "operations"
    if setting == "appointment":
        return "appointment"
    if capabilities is not None:
        return "operations" if capabilities.hold_and_book else "appointment"
    return "operations" if fhir_version == "stu3" else "appointment"


def reads_appointments(fhir_version: str) -> bool:
    """True where availability must be read from Appointments too (no ``$prefetch``)."""
    return fhir_version != "stu3"
