"""Ending holds that an EHR without ``$hold`` will never end by itself.

There a hold is a ``pending`` Appointment: left alone it would keep its slots taken
forever. :func:`expire_holds` (a periodic job, :mod:`app.sync.periodic`) cancels each
hold that reached its expiry unbooked -- ``Appointment.status`` ``cancelled`` with a
cancelation reason -- then releases its claims and re-reads its windows, so that the
slots come back to ``$find``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from app.cache import booking_counts, claims, holds
from app.cache.db import transaction
from app.ehr.errors import EhrError, EhrRejected
from app.ehr.gateway import EhrGateway

from . import overlay
from .refresh import Refresh, refresh_quietly

log = logging.getLogger(__name__)

CANCEL_REASON = "hold expired without a booking"
_CANCELLABLE = frozenset({"pending", "proposed"})


@dataclass(frozen=True, slots=True)
class ExpiryReport:
    cancelled: list[str]
    gone: list[str]  # already booked, cancelled or deleted at the EHR: only forgotten
    failed: list[str]  # tried again at the next run
    busy: list[str]  # being booked through us right now: left for the next run


def expire_holds(
    engine: Engine, gateway: EhrGateway, refresh: Refresh, now: datetime
) -> ExpiryReport:
    report = ExpiryReport([], [], [], [])
    with transaction(engine) as session:
        due = holds.due(session, now)
    for appointment_id, _expired in due:
        with transaction(engine) as session:
            live = claims.claims_of_appointment(session, appointment_id)
        if any(c.kind == claims.PENDING and c.expires_at > now for c in live):
            report.busy.append(appointment_id)  # its booking decides; the hold row stays
            continue
        try:
            cancelled = _end(gateway, appointment_id)
        except EhrError as exc:
            _failed(engine, report, appointment_id, exc)
            continue
        (report.cancelled if cancelled else report.gone).append(appointment_id)
        ended = _forget(engine, appointment_id, expired_at=now if cancelled else None)
        refresh_quietly(refresh, overlay.windows(ended))
    if report.cancelled or report.failed:
        log.info(
            "expired holds: %d cancelled at the EHR, %d failed",
            len(report.cancelled),
            len(report.failed),
        )
    return report


def end_lapsed(
    engine: Engine, gateway: EhrGateway, appointment_ids: Iterable[str], now: datetime
) -> list[str]:
    """Of these EHR appointments, end now those that are our holds past their expiry
    (a booking found them in its way before the periodic job did); returns their ids.
    EHR errors propagate: the caller's write must not go ahead on a guess."""
    wanted = set(appointment_ids)
    if not wanted:
        return []
    with transaction(engine) as session:
        lapsed = holds.expires_before(session, wanted, now)
    for appointment_id in lapsed:
        cancelled = _end(gateway, appointment_id)
        _forget(engine, appointment_id, expired_at=now if cancelled else None)
    return lapsed


def _end(gateway: EhrGateway, appointment_id: str) -> bool:
    """Cancel the hold at the EHR; False when there was nothing left to cancel (booked,
    cancelled or deleted there meanwhile)."""
    try:
        current = gateway.read_appointment(appointment_id)
    except EhrRejected as exc:
        if exc.status in (404, 410):
            return False
        raise
    if current.get("status") not in _CANCELLABLE:
        return False
    gateway.cancel_appointment(appointment_id, CANCEL_REASON)
    return True


def _forget(
    engine: Engine, appointment_id: str, *, expired_at: datetime | None
) -> list[claims.Claim]:
    """Drop the hold's row and claims, and count it as expired if we cancelled it at
    ``expired_at``; returns the claims that had a schedule."""
    with transaction(engine) as session:
        holds.forget(session, appointment_id)
        if expired_at is not None:
            booking_counts.add(session, booking_counts.EXPIRE, expired_at)
        return [c for c in claims.release_appointment(session, appointment_id) if c.schedule_id]


def _failed(engine: Engine, report: ExpiryReport, appointment_id: str, exc: EhrError) -> None:
    log.warning("could not cancel the expired hold Appointment/%s: %s", appointment_id, exc)
    with transaction(engine) as session:
        holds.record_error(session, appointment_id, str(exc))
    report.failed.append(appointment_id)
