"""All SQL of the slot-claim overlay (table ``slot_claims``).

A claim is the database's promise that one request, in any API process, owns a
slot while it talks to the EHR, and afterwards that ``$find`` hides the slot
until the EHR's own data says it is taken. Exclusivity comes from the primary
key, not from reading first: two requests inserting the same slot id cannot both
commit (PostgreSQL makes the second wait for the first, then raises a unique
violation; SQLite has one writer at a time).

Functions take a session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from app.core.domain import Slot
from app.core.errors import SlotsyncError

from .models import SlotClaimRow, SlotRow
from .rows import SLOT_COLUMNS, select_slots, slot_from_row

PENDING = "pending"
HELD = "held"
BOOKED = "booked"


class SlotsTaken(SlotsyncError):
    """Another live claim owns at least one of the slots (nothing was written)."""


@dataclass(frozen=True, slots=True)
class Claim:
    slot_id: str
    claim_id: str
    appointment_id: str | None
    kind: str
    schedule_id: str
    start: datetime
    end: datetime
    expires_at: datetime
    confirmed_at: datetime | None


_COLUMNS = (
    SlotClaimRow.slot_id,
    SlotClaimRow.claim_id,
    SlotClaimRow.appointment_id,
    SlotClaimRow.kind,
    SlotClaimRow.schedule_id,
    SlotClaimRow.slot_start,
    SlotClaimRow.slot_end,
    SlotClaimRow.expires_at,
    SlotClaimRow.confirmed_at,
)


def _claim(row: Any) -> Claim:
    return Claim(*row)


def unclaimed(now: datetime) -> Any:
    """SQL condition for ``SlotRow``: no live claim hides this slot (the ``$find`` filter)."""
    return ~exists().where(SlotClaimRow.slot_id == SlotRow.id, SlotClaimRow.expires_at > now)


def insert_claims(
    session: Session,
    slots: Iterable[Slot],
    *,
    claim_id: str,
    kind: str,
    expires_at: datetime,
    now: datetime,
) -> None:
    """Claim every slot or none: expired claims on them are dropped first.

    Raises :class:`SlotsTaken` when a live claim exists; the session's transaction
    is then unusable and must be rolled back by the caller (the context manager of
    :func:`app.cache.db.transaction` does it). Rows go in slot-id order so that two
    requests claiming overlapping sets wait for each other instead of deadlocking.
    """
    ordered = sorted({s.id: s for s in slots}.values(), key=lambda s: s.id)
    if not ordered:
        return
    ids = [s.id for s in ordered]
    session.execute(
        delete(SlotClaimRow).where(SlotClaimRow.slot_id.in_(ids), SlotClaimRow.expires_at <= now)
    )
    rows = [
        {
            "slot_id": s.id,
            "claim_id": claim_id,
            "appointment_id": None,
            "kind": kind,
            "schedule_id": s.schedule_id,
            "slot_start": s.start,
            "slot_end": s.end,
            "expires_at": expires_at,
            "created_at": now,
            "confirmed_at": None,
        }
        for s in ordered
    ]
    try:
        session.execute(insert(SlotClaimRow), rows)
        session.flush()
    except IntegrityError as exc:
        raise SlotsTaken(", ".join(ids)) from exc
    except OperationalError as exc:
        if _lost_lock_race(exc):  # a deadlock or lock timeout between claimers: the other won
            raise SlotsTaken(", ".join(ids)) from exc
        raise


# PostgreSQL: deadlock_detected, lock_not_available, serialization_failure.
_LOCK_RACE_STATES = frozenset({"40P01", "55P03", "40001"})


def _lost_lock_race(exc: OperationalError) -> bool:
    state = getattr(exc.orig, "sqlstate", None)
    return state in _LOCK_RACE_STATES or "database is locked" in str(exc.orig)


def live_claims(session: Session, slot_ids: Collection[str], now: datetime) -> list[Claim]:
    stmt = select(*_COLUMNS).where(
        SlotClaimRow.slot_id.in_(list(slot_ids)), SlotClaimRow.expires_at > now
    )
    return [_claim(r) for r in session.execute(stmt.order_by(SlotClaimRow.slot_id))]


# Every $find runs this; as text with typed parameters it skips building the
# statement and its cache key per request (a third of the call's time).
_GENERATION_AND_CLAIMED = text(
    "SELECT g.value, c.slot_id FROM cache_generation AS g"
    " LEFT OUTER JOIN slot_claims AS c"
    " ON c.expires_at > :now AND c.slot_start < :end AND c.slot_end > :start"
    " WHERE g.id = 1"
).bindparams(
    bindparam("now", type_=SlotClaimRow.expires_at.type),
    bindparam("start", type_=SlotClaimRow.slot_end.type),
    bindparam("end", type_=SlotClaimRow.slot_start.type),
)


def generation_and_claimed(
    session: Session, start: datetime, end: datetime, now: datetime
) -> tuple[int, set[str]]:
    """The cache generation, and the ids of slots overlapping [start, end) that a live
    claim hides: the two things every ``$find`` asks, in one round trip.

    Claims are not narrowed by schedule: live claims are few, and an id of another
    schedule's slot is simply never looked up."""
    rows = session.connection().execute(
        _GENERATION_AND_CLAIMED, {"now": now, "start": start, "end": end}
    )
    generation = 0
    claimed: set[str] = set()
    for value, slot_id in rows:
        generation = int(value)
        if slot_id is not None:
            claimed.add(slot_id)
    return generation, claimed


