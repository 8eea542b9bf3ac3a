"""The free-slot reads behind ``$find`` and the in-process slot index: the cache's hot
read path, kept lean (shared strings and instants, code lists parsed once per value).

Slots with a live claim (held or booked through slotsync; :mod:`app.cache.claims`)
are never free, even before the EHR's notification arrives.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection, Iterator, Sequence
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Row, Text, cast, select
from sqlalchemy.orm import Session

from app.core.domain import Slot
from app.core.slot_columns import ColumnsBuilder, SlotColumns

from . import claims
from .bulk import batched, driver_connection
from .models import (
    CodeSetRow,
    ScheduleRow,
    SlotRow,
)
from .rows import SLOT_COLUMNS, select_slots, slot_from_row


def free_slots(
    session: Session,
    start: datetime,
    end: datetime,
    schedule_ids: Collection[str] | None = None,
    *,
    now: datetime | None = None,
) -> list[Slot]:
    """Free cached slots starting in [start, end), ordered by start (the $find read).

    Slots with a live claim (held or booked through slotsync, or being so right
    now; see :mod:`app.cache.claims`) are left out: they are not free any more even
    if the EHR's notification has not arrived yet.
    """
    stmt = (
        select_slots(*SLOT_COLUMNS)
        .where(
            SlotRow.start >= start,
            SlotRow.start < end,
            SlotRow.status == "free",
            claims.unclaimed(now or datetime.now(UTC)),
        )
        .order_by(SlotRow.start, SlotRow.id)
    )
    if schedule_ids is not None:
        stmt = stmt.where(SlotRow.schedule_id.in_(list(schedule_ids)))
    return [slot_from_row(row) for row in session.execute(stmt)]


@lru_cache(maxsize=50_000)
def _codes(text: str | None) -> tuple[str, ...]:
    """JSON code lists repeat endlessly across slots: parse each distinct one once."""
    return tuple(json.loads(text)) if text else ()


@lru_cache(maxsize=500_000)
def _instant(value: datetime) -> datetime:
    """One shared object per distinct instant (the first one seen): slots sit on a few
    thousand grid times, so an index holding a million of them keeps ~100 bytes less
    per slot."""
    return value


# What composition reads of a slot; code lists as JSON text, parsed once per value.
_LEAN_COLUMNS = (
    SlotRow.id,
    SlotRow.schedule_id,
    SlotRow.start,
    SlotRow.end,
    cast(CodeSetRow.service_types, Text),
    cast(CodeSetRow.specialties, Text),
    cast(CodeSetRow.appointment_types, Text),
)
_LeanRecord = Row[str, str, datetime, datetime, str, str, str]  # a row of _LEAN_COLUMNS


def _lean_slot(row: _LeanRecord) -> Slot:
    return Slot(
        id=row[0],
        # one string per schedule, not one per slot: ~60 bytes less for each slot an
        # API process keeps in memory (48 MB at 800k)
        schedule_id=sys.intern(row[1]),
        start=_instant(row[2]),
        end=_instant(row[3]),
        service_types=_codes(row[4]),
        specialties=_codes(row[5]),
        appointment_types=_codes(row[6]),
    )


def free_slots_overlapping(
    session: Session,
    start: datetime,
    end: datetime,
    schedule_ids: Collection[str],
    *,
    lookback: timedelta,
    now: datetime | None = None,
) -> list[Slot]:
    """Free cached slots of these schedules overlapping [start, end), ordered by start.

    The $find read: the (schedule_id, start) index bounds the scan (a slot overlapping
    the span started at most ``lookback`` before it), only the columns composition
    uses are read, and code lists come back as JSON text parsed once per distinct value.
    Slots with a live claim (held or booked through slotsync) are left out, as in
    :func:`free_slots`.
    """
    stmt = (
        select_slots(*_LEAN_COLUMNS)
        .where(
            SlotRow.schedule_id.in_(list(schedule_ids)),
            SlotRow.start >= start - lookback,
            SlotRow.start < end,
            SlotRow.end > start,
            SlotRow.status == "free",
            claims.unclaimed(now or datetime.now(UTC)),
        )
        .order_by(SlotRow.start, SlotRow.id)
    )
    return [_lean_slot(row) for row in session.execute(stmt)]


def slot_versions(session: Session) -> dict[str, int]:
    """``schedule id -> slots_version`` of every cached schedule."""
    return {
        sid: version
        for sid, version in session.execute(select(ScheduleRow.id, ScheduleRow.slots_version))
    }


# Rows the slot index's read holds at a time. Its reads cover every cached slot (at
# start-up, and after a resync changed every schedule): fetched whole, a million rows
# took one API process from ~170 MB to 1.4 GB for the length of the read; streamed,
# the read adds a few MB and frees no more than it took (see free_slot_columns). The
# fewer, the fewer allocator arenas a fetch's row objects spread over and the kept
# objects then pin: warming the 1M-slot index alone left the process 39.4 MB larger
# at 5,000 rows, 31.7 MB at 500, and took 6.1 s instead of 6.6 (at start-up the offer
# memo fills those holes anyway; a re-read after a resync finds no such filler).
_READ_ROWS = 500
# PostgreSQL, the same read from the driver: no row objects or per-value conversions
# on the way (times come in the connection's zone, converted only when not UTC).
_PG_FREE_COLUMNS = (
    'SELECT s.id, s.schedule_id, s.start, s."end", c.service_types::text,'
    " c.appointment_types::text, c.specialties::text"
    " FROM slots s JOIN code_sets c ON c.id = s.code_set_id"
    " WHERE s.schedule_id = ANY(%s) AND s.status = 'free' ORDER BY s.schedule_id, s.start, s.id"
)


def free_slot_columns(
    session: Session,
    schedule_ids: Collection[str],
    *,
    instants: dict[datetime, datetime],
) -> dict[str, SlotColumns]:
    """Every free cached slot of these schedules, as columns per schedule, by start.

    The read behind the in-memory slot index: only the columns composition uses,
    code lists parsed once per distinct value, equal instants shared through
    ``instants`` (the index's table), code combinations numbered, and no
    :class:`Slot` made. Claims are not applied here (they change per booking, not per
    sync) but per request.

    Rows are streamed, ``_READ_ROWS`` at a time (a server-side cursor on
    PostgreSQL): besides the peak, a read held whole leaves the few objects it keeps
    (the first of each instant) scattered over the memory its rows took, which the
    process can then not give back.
    """
    builders = {sid: ColumnsBuilder(sid, instants) for sid in schedule_ids}
    for sid, slot_id, start, end, service, appointment, specialty in _free_rows(
        session, list(schedule_ids)
    ):
        if start.tzinfo is not UTC:
            start, end = start.astimezone(UTC), end.astimezone(UTC)
        # in the composer's order (Codes): service types, appointment types, specialties
        qualifying = (_codes(service), _codes(appointment), _codes(specialty))
        builders[sid].add(slot_id, start, end, qualifying)
    return {sid: builder.build() for sid, builder in builders.items()}


def _free_rows(session: Session, schedule_ids: list[str]) -> Iterator[Sequence[Any]]:
    """(schedule id, slot id, start, end, and the service type, appointment type and
    specialty codes as JSON text) of the free slots of ``schedule_ids``, streamed."""
    if session.get_bind().dialect.name == "postgresql":
        raw = driver_connection(session)
        # a server-side cursor lives in a transaction: $find's sessions run without one
        within = raw.transaction() if raw.autocommit else nullcontext()
        with within, raw.cursor(name="slot_index_read") as cursor:
            cursor.itersize = _READ_ROWS
            cursor.execute(_PG_FREE_COLUMNS, (schedule_ids,))
            for slot_id, sid, start, end, service, appointment, specialty in cursor:
                yield sid, slot_id, start, end, service, appointment, specialty
        return
    for chunk in batched(schedule_ids):
        stmt = (
            select_slots(*_LEAN_COLUMNS)
            .where(SlotRow.schedule_id.in_(chunk), SlotRow.status == "free")
            .order_by(SlotRow.schedule_id, SlotRow.start, SlotRow.id)
            .execution_options(yield_per=_READ_ROWS)
        )
        for slot_id, sid, start, end, service, specialty, appointment in session.execute(stmt):
            yield sid, slot_id, start, end, service, appointment, specialty


# Columns, not ORM entities: every API process reads all schedules and actors every
# few seconds (app.availability.catalog), and entities cost several times more to load.
