"""Hold, book, cancel and reschedule: the EHR decides, the overlay keeps ``$find`` honest.

Every write follows the claim protocol of :mod:`app.booking.overlay`. When the EHR's
answer is lost the service reads the EHR's state back before answering; only if
that read fails too is the outcome reported as unknown (and the slots stay
reserved here until the sync can tell).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec

from app.cache import booking_counts, claims, holds
from app.cache import repository as repo
from app.cache.db import transaction
from app.core.errors import Conflict, EhrBadAnswer, EhrNoAnswer, InvalidParameter, SlotsyncError
from app.core.occupancy import slot_ids_of, unavailable
from app.ehr.errors import (
    EhrConflict,
    EhrError,
    EhrNotProcessed,
    EhrRejected,
    EhrTimeout,
    ehr_issues,
)
from app.ehr.gateway import AppointmentAnswer, EhrGateway
from app.fhir.operation_params import OperationInput
from app.fhir.patch_body import JSON_PATCH, CancelPatch

from . import overlay, readback
from .context import BookingContext
from .expiry import end_lapsed
from .proposal import ExistingAppointment, NewAppointment, resolve
from .refresh import refresh_quietly

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BookingOutcome:
    """The EHR's Appointment after a hold or booking, and what to tell the caller."""

    appointment: dict[str, Any]
    created: bool  # a new Appointment at the EHR (201) rather than a changed one
    expires: datetime | None = None  # end of a hold
    issues: list[dict[str, Any]] = field(default_factory=list)


class _NotDone(SlotsyncError):
    """Reading back proved that the write did not happen."""

    def __init__(self, cause: EhrError):
        super().__init__(str(cause))
        self.cause = cause


class _Unknown(SlotsyncError):
    """Whether the write happened could not be learnt."""

    def __init__(self, cause: EhrError):
        super().__init__(str(cause))
        self.cause = cause


def _reason(exc: EhrError) -> str:
    said = "; ".join(str(i["diagnostics"]) for i in ehr_issues(exc) if i.get("diagnostics"))
    return said or "a slot is no longer free"


def _info(text: str) -> dict[str, Any]:
    return {"severity": "information", "code": "informational", "diagnostics": text}


# -- one write with read-back ---------------------------------------------------------


def _read(read_back: Callable[[], dict[str, Any] | None], cause: EhrError) -> dict[str, Any] | None:
    try:
        return read_back()
    except EhrError as exc:
        log.warning("read-back after %r failed: %r", cause, exc)
        raise _Unknown(cause) from exc


def _recovered(state: dict[str, Any], cause: EhrError, created: bool) -> AppointmentAnswer:
    return AppointmentAnswer(
        appointment=state,
        created=created,
        issues=[_info(f"the EHR's answer was lost ({cause}); its state was read back")],
    )


def _attempt(
    call: Callable[[], AppointmentAnswer],
    read_back: Callable[[], dict[str, Any] | None],
    creates: bool,
) -> AppointmentAnswer:
    """``call``; if its answer is lost, read back, and try once more only when nothing happened.

    The retry is safe: the read-back proved the first attempt did nothing, and the
    claim still keeps every other request of this server off the slots.
    """
    lost: EhrError
    try:
        return call()
    except EhrRejected:
        raise
    except EhrError as first:
        if isinstance(first, EhrNotProcessed):
            raise _NotDone(first) from first
        lost = first
    state = _read(read_back, lost)
    if state is not None:
        return _recovered(state, lost, creates)
    log.warning("EHR write lost (%r) and read back as not done: trying once more", lost)
    try:
        return call()
    except EhrConflict:
        state = _read(read_back, lost)  # the lost first attempt may have landed meanwhile
        if state is not None:
            return _recovered(state, lost, creates)
        raise
    except EhrRejected:
        raise
    except EhrError as second:
        if isinstance(second, EhrNotProcessed):
            raise _NotDone(second) from second
        state = _read(read_back, second)
        if state is not None:
            return _recovered(state, second, creates)
        raise _NotDone(second) from second


