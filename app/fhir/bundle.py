"""Building the avail-bundle (searchset of proposed Appointments) as plain dicts.

Hot path of $find: no model validation here (tests validate with fhir.resources).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.domain import ProposedAppointment, split_token

ARGO_APPT = "http://fhir.org/guides/argonaut-scheduling/StructureDefinition/argo-appt"
AVAIL_BUNDLE = "http://fhir.org/guides/argonaut-scheduling/StructureDefinition/avail-bundle"


def instant(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def concept(tok: str) -> dict[str, Any]:
    system, code = split_token(tok)
    coding: dict[str, Any] = {"code": code}
    if system:
        coding = {"system": system, "code": code}
    return {"coding": [coding]}


def appointment_stu3(
    appt: ProposedAppointment, requested: tuple[datetime, datetime]
) -> dict[str, Any]:
    participants = []
    for p in appt.participants:
        actor: dict[str, Any] = {}
        if p.ref:
            actor["reference"] = p.ref
        if p.display:
            actor["display"] = p.display
        participants.append({"actor": actor, "required": p.required, "status": p.status})
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": appt.id,
        "meta": {"profile": [ARGO_APPT]},
        "status": "proposed",
        "start": instant(appt.start),
        "end": instant(appt.end),
        "minutesDuration": appt.minutes,
        "slot": [{"reference": f"Slot/{sid}"} for sid in appt.slot_ids],
        "participant": participants,
        "requestedPeriod": [{"start": instant(requested[0]), "end": instant(requested[1])}],
    }
    if appt.service_types:
        resource["serviceType"] = [concept(t) for t in appt.service_types]
    if appt.specialties:
        resource["specialty"] = [concept(t) for t in appt.specialties]
    if appt.appointment_type:
        resource["appointmentType"] = concept(appt.appointment_type)
    return resource


def avail_bundle(
    resources: Sequence[dict[str, Any]],
    *,
    total: int,
    base_url: str,
    last_updated: datetime | None,
    outcome: dict[str, Any] | None = None,
) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"{base_url}/Appointment/{r['id']}",
            "resource": r,
            "search": {"mode": "match"},
        }
        for r in resources
    ]
    if outcome is not None:
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "meta": {"profile": [AVAIL_BUNDLE]},
        "type": "searchset",
        "total": total,
        "entry": entries,
    }
    if last_updated is not None:
        bundle["meta"]["lastUpdated"] = instant(last_updated)
    return bundle
