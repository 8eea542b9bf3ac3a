"""The claim protocol around one EHR write, each step its own short transaction.

1. claim the slots (pending) -- a 409 here means another request owns one, and the
   EHR is never called;
2. call the EHR outside any transaction;
3. confirm (held / booked, with an expiry), or release on a definite refusal, or
   restore a hold whose booking was refused, or keep the claim pending a while
   longer when the outcome could not be learnt.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from app.cache import booking_counts, claims
from app.cache import repository as repo
from app.cache.db import transaction
from app.core.domain import Slot
from app.core.errors import Conflict
from app.fhir.parse import FhirParseError, parse_instant

from .context import BookingContext
from .refresh import Window

# Pseudo-slot that serialises every booking of one EHR appointment, whatever its slots.
_APPOINTMENT_KEY = "Appointment/{}"


def _period(appointment: dict[str, Any]) -> tuple[datetime, datetime] | None:
    """An EHR appointment's start and end; None when it does not give both readably."""
    try:
        return (
            parse_instant(appointment.get("start"), "Appointment.start"),
            parse_instant(appointment.get("end"), "Appointment.end"),
        )
    except FhirParseError:
        return None


def new_claim_id() -> str:
    return uuid.uuid4().hex


def _pending_until(ctx: BookingContext, now: datetime) -> datetime:
    return now + timedelta(seconds=ctx.pending_seconds)


def claim_slots(ctx: BookingContext, slots: Sequence[Slot], claim_id: str, now: datetime) -> None:
    """Step 1 for a new appointment; Conflict (409) when any slot is already claimed."""
    try:
        with transaction(ctx.engine) as session:
            claims.insert_claims(
                session,
                slots,
                claim_id=claim_id,
                kind=claims.PENDING,
                expires_at=_pending_until(ctx, now),
                now=now,
            )
    except claims.SlotsTaken:
        raise Conflict(
            "another request is holding or booking these slots right now, or has just done "
            "so; search again with $find"
        ) from None


def claim_held(
    ctx: BookingContext, appointment_id: str, claim_id: str, now: datetime
) -> list[claims.Claim] | None:
    """Step 1 for booking a hold made through us: take its claims over (exactly one winner).

    Returns the claims as they were (to restore on refusal), or None when this
    server holds nothing for the appointment (a hold made elsewhere).
    """
    try:
        with transaction(ctx.engine) as session:
            existing = claims.claims_of_appointment(session, appointment_id)
            if not existing:
                return None
            before = claims.take_over_hold(
                session,
                appointment_id,
                claim_id=claim_id,
                expires_at=_pending_until(ctx, now),
                now=now,
            )
    except claims.SlotsTaken:  # rolled back: a concurrent request changed them first
        before = []
    if before:
        return before
    with transaction(ctx.engine) as session:
        existing = claims.claims_of_appointment(session, appointment_id)
    if not existing:
        raise Conflict(f"Appointment/{appointment_id} is no longer held through this server")
    kinds = {c.kind for c in existing if c.expires_at > now}
    if claims.PENDING in kinds:
        raise Conflict(f"Appointment/{appointment_id} is being booked by another request")
    if claims.BOOKED in kinds:
        raise Conflict(f"Appointment/{appointment_id} is already booked")
    expired = max(c.expires_at for c in existing)
    raise Conflict(
        f"the hold on Appointment/{appointment_id} expired at {expired.isoformat()}; "
        "search again with $find"
    )


def claim_outside_hold(
    ctx: BookingContext, appointment: dict[str, Any], claim_id: str, now: datetime
) -> None:
    """Step 1 for an EHR appointment this server has no claims for: claim its slots and
    the appointment itself, so that concurrent bookings of it queue here too."""
    appointment_id = str(appointment.get("id"))
    slot_ids = []
    for ref in appointment.get("slot") or ():
        value = (ref or {}).get("reference") if isinstance(ref, dict) else None
        if isinstance(value, str) and "Slot/" in value:
            slot_ids.append(value.rsplit("Slot/", 1)[1])
    start, end = _period(appointment) or (now, now)
    with transaction(ctx.engine) as session:
        cached = claims.slots_by_id(session, slot_ids)
    slots = [
        cached.get(sid) or Slot(id=sid, schedule_id="", start=start, end=end) for sid in slot_ids
    ]
    slots.append(
        Slot(id=_APPOINTMENT_KEY.format(appointment_id), schedule_id="", start=start, end=end)
    )
    claim_slots(ctx, slots, claim_id, now)


def confirm(
    ctx: BookingContext,
    claim_id: str,
    *,
    appointment_id: str | None,
    kind: str,
    expires_at: datetime,
    now: datetime,
) -> None:
    """The EHR accepted: the claim becomes a hold or booking, counted in the same
    transaction (the ops console's Bookings chart)."""
    with transaction(ctx.engine) as session:
        claims.confirm(
            session,
            claim_id,
            appointment_id=appointment_id,
            kind=kind,
            expires_at=expires_at,
            now=now,
        )
        booking_counts.add(
            session, booking_counts.HOLD if kind == claims.HELD else booking_counts.BOOK, now
        )


def release(ctx: BookingContext, claim_id: str) -> list[claims.Claim]:
    with transaction(ctx.engine) as session:
        gone = claims.claims_of(session, claim_id)
        claims.release(session, claim_id)
    return gone


def restore(ctx: BookingContext, before: Sequence[claims.Claim], claim_id: str) -> None:
    with transaction(ctx.engine) as session:
        claims.restore(session, before, claim_id)


def keep_pending(ctx: BookingContext, claim_id: str, now: datetime) -> datetime:
    """The outcome is unknown: keep the slots hidden until the EHR's data can tell."""
    until = _pending_until(ctx, now)
    with transaction(ctx.engine) as session:
        claims.extend(session, claim_id, until)
    return until


def release_appointment(ctx: BookingContext, appointment_id: str) -> list[claims.Claim]:
    with transaction(ctx.engine) as session:
        return claims.release_appointment(session, appointment_id)


def windows(released: Iterable[claims.Claim]) -> list[Window]:
    return sorted(
        {Window(c.schedule_id, c.start, c.end) for c in released if c.schedule_id},
        key=lambda w: (w.start, w.schedule_id),
    )


def appointment_windows(ctx: BookingContext, appointment: dict[str, Any]) -> list[Window]:
    """Windows of an appointment known only from the EHR: its actors' schedules, its time."""
    period = _period(appointment)
    if period is None:
        return []
    start, end = period
    refs = [
        ((p or {}).get("actor") or {}).get("reference")
        for p in appointment.get("participant") or ()
    ]
    actors = [r for r in refs if isinstance(r, str) and not r.startswith("Patient/")]
    with transaction(ctx.engine) as session:
        ids: set[str] = set()
        for ref in actors:
            ids |= repo.schedule_ids_for_actors(session, [[ref]]) or set()
    return [Window(sid, start, end) for sid in sorted(ids)]