def _write(
    ctx: BookingContext,
    claim_id: str,
    *,
    what: str,
    call: Callable[[], AppointmentAnswer],
    read_back: Callable[[], dict[str, Any] | None],
    undo: Callable[[bool], None],
    creates: bool,
) -> AppointmentAnswer:
    """Run one EHR write and turn every failure into a definite answer for the caller.

    ``undo(conflict)`` puts the claims back after a definite "no" (and refreshes the
    schedule when the EHR said a slot is taken); ``creates`` says whether the write
    makes a new Appointment (how a read-back result is reported).
    """
    try:
        return _attempt(call, read_back, creates)
    except EhrConflict as exc:
        undo(True)
        raise Conflict(
            f"the EHR refused to {what}: {_reason(exc)}; the schedule has been re-read, "
            "search again with $find",
            issues=ehr_issues(exc),
        ) from None
    except EhrRejected:
        undo(False)
        raise
    except _NotDone as exc:
        undo(False)
        if isinstance(exc.cause, EhrTimeout):
            raise EhrNoAnswer(
                f"the EHR did not answer in time ({exc.cause}); reading its state back shows "
                f"it did not {what}. Nothing changed: it is safe to retry."
            ) from None
        raise EhrBadAnswer(
            f"the EHR failed ({exc.cause}); it did not {what} (verified). Nothing changed: "
            "it is safe to retry later."
        ) from None
    except _Unknown as exc:
        until = overlay.keep_pending(ctx, claim_id, ctx.clock())
        raise EhrNoAnswer(
            f"the EHR did not answer ({exc.cause}) and its state could not be read back, so "
            f"whether it did {what} is unknown. The slots stay reserved here until "
            f"{until.isoformat()}; search the patient's appointments before retrying."
        ) from None


def _undo_new(ctx: BookingContext, claim_id: str) -> Callable[[bool], None]:
    def undo(conflict: bool) -> None:
        released = overlay.release(ctx, claim_id)
        if conflict:
            refresh_quietly(ctx.refresh, overlay.windows(released))

    return undo


def _undo_hold(
    ctx: BookingContext, claim_id: str, before: list[claims.Claim] | None
) -> Callable[[bool], None]:
    """A refused booking of a hold keeps the hold, unless the EHR said it is gone."""

    def undo(conflict: bool) -> None:
        if before and not conflict:
            overlay.restore(ctx, before, claim_id)
            return
        released = overlay.release(ctx, claim_id)
        if conflict:
            refresh_quietly(ctx.refresh, overlay.windows(released))

    return undo


def _appointment_id(ctx: BookingContext, claim_id: str, answer: AppointmentAnswer) -> str:
    rid = answer.appointment.get("id")
    if not isinstance(rid, str) or not rid:
        overlay.keep_pending(ctx, claim_id, ctx.clock())
        raise EhrBadAnswer("the EHR accepted the request but its Appointment has no id")
    return rid


_WHY = {
    "gone": "no longer exists at the EHR",
    "busy": "is busy at the EHR",
    "taken": "is taken by another appointment at the EHR",
}


def _recheck(
    ctx: BookingContext,
    slot_ids: list[str],
    undo: Callable[[bool], None],
    *,
    ignore: tuple[str, ...] = (),
) -> None:
    """Where the EHR has no ``$hold``/``$book`` of its own to check availability, read
    each slot and its active Appointments there just before writing (IHE Scheduling's
    ``$book`` does the same). A slot busy, taken or gone is a 409, and leaves the cache
    at once. ``ignore``: appointments that do not count (the hold being booked).
    """
    if ctx.gateway.booking != "appointment" or not slot_ids:
        return
    # Booking our own hold: the EHR may have marked its slots busy for it.
    busy_ok = bool(ignore)
    try:
        states = ctx.gateway.slot_states(slot_ids)
        present = [sid for sid, status in states.items() if status is not None]
        appointments = ctx.gateway.active_appointments(present) if present else []
        why = unavailable(slot_ids, states, appointments, ignore=ignore, busy_ok=busy_ok)
        if "taken" in why.values():
            # A hold of ours that lapsed and that the periodic job has not ended yet is
            # no reason to refuse: end it now.
            blockers = {str(a.get("id")) for a in appointments if a.get("id")} - set(ignore)
            ended = end_lapsed(ctx.engine, ctx.gateway, blockers, ctx.clock())
            if ended:
                ignore = (*ignore, *ended)
                why = unavailable(slot_ids, states, appointments, ignore=ignore, busy_ok=busy_ok)
    except EhrError:
        undo(False)
        raise
    if not why:
        return
    with transaction(ctx.engine) as session:
        repo.remove_slots(session, why)
    undo(True)
    raise Conflict(
        "the appointment cannot be made: "
        + "; ".join(f"Slot/{sid} {_WHY[reason]}" for sid, reason in why.items())
        + "; search again with $find"
    )