def claims_of_appointment(session: Session, appointment_id: str) -> list[Claim]:
    stmt = select(*_COLUMNS).where(SlotClaimRow.appointment_id == appointment_id)
    return [_claim(r) for r in session.execute(stmt.order_by(SlotClaimRow.slot_id))]


def claims_of(session: Session, claim_id: str) -> list[Claim]:
    stmt = select(*_COLUMNS).where(SlotClaimRow.claim_id == claim_id)
    return [_claim(r) for r in session.execute(stmt.order_by(SlotClaimRow.slot_id))]


def take_over_hold(
    session: Session,
    appointment_id: str,
    *,
    claim_id: str,
    expires_at: datetime,
    now: datetime,
) -> list[Claim]:
    """Move the live ``held`` claims of an appointment to ``pending`` under a new claim id.

    An atomic ``UPDATE ... WHERE kind = 'held'``: of two requests booking the same
    held appointment, exactly one gets the rows back; the other gets an empty list.
    Returns the claims as they were before the update (kind ``held``, old expiry).
    """
    before = [
        c
        for c in claims_of_appointment(session, appointment_id)
        if c.kind == HELD and c.expires_at > now
    ]
    if not before:
        return []
    result = session.execute(
        update(SlotClaimRow)
        .where(
            and_(
                SlotClaimRow.appointment_id == appointment_id,
                SlotClaimRow.kind == HELD,
                SlotClaimRow.expires_at > now,
                SlotClaimRow.slot_id.in_([c.slot_id for c in before]),
            )
        )
        .values(kind=PENDING, claim_id=claim_id, expires_at=expires_at)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != len(before):  # type: ignore[attr-defined]
        # Someone else changed some of them between our read and the update.
        raise SlotsTaken(appointment_id)
    return before


def confirm(
    session: Session,
    claim_id: str,
    *,
    appointment_id: str | None,
    kind: str,
    expires_at: datetime,
    now: datetime,
) -> int:
    """The EHR accepted the claim's hold or booking: record it and its new expiry."""
    result = session.execute(
        update(SlotClaimRow)
        .where(SlotClaimRow.claim_id == claim_id)
        .values(appointment_id=appointment_id, kind=kind, expires_at=expires_at, confirmed_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def restore(session: Session, claims: Iterable[Claim], claim_id: str) -> None:
    """Put claims back as they were (a failed booking of a held appointment keeps the hold)."""
    for c in claims:
        session.execute(
            update(SlotClaimRow)
            .where(SlotClaimRow.slot_id == c.slot_id, SlotClaimRow.claim_id == claim_id)
            .values(
                claim_id=c.claim_id,
                appointment_id=c.appointment_id,
                kind=c.kind,
                expires_at=c.expires_at,
                confirmed_at=c.confirmed_at,
            )
            .execution_options(synchronize_session=False)
        )


def extend(session: Session, claim_id: str, expires_at: datetime) -> None:
    session.execute(
        update(SlotClaimRow)
        .where(SlotClaimRow.claim_id == claim_id)
        .values(expires_at=expires_at)
        .execution_options(synchronize_session=False)
    )


def release(session: Session, claim_id: str) -> int:
    result = session.execute(delete(SlotClaimRow).where(SlotClaimRow.claim_id == claim_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


def release_appointment(session: Session, appointment_id: str) -> list[Claim]:
    """Drop every claim of an appointment (the EHR confirmed its cancellation)."""
    gone = claims_of_appointment(session, appointment_id)
    session.execute(delete(SlotClaimRow).where(SlotClaimRow.appointment_id == appointment_id))
    return gone


def reconcile_taken(
    session: Session,
    *,
    schedule_ids: Collection[str] | None,
    start: datetime,
    end: datetime,
    offered: Collection[str],
    fetched_at: datetime,
    in_scope: Callable[[Claim], bool] | None = None,
) -> int:
    """Drop booked claims that the EHR's own data has caught up with.

    For the sync of the window [start, end) of ``schedule_ids`` (None: all): a
    booked claim confirmed before the fetch started is dropped when the EHR did not
    offer its slot (busy, taken by an active Appointment, or gone); the slot has left
    the cache with it, and comes back if the EHR frees it again. A claim whose slot
    the EHR still offers stays: a generic server never marks a Slot busy, so "free"
    proves nothing about our booking. Held claims end by expiry (or are released by
    us), pending ones are in flight; neither is touched. ``in_scope`` narrows further
    (days a fresher fetch already wrote).
    """
    stmt = select(*_COLUMNS).where(
        SlotClaimRow.kind == BOOKED,
        SlotClaimRow.confirmed_at < fetched_at,
        SlotClaimRow.slot_start >= start,
        SlotClaimRow.slot_start < end,
    )
    if schedule_ids is not None:
        stmt = stmt.where(SlotClaimRow.schedule_id.in_(list(schedule_ids)))
    wanted = set(offered)
    ids = [
        c.slot_id
        for c in map(_claim, session.execute(stmt))
        if c.slot_id not in wanted and (in_scope is None or in_scope(c))
    ]
    deleted = 0
    for i in range(0, len(ids), 2000):
        result = session.execute(
            delete(SlotClaimRow).where(
                SlotClaimRow.slot_id.in_(ids[i : i + 2000]),
                SlotClaimRow.kind == BOOKED,
                SlotClaimRow.confirmed_at < fetched_at,
            )
        )
        deleted += int(result.rowcount)  # type: ignore[attr-defined]
    return deleted


def purge_expired(session: Session, now: datetime) -> int:
    """Housekeeping: expired claims are already ignored; this only keeps the table small."""
    result = session.execute(delete(SlotClaimRow).where(SlotClaimRow.expires_at <= now))
    return int(result.rowcount)  # type: ignore[attr-defined]


def slots_by_id(session: Session, slot_ids: Collection[str]) -> dict[str, Slot]:
    """Cached slots by id whatever their status or claims (to explain why one is not free)."""
    stmt = select_slots(*SLOT_COLUMNS).where(SlotRow.id.in_(list(slot_ids)))
    return {row[0]: slot_from_row(row) for row in session.execute(stmt)}


def live_claims_by_kind(session: Session, now: datetime) -> dict[str, int]:
    """Unexpired claims per kind (pending, held, booked): the overlay at a glance."""
    rows = session.execute(
        select(SlotClaimRow.kind, func.count())
        .where(SlotClaimRow.expires_at > now)
        .group_by(SlotClaimRow.kind)
    )
    return {r[0]: int(r[1]) for r in rows}


def recent_live_claims(session: Session, now: datetime, limit: int = 50) -> list[Claim]:
    """The newest unexpired claims, newest first."""
    rows = session.execute(
        select(*_COLUMNS)
        .where(SlotClaimRow.expires_at > now)
        .order_by(SlotClaimRow.created_at.desc())
        .limit(limit)
    )
    return [_claim(row) for row in rows]
