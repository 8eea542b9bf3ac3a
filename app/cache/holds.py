"""All SQL of the holds slotsync must end itself (table ``appointment_holds``).

Functions take a session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from .models import AppointmentHoldRow


def record(session: Session, appointment_id: str, *, expires_at: datetime, now: datetime) -> None:
    session.execute(
        delete(AppointmentHoldRow).where(AppointmentHoldRow.appointment_id == appointment_id)
    )
    session.execute(
        insert(AppointmentHoldRow).values(
            appointment_id=appointment_id, expires_at=expires_at, created_at=now, last_error=None
        )
    )


def forget(session: Session, appointment_id: str) -> int:
    result = session.execute(
        delete(AppointmentHoldRow).where(AppointmentHoldRow.appointment_id == appointment_id)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def due(session: Session, now: datetime, *, limit: int = 100) -> list[tuple[str, datetime]]:
    """Holds past their expiry, oldest first: (appointment id, expires at)."""
    stmt = (
        select(AppointmentHoldRow.appointment_id, AppointmentHoldRow.expires_at)
        .where(AppointmentHoldRow.expires_at <= now)
        .order_by(AppointmentHoldRow.expires_at, AppointmentHoldRow.appointment_id)
        .limit(limit)
    )
    return [(str(a), e) for a, e in session.execute(stmt)]


def record_error(session: Session, appointment_id: str, error: str) -> None:
    session.execute(
        update(AppointmentHoldRow)
        .where(AppointmentHoldRow.appointment_id == appointment_id)
        .values(last_error=error[:2000])
    )


def expires_at(session: Session, appointment_id: str) -> datetime | None:
    stmt = select(AppointmentHoldRow.expires_at).where(
        AppointmentHoldRow.appointment_id == appointment_id
    )
    return session.scalar(stmt)


def expires_before(session: Session, appointment_ids: Collection[str], now: datetime) -> list[str]:
    """Which of these appointments are holds of ours past their expiry."""
    stmt = select(AppointmentHoldRow.appointment_id).where(
        AppointmentHoldRow.appointment_id.in_(sorted(appointment_ids)),
        AppointmentHoldRow.expires_at <= now,
    )
    return sorted(str(a) for a in session.scalars(stmt))