def _slot_ids(slots: Any) -> list[str]:
    return [s.id for s in slots]


# -- the operations --------------------------------------------------------------------


def hold(ctx: BookingContext, request: OperationInput) -> BookingOutcome:
    now = ctx.clock()
    with transaction(ctx.engine) as session:
        target = resolve(ctx, session, request, now)
    if isinstance(target, ExistingAppointment):
        # an id the EHR does not know is a 404, as for $book (read_appointment raises it)
        current = ctx.gateway.read_appointment(target.appointment_id)
        raise Conflict(
            f"Appointment/{target.appointment_id} already exists at the EHR "
            f"({current.get('status')}); $hold takes an offer from $find or a new Appointment"
        )
    claim_id = overlay.new_claim_id()
    overlay.claim_slots(ctx, target.slots, claim_id, now)
    _recheck(ctx, _slot_ids(target.slots), _undo_new(ctx, claim_id))
    answer = _write(
        ctx,
        claim_id,
        what="hold the appointment",
        call=lambda: ctx.gateway.hold(target.resource),
        read_back=lambda: readback.find_sent_appointment(
            ctx.gateway, target.resource, ("pending",)
        ),
        undo=_undo_new(ctx, claim_id),
        creates=True,
    )
    rid = _appointment_id(ctx, claim_id, answer)
    confirmed = ctx.clock()
    expires = answer.expires
    if expires is None or expires <= confirmed:
        expires = confirmed + timedelta(seconds=ctx.settings.hold_overlay_seconds)
    overlay.confirm(
        ctx, claim_id, appointment_id=rid, kind=claims.HELD, expires_at=expires, now=confirmed
    )
    if ctx.gateway.booking == "appointment":  # nothing at the EHR ends this hold but us
        with transaction(ctx.engine) as session:
            holds.record(session, rid, expires_at=expires, now=confirmed)
    return BookingOutcome(answer.appointment, answer.created, expires, answer.issues)


def _booked(gateway: EhrGateway, appointment_id: str) -> dict[str, Any] | None:
    state = gateway.read_appointment(appointment_id)
    return state if state.get("status") == "booked" else None


