"""What a ``$hold``/``$book`` request names, rebuilt and re-checked against the cache and rules.

A request names either

* a **new appointment**: the token of a ``$find`` offer (``appt-id``, or the
  ``urn:slotsync:proposal`` identifier of an ``appt-resource``), or a client-built
  Appointment whose slots (or else time and participants) we match against the
  cache; it is composed again with the current rules from slots that are free
  and unclaimed *now*, so a stale or forged offer cannot be booked; or
* an **existing EHR appointment** (a hold being booked): its EHR id.

Failures say which: 400 malformed or forged, 409 a slot is taken, 422 the rules
no longer allow it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.availability.service import MAX_SLOT_LENGTH
from app.cache import claims, slot_reads
from app.cache import repository as repo
from app.core.domain import Actor, ProposedAppointment, Schedule, Slot
from app.core.errors import BusinessRuleViolation, Conflict, InvalidParameter
from app.core.ids import is_fhir_id
from app.fhir.operation_params import OperationInput, strip_reference
from app.fhir.parse import FhirParseError, codeable_tokens, parse_instant
from rules.appointment_id import IDENTIFIER_SYSTEM, InvalidAppointmentId, ProposalPayload, decode
from rules.composer import compose, reconstruct, slot_fetch_window
from rules.request import FindRequest, InvalidFindRequest, PatientInfo

from .context import BookingContext

_PROPOSAL_FHIR_ID = re.compile(r"^p[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class NewAppointment:
    """An offer rebuilt from the cache: what to claim and what to send to the EHR."""

    proposal: ProposedAppointment
    slots: tuple[Slot, ...]
    resource: dict[str, Any]  # the Argonaut (STU3) or R4 Appointment for the EHR


@dataclass(frozen=True, slots=True)
class ExistingAppointment:
    appointment_id: str


Target = NewAppointment | ExistingAppointment


def is_token(value: str) -> bool:
    """A signed ``$find`` token (always longer than a FHIR id, base64url) vs an EHR id."""
    return len(value) > 64 or "_" in value


def resolve(
    ctx: BookingContext, session: Session, request: OperationInput, now: datetime
) -> Target:
    patient = request.patient_ids[0] if request.patient_ids else None
    if request.appt_id is not None:
        return _from_id(ctx, session, request.appt_id, None, patient, now)
    resource = request.appt_resource
    assert resource is not None  # parse_operation guarantees one of the two
    token = next(
        (
            i.get("value")
            for i in resource.get("identifier") or ()
            if isinstance(i, dict) and i.get("system") == IDENTIFIER_SYSTEM
        ),
        None,
    )
    if isinstance(token, str) and token:
        return _from_id(ctx, session, token, resource, patient, now)
    rid = resource.get("id")
    if isinstance(rid, str) and resource.get("status") in ("pending", "booked"):
        return ExistingAppointment(rid)  # an EHR appointment sent back to us
    return _from_resource(ctx, session, resource, patient, now)


def _from_id(
    ctx: BookingContext,
    session: Session,
    value: str,
    resource: dict[str, Any] | None,
    patient: str | None,
    now: datetime,
) -> Target:
    if not is_token(value):
        if _PROPOSAL_FHIR_ID.match(value):
            raise InvalidParameter(
                f"Appointment/{value} is the id of a proposed appointment, which cannot be "
                f"resolved by itself: send its identifier value (system {IDENTIFIER_SYSTEM}) "
                "as appt-id, or the whole Appointment as appt-resource",
                expression="appt-id",
            )
        if not is_fhir_id(value):
            raise InvalidParameter(f"appt-id {value!r} is not an id", expression="appt-id")
        return ExistingAppointment(value)
    try:
        payload = decode(value, ctx.secret)
    except InvalidAppointmentId as exc:
        raise InvalidParameter(
            f"appt-id is not an appointment id issued by this server ({exc})",
            expression="appt-id",
        ) from None
    if resource is not None:
        _check_matches(resource, payload)
    holder = _holding_appointment(session, payload.slot_ids, now)
    if holder is not None:
        return ExistingAppointment(holder)  # the offer was held: $book books that hold
    return _rebuild(ctx, session, value, payload, resource, patient, now)


def _holding_appointment(session: Session, slot_ids: Sequence[str], now: datetime) -> str | None:
    """The EHR appointment holding exactly these slots through this server, if one does."""
    live = claims.live_claims(session, slot_ids, now)
    holders = {c.appointment_id for c in live if c.kind == claims.HELD}
    if len(live) == len(set(slot_ids)) and len(holders) == 1:
        return holders.pop()
    return None


def _check_matches(resource: dict[str, Any], payload: ProposalPayload) -> None:
    """An appt-resource carrying a token must still describe that offer."""
    start, end = _period(resource)
    if (start, end) != (payload.start, payload.end):
        raise InvalidParameter(
            "appt-resource start/end differ from the offer its identifier names; "
            "send the offer unchanged (or search again)",
            expression="appt-resource",
        )
    refs = _slot_refs(resource)
    if refs and set(refs) != set(payload.slot_ids):
        raise InvalidParameter(
            "appt-resource slots differ from the offer its identifier names",
            expression="appt-resource.slot",
        )


def _rebuild(
    ctx: BookingContext,
    session: Session,
    token: str,
    payload: ProposalPayload,
    resource: dict[str, Any] | None,
    patient: str | None,
    now: datetime,
) -> NewAppointment:
    rules = ctx.rules()
    cached = claims.slots_by_id(session, payload.slot_ids)
    request = FindRequest(start=payload.start, end=payload.end, visit_types=(payload.visit_type,))
    schedule_ids = {s.schedule_id for s in cached.values()}
    slots, schedules, actors = _cache_view(session, request, rules, schedule_ids, now)
    proposal = (
        reconstruct(token, payload, rules, slots, schedules, actors, now, ctx.sign)
        if len(cached) == len(payload.slot_ids)
        else None
    )
    if proposal is None:
        _explain_unavailable(session, payload.slot_ids, cached, now)
        raise BusinessRuleViolation(
            "the offer is no longer allowed by the business rules in force (for example its "
            "lead time has passed or the rules changed); search again with $find"
        )
    return _new(ctx, proposal, slots, actors, resource, patient)


def _from_resource(
    ctx: BookingContext,
    session: Session,
    resource: dict[str, Any],
    patient: str | None,
    now: datetime,
) -> NewAppointment:
    """A client-built Appointment: match its slots (or time and actors) to an offer."""
    rules = ctx.rules()
    start, end = _period(resource)
    slot_ids = _slot_refs(resource)
    actor_refs = _actor_refs(resource)
    patients = [r for r in actor_refs if r.startswith("Patient/")]
    patient = patient or (patients[0] if patients else None)
    non_patient = [r for r in actor_refs if not r.startswith("Patient/")]
    if slot_ids:
        cached = claims.slots_by_id(session, slot_ids)
        if len(cached) < len(set(slot_ids)):
            _explain_unavailable(session, slot_ids, cached, now)
        schedule_ids = {s.schedule_id for s in cached.values()}
    else:
        schedule_ids = set()
        for ref in non_patient:
            schedule_ids |= repo.schedule_ids_for_actors(session, [[ref]]) or set()
        if not schedule_ids:
            raise BusinessRuleViolation(
                "appt-resource names no slot and no participant with a schedule here",
                expression="appt-resource.participant",
            )
    try:
        request = FindRequest(
            start=start,
            end=end,
            visit_types=codeable_tokens(resource.get("serviceType")),
            practitioners=tuple(r for r in non_patient if r.startswith("Practitioner/")),
            patient=PatientInfo(ref=patient) if patient else None,
        )
    except InvalidFindRequest as exc:
        raise InvalidParameter(f"appt-resource: {exc}", expression="appt-resource") from None
    slots, schedules, actors = _cache_view(session, request, rules, schedule_ids, now)
    offers = compose(request, rules, slots, schedules, actors, now, ctx.sign).appointments
    wanted = set(slot_ids)
    same_time = [a for a in offers if (a.start, a.end) == (start, end)]
    match = next((a for a in same_time if wanted and set(a.slot_ids) == wanted), None) or next(
        (
            a
            for a in same_time
            if wanted <= set(a.slot_ids) and set(non_patient) <= {p.ref for p in a.participants}
        ),
        None,
    )
    if match is None:
        if slot_ids:
            _explain_unavailable(session, slot_ids, claims.slots_by_id(session, slot_ids), now)
        raise BusinessRuleViolation(
            "appt-resource is not an appointment the business rules allow with the slots free "
            "now (visit type, duration, participants, hours, lead time); use an offer from $find",
            expression="appt-resource",
        )
    return _new(ctx, match, slots, actors, resource, patient)


def _explain_unavailable(
    session: Session, slot_ids: Sequence[str], cached: Mapping[str, Slot], now: datetime
) -> None:
    """Raise 409 naming the slots that are gone, held or booked; return if all are free."""
    live = {c.slot_id: c for c in claims.live_claims(session, slot_ids, now)}
    gone = [
        sid
        for sid in dict.fromkeys(slot_ids)
        if sid not in cached or cached[sid].status != "free" or sid in live
    ]
    if gone:
        what = "; ".join(
            f"Slot/{sid} is {live[sid].kind} through this server"
            if sid in live
            else f"Slot/{sid} is no longer free at the EHR"
            for sid in gone
        )
        raise Conflict(f"the appointment cannot be made: {what}; search again with $find")


def _cache_view(
    session: Session,
    request: FindRequest,
    rules: Any,
    schedule_ids: set[str],
    now: datetime,
) -> tuple[list[Slot], dict[str, Schedule], dict[str, Actor]]:
    """The free, unclaimed slots of these schedules around the request, with their context."""
    start, end = slot_fetch_window(request, rules, now)
    slots = (
        slot_reads.free_slots_overlapping(
            session, start, end, schedule_ids, lookback=MAX_SLOT_LENGTH, now=now
        )
        if schedule_ids and start < end
        else []
    )
    schedules = repo.schedules_by_id(session, schedule_ids)
    refs = {r for s in schedules.values() for r in s.actor_refs}
    actors = repo.actors_by_ref(session, refs)
    parents = {a.part_of for a in actors.values() if a.part_of} - set(actors)
    if parents:
        actors.update(repo.actors_by_ref(session, parents))
    return slots, schedules, actors


def _new(
    ctx: BookingContext,
    proposal: ProposedAppointment,
    slots: Sequence[Slot],
    actors: Mapping[str, Actor],
    resource: dict[str, Any] | None,
    patient: str | None,
) -> NewAppointment:
    by_id = {s.id: s for s in slots}
    requested = _requested_period(resource) or (proposal.start, proposal.end)
    body = ctx.version.render_appointment(proposal, requested, actors)
    body.pop("id", None)  # the EHR assigns the id; the token stays in identifier
    if patient and patient not in {p.ref for p in proposal.participants}:
        body["participant"].append(
            {"actor": {"reference": patient}, "required": "required", "status": "needs-action"}
        )
    return NewAppointment(
        proposal=proposal, slots=tuple(by_id[sid] for sid in proposal.slot_ids), resource=body
    )


# -- reading a client Appointment -------------------------------------------------


def _period(resource: dict[str, Any]) -> tuple[datetime, datetime]:
    try:
        start = parse_instant(resource.get("start"), "appt-resource.start")
        end = parse_instant(resource.get("end"), "appt-resource.end")
    except FhirParseError as exc:
        raise InvalidParameter(str(exc), expression="appt-resource") from None
    if end <= start:
        raise InvalidParameter(
            "appt-resource.end must be after its start", expression="appt-resource.end"
        )
    return start, end


def _requested_period(resource: dict[str, Any] | None) -> tuple[datetime, datetime] | None:
    periods = (resource or {}).get("requestedPeriod") or []
    if not periods or not isinstance(periods[0], dict):
        return None
    try:
        return (
            parse_instant(periods[0].get("start"), "requestedPeriod.start"),
            parse_instant(periods[0].get("end"), "requestedPeriod.end"),
        )
    except FhirParseError:
        return None


def _slot_refs(resource: dict[str, Any]) -> list[str]:
    refs = []
    for n, ref in enumerate(resource.get("slot") or ()):
        value = (ref or {}).get("reference") if isinstance(ref, dict) else None
        if not isinstance(value, str) or "Slot/" not in value:
            raise InvalidParameter(
                f"appt-resource.slot[{n}] is not a Slot reference",
                expression=f"appt-resource.slot[{n}]",
            )
        refs.append(strip_reference(value, "Slot"))
    return refs


def _actor_refs(resource: dict[str, Any]) -> list[str]:
    refs = []
    for p in resource.get("participant") or ():
        ref = ((p or {}).get("actor") or {}).get("reference")
        if isinstance(ref, str) and "/" in ref:
            kind, rid = ref.rstrip("/").split("/")[-2:]
            refs.append(f"{kind}/{rid}")
    return refs
