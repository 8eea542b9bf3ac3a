"""The $find service: read free slots from the cache and compose proposed appointments.

Called by the API; plain function over a session so it can be tested without HTTP.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.cache import repository as repo
from app.domain import Actor, Participant, ProposedAppointment, Schedule, Slot
from app.fhir.find_params import FindQuery


@dataclass(frozen=True, slots=True)
class FindResult:
    appointments: list[ProposedAppointment]
    actors: dict[str, Actor]
    oldest_confirmation: datetime | None
    total: int


def _one_per_slot(slot: Slot, schedule: Schedule, actors: dict[str, Actor]) -> ProposedAppointment:
    digest = hashlib.sha256(slot.id.encode()).hexdigest()[:40]
    return ProposedAppointment(
        id=f"p{digest}",
        start=slot.start,
        end=slot.end,
        slot_ids=(slot.id,),
        participants=tuple(
            Participant(ref=ref, display=actors[ref].display if ref in actors else None)
            for ref in schedule.actor_refs
        ),
        service_types=slot.service_types or schedule.service_types,
        specialties=slot.specialties or schedule.specialties,
        schedule_ids=(schedule.id,),
    )


def find_appointments(session: Session, query: FindQuery) -> FindResult:
    schedule_ids = repo.schedule_ids_for_actors(session, [query.practitioners, query.locations])
    if schedule_ids is not None and not schedule_ids:
        return FindResult([], {}, None, 0)
    slots = repo.free_slots(session, query.start, query.end, schedule_ids)
    schedules = repo.schedules_by_id(session, {s.schedule_id for s in slots})
    actors = repo.actors_by_ref(session, {r for s in schedules.values() for r in s.actor_refs})
    appointments = [
        _one_per_slot(slot, schedules[slot.schedule_id], actors)
        for slot in slots
        if slot.schedule_id in schedules
    ]
    total = len(appointments)
    if query.count is not None:
        appointments = appointments[: query.count]
    used = {sid for a in appointments for sid in a.schedule_ids}
    confirmations = repo.schedule_confirmations(session, used) if used else {}
    return FindResult(
        appointments=appointments,
        actors=actors,
        oldest_confirmation=min(confirmations.values()) if confirmations else None,
        total=total,
    )
