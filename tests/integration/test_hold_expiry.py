"""Ending lapsed holds at an EHR without $hold: what is cancelled, retried, skipped, forgotten."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from app.booking.expiry import CANCEL_REASON, expire_holds
from app.booking.refresh import Window
from app.cache import claims, holds
from app.cache.db import transaction
from app.ehr.errors import EhrRejected, EhrUnavailable
from tests.factories import T0, slot

NOW = T0 - timedelta(days=1)


class StubGateway:
    """The EHR's Appointments by id; an Exception as a status makes that read fail."""

    def __init__(self, states: dict[str, Any]) -> None:
        self.states = states
        self.cancelled: list[tuple[str, str]] = []

    def read_appointment(self, appointment_id: str) -> dict[str, Any]:
        state = self.states[appointment_id]
        if isinstance(state, Exception):
            raise state
        return {"resourceType": "Appointment", "id": appointment_id, "status": state}

    def cancel_appointment(self, appointment_id: str, reason: str) -> dict[str, Any]:
        self.cancelled.append((appointment_id, reason))
        self.states[appointment_id] = "cancelled"
        return self.read_appointment(appointment_id)


def _hold(engine: Engine, appointment_id: str, n: int, *, expires: timedelta, kind: str) -> None:
    with transaction(engine) as session:
        claims.insert_claims(session, [slot(n)], claim_id=appointment_id, kind=claims.PENDING,
                             expires_at=NOW + expires, now=NOW)  # fmt: skip
        claims.confirm(session, appointment_id, appointment_id=appointment_id, kind=kind,
                       expires_at=NOW + expires, now=NOW)  # fmt: skip
        holds.record(session, appointment_id, expires_at=NOW + expires, now=NOW)


def test_lapsed_holds_are_cancelled_gone_ones_forgotten_failures_retried(engine: Engine) -> None:
    _hold(engine, "lapsed", 0, expires=timedelta(minutes=-1), kind=claims.HELD)
    _hold(engine, "booked-elsewhere", 1, expires=timedelta(minutes=-1), kind=claims.HELD)
    _hold(engine, "deleted", 2, expires=timedelta(minutes=-1), kind=claims.HELD)
    _hold(engine, "ehr-down", 3, expires=timedelta(minutes=-1), kind=claims.HELD)
    _hold(engine, "being-booked", 4, expires=timedelta(minutes=-1), kind=claims.PENDING)
    _hold(engine, "still-running", 5, expires=timedelta(minutes=5), kind=claims.HELD)
    with transaction(engine) as session:  # being booked right now: its claim is live
        claims.extend(session, "being-booked", NOW + timedelta(minutes=1))
    gateway = StubGateway({
        "lapsed": "pending", "booked-elsewhere": "booked",
        "deleted": EhrRejected("gone", status=410), "ehr-down": EhrUnavailable("503"),
        "being-booked": "pending", "still-running": "pending",
    })  # fmt: skip
    refreshed: list[Window] = []

    report = expire_holds(engine, gateway, refreshed.extend, NOW)  # type: ignore[arg-type]
    assert report.cancelled == ["lapsed"]
    assert gateway.cancelled == [("lapsed", CANCEL_REASON)]
    assert sorted(report.gone) == ["booked-elsewhere", "deleted"]
    assert report.failed == ["ehr-down"] and report.busy == ["being-booked"]
    assert {w.start for w in refreshed} == {slot(n).start for n in (0, 1, 2)}
    with transaction(engine) as session:
        left = {a for a, _ in holds.due(session, NOW + timedelta(hours=1))}
        kept = {c.slot_id for c in claims.live_claims(session, [slot(n).id for n in range(6)],
                                                      NOW - timedelta(hours=1))}  # fmt: skip
    assert left == {"ehr-down", "being-booked", "still-running"}
    assert kept == {slot(n).id for n in (3, 4, 5)}

    gateway.states["ehr-down"] = "pending"  # the EHR is back: the next run finishes the job
    report = expire_holds(engine, gateway, refreshed.extend, NOW)  # type: ignore[arg-type]
    assert report.cancelled == ["ehr-down"]
