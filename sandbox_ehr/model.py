"""The sandbox's data model: organisation entities, schedules, slot columns and slot ids.

Kept apart from the generator (:mod:`sandbox_ehr.org`) because everything else
(store, renderer, search, appointments, routes) needs these types, codes and id
helpers, while only the store needs to build an organisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np

# Internal slot status codes (rendered per FHIR version by ``fhir_render``).
FREE, BUSY, TENTATIVE, UNAVAILABLE, HELD = 0, 1, 2, 3, 4
STATUS_NAMES = ("free", "busy", "busy-tentative", "busy-unavailable", "held")

PRACTITIONER_LENGTHS = (15, 20, 30)
ASSET_LENGTHS = (10, 15, 30)


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Clinic:
    id: str
    name: str
    line: str
    city: str
    state: str
    postal_code: str
    tz: str
    organization_id: str
    saturday: bool
    # what a directory shows of the clinic (Location.telecom, address.district, position)
    phone: str
    website: str
    email: str
    county: str
    latitude: float
    longitude: float

    @property
    def address_terms(self) -> tuple[str, ...]:
        return (self.line, self.city, self.state, self.postal_code)


@dataclass(frozen=True, slots=True)
class Practitioner:
    id: str
    given: str
    family: str
    gender: str
    specialty: str
    clinic_id: str
    npi: str


@dataclass(frozen=True, slots=True)
class Room:
    id: str
    name: str
    kind: str
    clinic_id: str


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    name: str
    kind: str
    clinic_id: str
    serial: str


@dataclass(frozen=True, slots=True)
class ScheduleDef:
    """One Schedule: the lowest schedulable entity plus what its slots offer."""

    index: int
    id: str
    kind: str  # "pr" | "room" | "dev"
    entity_ref: str  # the lowest schedulable entity, e.g. "Practitioner/pr-3"
    actor_refs: tuple[str, ...]
    clinic_index: int
    service_types: tuple[str, ...]  # visit-type codes
    specialty: str | None  # SNOMED code
    organization_ref: str
    address_terms: tuple[str, ...]  # lower-cased address parts for location-string

    @property
    def lengths(self) -> tuple[int, ...]:
        return PRACTITIONER_LENGTHS if self.kind == "pr" else ASSET_LENGTHS


@dataclass(slots=True)
class SlotArrays:
    """Flat per-slot columns; slot ``i`` has id ``slot_id(i)``."""

    start: np.ndarray  # int64 minutes since 1970-01-01T00:00Z
    dur: np.ndarray  # int16 minutes
    sched: np.ndarray  # int32 schedule index
    status: np.ndarray  # int8 status code

    def __len__(self) -> int:
        return len(self.start)


@dataclass(slots=True)
class Organisation:
    seed: int
    start_date: date
    horizon_days: int
    work_probability: float
    organizations: list[Organization]
    clinics: list[Clinic]
    practitioners: list[Practitioner]
    rooms: list[Room]
    devices: list[Device]
    schedules: list[ScheduleDef]
    layouts: dict[tuple[str, int], list[tuple[tuple[int, int], ...]]]
    resources: dict[str, object] = field(default_factory=dict)  # "Type/id" -> entity
    schedule_index: dict[str, int] = field(default_factory=dict)  # schedule id -> index
    schedules_by_actor: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for o in self.organizations:
            self.resources[f"Organization/{o.id}"] = o
        for c in self.clinics:
            self.resources[f"Location/{c.id}"] = c
        for p in self.practitioners:
            self.resources[f"Practitioner/{p.id}"] = p
        for r in self.rooms:
            self.resources[f"Location/{r.id}"] = r
        for d in self.devices:
            self.resources[f"Device/{d.id}"] = d
        for s in self.schedules:
            self.schedule_index[s.id] = s.index
            for ref in s.actor_refs:
                self.schedules_by_actor.setdefault(ref, []).append(s.index)

    def clinic_of(self, clinic_id: str) -> Clinic:
        entity = self.resources[f"Location/{clinic_id}"]
        assert isinstance(entity, Clinic)
        return entity

    @property
    def horizon_end(self) -> date:
        return self.start_date + timedelta(days=self.horizon_days)


def slot_id(index: int) -> str:
    """Zero-padded so that string order equals index order (paging sorts by (start, id))."""
    return f"sl-{index:08d}"


def slot_index(slot_id_: str) -> int | None:
    """Inverse of :func:`slot_id`; None for anything that is not a sandbox slot id."""
    if not slot_id_.startswith("sl-") or not slot_id_[3:].isdigit():
        return None
    return int(slot_id_[3:])


def epoch_minutes(moment: datetime) -> int:
    return int(moment.timestamp() // 60)
