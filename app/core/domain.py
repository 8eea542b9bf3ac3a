"""The one internal model of slots, schedules, actors and proposed appointments.

Plain frozen dataclasses (and one Struct, :class:`Slot`) over plain data: FHIR JSON
exists only at the edges (`app.fhir`), SQL only in `app.cache`. Codes are kept as FHIR
token strings ``"system|code"`` so that they compare, hash and serialise trivially.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import msgspec

VISIT_TYPE_SYSTEM = "http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type"
APPT_TYPE_SYSTEM = "http://fhir.org/guides/argonaut-scheduling/CodeSystem/appt-type"
SNOMED = "http://snomed.info/sct"


def token(system: str | None, code: str) -> str:
    """A code as a FHIR token string; a code without system keeps a bare ``|code``."""
    return f"{system or ''}|{code}"


def split_token(value: str) -> tuple[str | None, str]:
    """Inverse of :func:`token`: ``"sys|code"`` -> ``("sys", "code")``."""
    system, sep, code = value.rpartition("|")
    if not sep:
        return None, value
    return (system or None), code


@dataclass(frozen=True, slots=True)
class PostalAddress:
    """A postal address in parts, as the EHR states it (FHIR ``Address``)."""

    line: tuple[str, ...] = ()
    city: str | None = None
    district: str | None = None  # the county
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None


@dataclass(frozen=True, slots=True)
class ContactPoint:
    """One way to reach a location (FHIR ``ContactPoint``): phone, url, email, fax..."""

    system: str
    value: str
    use: str | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """Where a location is on the map (WGS84 degrees)."""

    latitude: float
    longitude: float


@dataclass(frozen=True, slots=True)
class Actor:
    """A schedulable or referenced resource: practitioner, location, room, device, service."""

    ref: str  # "Practitioner/123"
    display: str | None = None
    codes: tuple[str, ...] = ()  # specialties, room kinds, device kinds as tokens
    address: str | None = None  # free text (line, city, state, zip) for location-string search
    part_of: str | None = None  # "Location/clinic-1" for a room inside a clinic
    timezone: str | None = None  # IANA zone where the EHR states one
    # what the EHR says of a location, for directories (the SMART Scheduling Links feed)
    postal_address: PostalAddress | None = None
    telecom: tuple[ContactPoint, ...] = ()
    position: Position | None = None

    @property
    def resource_type(self) -> str:
        return self.ref.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class Schedule:
    """The EHR Schedule of one lowest schedulable entity (and its location)."""

    id: str
    actor_refs: tuple[str, ...]
    service_types: tuple[str, ...] = ()
    specialties: tuple[str, ...] = ()
    horizon_start: datetime | None = None
    horizon_end: datetime | None = None


class Slot(msgspec.Struct, frozen=True, gc=False):
    """A slot as cached; times are timezone-aware and normalised to UTC.

    A msgspec Struct, not a dataclass like its neighbours, because a load builds one
    per slot (a million for a large organisation): a Struct is built in C, about 20
    times faster than a frozen dataclass (70 ns against 1.5 µs, a tenth of a load's
    worker CPU), and, holding only strings, times and tuples of strings, it can never
    be part of a reference cycle, so the collector does not track it (``gc=False``)
    and never walks the slots of the chunks in flight. It is as immutable, compares
    and hashes by value alike; copy one changed with :func:`msgspec.structs.replace`.
    """

    id: str
    schedule_id: str
    start: datetime
    end: datetime
    status: str = "free"
    service_types: tuple[str, ...] = ()
    specialties: tuple[str, ...] = ()
    appointment_types: tuple[str, ...] = ()
    overbooked: bool = False
    comment: str | None = None
    version_id: str | None = None
    last_updated: datetime | None = None


# A slot's codes, as it holds them: (service types, specialties, appointment types).
# The cache keeps each distinct one once (a code set) and slots name it.
CodeSet = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Participant:
    """One participant of a proposed appointment."""

    ref: str | None
    display: str | None = None
    required: str = "required"  # required | optional | information-only
    status: str = "needs-action"


@dataclass(frozen=True, slots=True)
class ProposedAppointment:
    """An appointment the server offers: every required asset is free for its whole span."""

    id: str
    start: datetime
    end: datetime
    slot_ids: tuple[str, ...]
    participants: tuple[Participant, ...]
    service_types: tuple[str, ...] = ()
    specialties: tuple[str, ...] = ()
    appointment_type: str | None = None
    visit_type_display: str | None = None
    schedule_ids: tuple[str, ...] = field(default=())

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)
