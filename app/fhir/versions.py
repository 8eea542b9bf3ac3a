"""Everything slotsync does differently for the EHR's FHIR version, in one object.

``SLOTSYNC_EHR_FHIR_VERSION`` picks one :class:`FhirVersion` (:func:`fhir_version`);
the rest of the server asks it questions (does the EHR have ``$prefetch``? does a
Slot search name schedules?) instead of comparing version strings, so a third
version would be one more object here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.core.domain import Actor, ProposedAppointment

from .appointment import to_r4, to_stu3
from .subscription import subscription_r4, subscription_stu3

RenderAppointment = Callable[
    [ProposedAppointment, tuple[datetime, datetime], Mapping[str, Actor]], dict[str, Any]
]

HEARTBEAT_EXTENSION = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period"
)


@dataclass(frozen=True, slots=True)
class FhirVersion:
    name: str  # as SLOTSYNC_EHR_FHIR_VERSION spells it
    release: str  # CapabilityStatement.fhirVersion
    render_appointment: RenderAppointment
    # Argonaut STU3: Bundles of $find carry the avail-bundle profile.
    profiles_bundles: bool
    # Argonaut STU3 reads slots by Slot/$prefetch (filtered by actor); R4 by Slot search,
    # which names schedules and asks for changes since a time (_lastUpdated).
    has_prefetch: bool
    # Until the CapabilityStatement is read: does the EHR have $hold/$book?
    has_hold_and_book: bool
    # The fhir.resources models that validate what consumers send (R4B is wire-compatible
    # with R4).
    models: str
    # Where the EHR keeps no $prefetch bookkeeping, a slot is taken as soon as an active
    # Appointment references it, whatever the Slot says: the sync reads Appointments too.
    slots_need_appointments: bool

    @property
    def names_schedules(self) -> bool:
        """Whether a slot search can ask for one schedule's slots alone."""
        return not self.has_prefetch

    @property
    def changes_since(self) -> bool:
        """Whether a slot search can ask for what changed since a time."""
        return not self.has_prefetch

    def subscription(
        self, *, endpoint: str, secret: str | None, topic: str, heartbeat_seconds: int
    ) -> dict[str, Any]:
        """Our Subscription as this version spells it, heartbeats asked for."""
        if not self.has_prefetch:
            return subscription_r4(
                endpoint=endpoint, secret=secret, topic=topic, heartbeat_seconds=heartbeat_seconds
            )
        body = subscription_stu3(endpoint=endpoint, secret=secret)
        # The Argonaut profile has no heartbeat element; the backport extension is
        # understood by servers that send heartbeats at all, and ignored by the others.
        body["channel"]["extension"].append(
            {"url": HEARTBEAT_EXTENSION, "valueUnsignedInt": heartbeat_seconds}
        )
        return body


STU3 = FhirVersion(
    name="stu3",
    release="3.0.1",
    render_appointment=to_stu3,
    profiles_bundles=True,
    has_prefetch=True,
    models="fhir.resources.STU3",
    has_hold_and_book=True,
    slots_need_appointments=False,
)
R4 = FhirVersion(
    name="r4",
    release="4.0.1",
    render_appointment=to_r4,
    profiles_bundles=False,
    has_prefetch=False,
    models="fhir.resources.R4B",
    has_hold_and_book=False,
    slots_need_appointments=True,
)
VERSIONS = {version.name: version for version in (STU3, R4)}


def fhir_version(name: str) -> FhirVersion:
    """The one place a version's name becomes its behaviour."""
    try:
        return VERSIONS[name]
    except KeyError:
        raise ValueError(f"unknown FHIR version {name!r}: one of {sorted(VERSIONS)}") from None
