"""What the EHR does for scheduling beyond plain reads, decided in one place.

The booking path comes from what the EHR's CapabilityStatement declares (read by
:mod:`app.sync.capabilities`), unless ``SLOTSYNC_EHR_BOOKING`` forces one; until a
CapabilityStatement has been read, the FHIR version decides (Argonaut STU3 EHRs
have the operations, plain R4 servers do not).

* :func:`booking_path`: ``operations`` = the EHR has ``$hold``/``$book`` (it checks
  and marks the slots itself); ``appointment`` = a plain server where a hold is a
  ``pending`` and a booking a ``booked`` ``POST Appointment``, which slotsync has to
  re-check before writing and whose lapsed holds slotsync has to cancel.

Whether a Slot's status alone can be trusted is
:attr:`app.fhir.versions.FhirVersion.slots_need_appointments`.
"""

from __future__ import annotations

from typing import Literal

from app.fhir.ehr_capabilities import EhrCapabilities
from app.fhir.versions import FhirVersion

BookingPath = Literal["operations", "appointment"]


def booking_path(
    version: FhirVersion, setting: str = "auto", capabilities: EhrCapabilities | None = None
) -> BookingPath:
    """``$hold``/``$book`` or plain Appointment writes: the setting if it names one, else
    what the EHR declares, else (nothing read yet) operations for STU3 only."""
    if setting == "operations":
        return "operations"
    if setting == "appointment":
        return "appointment"
    if capabilities is not None:
        return "operations" if capabilities.hold_and_book else "appointment"
    return "operations" if version.has_hold_and_book else "appointment"