def book(ctx: BookingContext, request: OperationInput) -> BookingOutcome:
    now = ctx.clock()
    with transaction(ctx.engine) as session:
        target = resolve(ctx, session, request, now)
    patients = request.patient_ids
    claim_id = overlay.new_claim_id()
    if isinstance(target, NewAppointment):
        overlay.claim_slots(ctx, target.slots, claim_id, now)
        undo = _undo_new(ctx, claim_id)
        _recheck(ctx, _slot_ids(target.slots), undo)
        resource = target.resource

        def call() -> AppointmentAnswer:
            return ctx.gateway.book(resource, patients, request.comment)

        def read_back() -> dict[str, Any] | None:
            return readback.find_sent_appointment(ctx.gateway, resource, ("booked",), patients)

    else:
        held_id = target.appointment_id
        if request.cancelled_appt_id == held_id:
            raise InvalidParameter(
                "cancelled-appt-id names the appointment being booked",
                expression="cancelled-appt-id",
            )
        before = overlay.claim_held(ctx, held_id, claim_id, now)
        held_slots = [c.slot_id for c in before or () if c.schedule_id]
        if before is None:
            current = ctx.gateway.read_appointment(held_id)
            if current.get("status") != "pending":
                raise Conflict(
                    f"Appointment/{held_id} is {current.get('status')}; only a held (pending) "
                    "appointment can be booked by its id"
                )
            overlay.claim_outside_hold(ctx, current, claim_id, now)
            held_slots = slot_ids_of(current)
        undo = _undo_hold(ctx, claim_id, before)
        _recheck(ctx, held_slots, undo, ignore=(held_id,))

        def call() -> AppointmentAnswer:
            return ctx.gateway.book_existing(held_id, patients, request.comment)

        def read_back() -> dict[str, Any] | None:
            return _booked(ctx.gateway, held_id)

    notes: list[dict[str, Any]] = []
    old = request.cancelled_appt_id
    if old is not None:
        try:
            cancel(ctx, old, reschedule_patch())
        except (SlotsyncError, EhrError) as exc:
            undo(False)
            exc.issues.append(
                _info(
                    f"rescheduling stopped at its first step: Appointment/{old} could not be "
                    "cancelled, so it is unchanged and nothing was booked"
                )
            )
            raise
        notes.append(_info(f"Appointment/{old} was cancelled (rescheduled)"))
    try:
        answer = _write(
            ctx,
            claim_id,
            what="book the appointment",
            call=call,
            read_back=read_back,
            undo=undo,
            creates=isinstance(target, NewAppointment),
        )
        rid = _appointment_id(ctx, claim_id, answer)
    except (SlotsyncError, EhrError) as exc:
        if old is not None:
            exc.issues.append(
                {
                    "severity": "error",
                    "code": "incomplete",
                    "diagnostics": (
                        f"rescheduling is incomplete: Appointment/{old} WAS cancelled (step 1) "
                        "but the new booking failed (step 2), and the old appointment has not "
                        "been restored; find another time with $find and book it"
                    ),
                }
            )
        raise
    confirmed = ctx.clock()
    if isinstance(target, ExistingAppointment):
        with transaction(ctx.engine) as session:
            holds.forget(session, target.appointment_id)  # booked: no longer ours to end
    overlay.confirm(
        ctx,
        claim_id,
        appointment_id=rid,
        kind=claims.BOOKED,
        expires_at=confirmed + timedelta(seconds=ctx.settings.booked_overlay_seconds),
        now=confirmed,
    )
    notes += _mark_slots(ctx, slot_ids_of(answer.appointment), "busy")
    return BookingOutcome(answer.appointment, answer.created, None, answer.issues + notes)


def _mark_slots(ctx: BookingContext, slot_ids: Sequence[str], status: str) -> list[dict[str, Any]]:
    """With ``SLOTSYNC_EHR_MARK_SLOTS_BUSY`` on the appointment path: write the slots'
    status at the EHR too. The appointment is what counts (and the sync reads it), so a
    slot that cannot be written is a warning on the answer, not a failure."""
    if not ctx.settings.ehr_mark_slots_busy or ctx.gateway.booking != "appointment":
        return []
    notes = []
    for sid in slot_ids:
        try:
            ctx.gateway.set_slot_status(sid, status)
        except EhrError as exc:
            log.warning("could not mark Slot/%s %s at the EHR: %s", sid, status, exc)
            notes.append(
                {
                    "severity": "warning",
                    "code": "incomplete",
                    "diagnostics": f"Slot/{sid} could not be marked {status} at the EHR ({exc});"
                    " the appointment stands",
                }
            )
    return notes


def reschedule_patch() -> CancelPatch:
    return CancelPatch(
        msgspec.json.encode([{"op": "replace", "path": "/status", "value": "cancelled"}]),
        JSON_PATCH,
    )


def cancel(ctx: BookingContext, appointment_id: str, patch: CancelPatch) -> dict[str, Any]:
    """Forward a cancel/release; once the EHR confirms, its slots come back to ``$find``."""
    result = ctx.gateway.patch_appointment(appointment_id, patch.content, patch.content_type)
    if result.get("status") != "cancelled":
        raise EhrBadAnswer(
            f"the EHR accepted the PATCH but Appointment/{appointment_id} is "
            f"{result.get('status')!r}, not cancelled"
        )
    released = overlay.release_appointment(ctx, appointment_id)
    with transaction(ctx.engine) as session:
        holds.forget(session, appointment_id)
        booking_counts.add(session, booking_counts.CANCEL, ctx.clock())
    _mark_slots(ctx, slot_ids_of(result), "free")
    refresh_quietly(
        ctx.refresh, overlay.windows(released) or overlay.appointment_windows(ctx, result)
    )
    return result
