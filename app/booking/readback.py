"""Reading the EHR's state back after a write whose answer was lost.

A hold or booking that timed out may or may not have happened. Rather than
answer "unknown", the service asks the EHR: a search on the appointment's time
and a participant finds the appointment we sent if it exists (recognised by our
proposal identifier, else by its slots, else by time and participants).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from app.ehr.gateway import EhrGateway
from app.fhir.parse import FhirParseError, parse_instant
from rules.appointment_id import IDENTIFIER_SYSTEM

_SEARCH_LIMIT = 200


def _reference(value: Any) -> str | None:
    """``Type/id`` of a relative or absolute reference string."""
    if not isinstance(value, str) or "/" not in value:
        return None
    kind, rid = value.split("/_history/", 1)[0].rstrip("/").split("/")[-2:]
    return f"{kind}/{rid}"


def _participants(resource: dict[str, Any]) -> set[str]:
    refs = {
        _reference(((p or {}).get("actor") or {}).get("reference"))
        for p in resource.get("participant") or ()
    }
    return {r for r in refs if r}


def _slots(resource: dict[str, Any]) -> set[str]:
    refs = {_reference((s or {}).get("reference")) for s in resource.get("slot") or ()}
    return {r for r in refs if r}


def _token(resource: dict[str, Any]) -> str | None:
    for ident in resource.get("identifier") or ():
        if isinstance(ident, dict) and ident.get("system") == IDENTIFIER_SYSTEM:
            value = ident.get("value")
            return value if isinstance(value, str) else None
    return None


def _same_time(a: dict[str, Any], b: dict[str, Any]) -> bool:
    try:
        return parse_instant(a.get("start"), "start") == parse_instant(
            b.get("start"), "start"
        ) and parse_instant(a.get("end"), "end") == parse_instant(b.get("end"), "end")
    except FhirParseError:
        return False


def is_same_appointment(sent: dict[str, Any], found: dict[str, Any]) -> bool:
    token = _token(sent)
    if token is not None and _token(found) == token:
        return True
    sent_slots, found_slots = _slots(sent), _slots(found)
    if sent_slots and found_slots:
        return sent_slots == found_slots
    actors = {r for r in _participants(sent) if not r.startswith("Patient/")}
    return _same_time(sent, found) and actors <= _participants(found)


def search_params(sent: dict[str, Any], patients: Sequence[str]) -> list[tuple[str, str]]:
    """Search the appointment's start minute, by patient when known, else by an actor."""
    start = sent["start"]
    params = [("date", f"ge{start}"), ("date", f"le{start}")]
    actors = sorted(_participants(sent))
    practitioners = [r for r in actors if r.startswith("Practitioner/")]
    if patients:
        params.append(("patient", patients[0]))
    elif practitioners:
        params.append(("practitioner", practitioners[0]))
    elif actors:
        params.append(("actor", actors[0]))
    return params


def find_sent_appointment(
    gateway: EhrGateway,
    sent: dict[str, Any],
    statuses: Collection[str],
    patients: Sequence[str] = (),
) -> dict[str, Any] | None:
    """The EHR's appointment made from ``sent`` in one of ``statuses``, or None if none exists.

    EHR failures propagate: then the state is still unknown.
    """
    found, _ = gateway.search("Appointment", search_params(sent, patients), limit=_SEARCH_LIMIT)
    return next(
        (a for a in found if a.get("status") in statuses and is_same_appointment(sent, a)), None
    )
