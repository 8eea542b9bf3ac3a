"""All SQL of the booking counters (table ``booking_counts``).

Each hold, booking, cancellation and expired hold through slotsync adds one to the
counter of its kind and UTC hour, in the transaction that records the write itself
(an upsert of one small row). Nothing else is kept: no appointment, slot or patient
id, so the table holds no patient data and needs no protection beyond its size, which
stays at a few rows an hour (pruned with the samples).

Functions take a session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .bulk import insert_statement
from .models import BookingCountRow

HOLD = "hold"
BOOK = "book"
CANCEL = "cancel"  # a cancellation or release through our API (also of a rescheduled one)
EXPIRE = "expire"  # a hold slotsync cancelled at the EHR because it lapsed unbooked
KINDS = (HOLD, BOOK, CANCEL, EXPIRE)
HOUR = timedelta(hours=1)


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def add(session: Session, kind: str, at: datetime, n: int = 1) -> None:
    """Count ``n`` events of ``kind`` in the hour of ``at``."""
    if kind not in KINDS:
        raise ValueError(f"unknown booking event kind {kind!r}")
    table = BookingCountRow.__table__
    stmt = insert_statement(session, table).values(hour=hour_of(at), kind=kind, count=n)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["hour", "kind"],
            set_={"count": table.c["count"] + stmt.excluded["count"]},
        )
    )


@dataclass(frozen=True, slots=True)
class HourlyCounts:
    """Events per kind and hour over [first hour, last hour], every hour present (0 if none)."""

    hours: list[datetime]
    by_kind: dict[str, list[int]]

    def total(self, kind: str) -> int:
        return sum(self.by_kind.get(kind, ()))


def hourly(session: Session, start: datetime, end: datetime) -> HourlyCounts:
    """The counts of the hours from the one holding ``start`` to the one holding ``end``:
    a primary-key range read of at most four rows an hour."""
    first, last = hour_of(start), hour_of(end)
    hours: list[datetime] = []
    moment = first
    while moment <= last:
        hours.append(moment)
        moment += HOUR
    index = {hour: n for n, hour in enumerate(hours)}
    by_kind = {kind: [0] * len(hours) for kind in KINDS}
    rows = session.connection().execute(
        select(BookingCountRow.hour, BookingCountRow.kind, BookingCountRow.count).where(
            BookingCountRow.hour >= first, BookingCountRow.hour <= last
        )
    )
    for hour, kind, count in rows.all():
        if kind in by_kind and hour in index:
            by_kind[kind][index[hour]] += int(count)
    return HourlyCounts(hours, by_kind)


def prune(session: Session, older_than: datetime) -> int:
    done = session.execute(
        delete(BookingCountRow).where(BookingCountRow.hour < hour_of(older_than))
    )
    return int(getattr(done, "rowcount", 0) or 0)
