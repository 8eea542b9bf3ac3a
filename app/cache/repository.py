"""All SQL of the slot cache: reads for $find and status, bulk writes for sync.

Bulk writes use the dialect's ``INSERT ... ON CONFLICT`` executed as batched
executemany (SQLAlchemy's insertmanyvalues), never row-by-row ORM flushes.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, Text, case, cast, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.domain import Actor, Schedule, Slot

from . import claims
from .models import ActorRow, ScheduleActorRow, ScheduleRow, SlotRow, SyncRunRow
from .snapshot import SnapshotPlan

BATCH = 2000


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _upsert(session: Session, table: Any, rows: list[dict[str, Any]], key: Sequence[str]) -> None:
    if not rows:
        return
    stmt = _insert(session, table)
    updates = {c: stmt.excluded[c] for c in rows[0] if c not in key}
    stmt = stmt.on_conflict_do_update(index_elements=list(key), set_=updates)
    for i in range(0, len(rows), BATCH):
        session.execute(stmt, rows[i : i + BATCH])


def _batched(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), BATCH):
        yield items[i : i + BATCH]


# -- conversions --------------------------------------------------------------


def slot_row(slot: Slot, confirmed_at: datetime) -> dict[str, Any]:
    return {
        "id": slot.id,
        "schedule_id": slot.schedule_id,
        "start": slot.start,
        "end": slot.end,
        "status": slot.status,
        "service_types": list(slot.service_types),
        "specialties": list(slot.specialties),
        "appointment_types": list(slot.appointment_types),
        "overbooked": slot.overbooked,
        "comment": slot.comment,
        "version_id": slot.version_id,
        "ehr_last_updated": slot.last_updated,
        "last_confirmed_at": confirmed_at,
    }


SLOT_COLUMNS = (
    SlotRow.id,
    SlotRow.schedule_id,
    SlotRow.start,
    SlotRow.end,
    SlotRow.status,
    SlotRow.service_types,
    SlotRow.specialties,
    SlotRow.appointment_types,
    SlotRow.overbooked,
    SlotRow.comment,
    SlotRow.version_id,
    SlotRow.ehr_last_updated,
)


def slot_from_row(row: Row[Any]) -> Slot:
    return Slot(
        id=row[0],
        schedule_id=row[1],
        start=row[2],
        end=row[3],
        status=row[4],
        service_types=tuple(row[5] or ()),
        specialties=tuple(row[6] or ()),
        appointment_types=tuple(row[7] or ()),
        overbooked=bool(row[8]),
        comment=row[9],
        version_id=row[10],
        last_updated=row[11],
    )


def schedule_from_row(row: ScheduleRow) -> Schedule:
    return Schedule(
        id=row.id,
        actor_refs=tuple(row.actor_refs or ()),
        service_types=tuple(row.service_types or ()),
        specialties=tuple(row.specialties or ()),
        horizon_start=row.horizon_start,
        horizon_end=row.horizon_end,
    )


def actor_from_row(row: ActorRow) -> Actor:
    return Actor(
        ref=row.ref,
        display=row.display,
        codes=tuple(row.codes or ()),
        address=row.address,
        part_of=row.part_of,
        timezone=row.timezone,
    )


# -- writes -------------------------------------------------------------------


def upsert_actors(session: Session, actors: Iterable[Actor], confirmed_at: datetime) -> None:
    rows = {
        a.ref: {
            "ref": a.ref,
            "resource_type": a.resource_type,
            "display": a.display,
            "codes": list(a.codes),
            "address": a.address,
            "part_of": a.part_of,
            "timezone": a.timezone,
            "last_confirmed_at": confirmed_at,
        }
        for a in actors
    }
    _upsert(session, ActorRow, list(rows.values()), ["ref"])


def upsert_schedules(
    session: Session, schedules: Iterable[Schedule], confirmed_at: datetime
) -> None:
    unique = {s.id: s for s in schedules}
    if not unique:
        return
    rows = [
        {
            "id": s.id,
            "actor_refs": list(s.actor_refs),
            "service_types": list(s.service_types),
            "specialties": list(s.specialties),
            "horizon_start": s.horizon_start,
            "horizon_end": s.horizon_end,
            "last_confirmed_at": confirmed_at,
        }
        for s in unique.values()
    ]
    _upsert(session, ScheduleRow, rows, ["id"])
    ids = list(unique)
    for chunk in _batched(ids):
        session.execute(delete(ScheduleActorRow).where(ScheduleActorRow.schedule_id.in_(chunk)))
    links = [
        {"schedule_id": s.id, "actor_ref": ref} for s in unique.values() for ref in s.actor_refs
    ]
    for i in range(0, len(links), BATCH):
        session.execute(_insert(session, ScheduleActorRow), links[i : i + BATCH])


def cached_slots(
    session: Session, schedule_ids: Collection[str] | None, start: datetime, end: datetime
) -> dict[str, Slot]:
    """Every cached slot of the scope (``None`` = all schedules) starting in [start, end)."""
    stmt = select(*SLOT_COLUMNS).where(SlotRow.start >= start, SlotRow.start < end)
    if schedule_ids is not None:
        stmt = stmt.where(SlotRow.schedule_id.in_(list(schedule_ids)))
    return {row[0]: slot_from_row(row) for row in session.execute(stmt)}


def apply_snapshot(session: Session, plan: SnapshotPlan, confirmed_at: datetime) -> None:
    _upsert(session, SlotRow, [slot_row(s, confirmed_at) for s in plan.upserts], ["id"])
    for chunk in _batched(list(plan.deletes)):
        session.execute(delete(SlotRow).where(SlotRow.id.in_(chunk)))


def confirm_window(
    session: Session,
    schedule_ids: Collection[str] | None,
    start: datetime,
    end: datetime,
    confirmed_at: datetime,
) -> None:
    """Record that the EHR confirmed this scope just now (schedules and their slots)."""
    slots = update(SlotRow).where(SlotRow.start >= start, SlotRow.start < end)
    schedules = update(ScheduleRow)
    if schedule_ids is not None:
        ids = list(schedule_ids)
        slots = slots.where(SlotRow.schedule_id.in_(ids))
        schedules = schedules.where(ScheduleRow.id.in_(ids))
    session.execute(slots.values(last_confirmed_at=confirmed_at))
    session.execute(
        schedules.values(
            last_confirmed_at=confirmed_at,
            covered_start=case(
                (
                    or_(ScheduleRow.covered_start.is_(None), ScheduleRow.covered_start > start),
                    start,
                ),
                else_=ScheduleRow.covered_start,
            ),
            covered_end=case(
                (or_(ScheduleRow.covered_end.is_(None), ScheduleRow.covered_end < end), end),
                else_=ScheduleRow.covered_end,
            ),
            last_error=None,
        )
    )


# -- reads --------------------------------------------------------------------


def schedule_ids_for_actors(
    session: Session, actor_groups: Sequence[Collection[str]]
) -> set[str] | None:
    """Schedules matching every group (AND) of actor refs (OR within a group).

    ``None`` means unfiltered (no group given). An empty set means nothing matches.
    """
    result: set[str] | None = None
    for group in actor_groups:
        if not group:
            continue
        rows = session.execute(
            select(ScheduleActorRow.schedule_id).where(ScheduleActorRow.actor_ref.in_(list(group)))
        )
        ids = {r[0] for r in rows}
        result = ids if result is None else result & ids
    return result


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
        select(*SLOT_COLUMNS)
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


_CODES_MEMO: dict[str, tuple[str, ...]] = {}


def _codes(text: str | None) -> tuple[str, ...]:
    """JSON code lists repeat endlessly across slots: parse each distinct one once."""
    if not text:
        return ()
    codes = _CODES_MEMO.get(text)
    if codes is None:
        if len(_CODES_MEMO) > 50_000:
            _CODES_MEMO.clear()
        codes = _CODES_MEMO[text] = tuple(json.loads(text))
    return codes


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
        select(
            SlotRow.id,
            SlotRow.schedule_id,
            SlotRow.start,
            SlotRow.end,
            cast(SlotRow.service_types, Text),
            cast(SlotRow.specialties, Text),
            cast(SlotRow.appointment_types, Text),
        )
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
    return [
        Slot(
            id=row[0],
            schedule_id=row[1],
            start=row[2],
            end=row[3],
            service_types=_codes(row[4]),
            specialties=_codes(row[5]),
            appointment_types=_codes(row[6]),
        )
        for row in session.execute(stmt)
    ]


def schedules_by_id(session: Session, ids: Collection[str] | None = None) -> dict[str, Schedule]:
    stmt = select(ScheduleRow)
    if ids is not None:
        stmt = stmt.where(ScheduleRow.id.in_(list(ids)))
    return {row.id: schedule_from_row(row) for row in session.scalars(stmt)}


def schedule_confirmations(session: Session, ids: Collection[str]) -> dict[str, datetime]:
    rows = session.execute(
        select(ScheduleRow.id, ScheduleRow.last_confirmed_at).where(ScheduleRow.id.in_(list(ids)))
    )
    return {r[0]: r[1] for r in rows}


def actors_by_ref(session: Session, refs: Collection[str] | None = None) -> dict[str, Actor]:
    stmt = select(ActorRow)
    if refs is not None:
        stmt = stmt.where(ActorRow.ref.in_(list(refs)))
    return {row.ref: actor_from_row(row) for row in session.scalars(stmt)}


def count_slots(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(SlotRow)) or 0)


# -- sync runs ----------------------------------------------------------------


def start_run(
    session: Session,
    *,
    kind: str,
    scope: str,
    window: tuple[datetime, datetime] | None,
    started_at: datetime,
) -> int:
    run = SyncRunRow(
        kind=kind,
        scope=scope,
        window_start=window[0] if window else None,
        window_end=window[1] if window else None,
        started_at=started_at,
        status="running",
        slots_seen=0,
        slots_upserted=0,
        slots_deleted=0,
    )
    session.add(run)
    session.flush()
    return run.id


def finish_run(
    session: Session,
    run_id: int,
    *,
    status: str,
    finished_at: datetime,
    seen: int = 0,
    upserted: int = 0,
    deleted: int = 0,
    error: str | None = None,
) -> None:
    session.execute(
        update(SyncRunRow)
        .where(SyncRunRow.id == run_id)
        .values(
            status=status,
            finished_at=finished_at,
            slots_seen=seen,
            slots_upserted=upserted,
            slots_deleted=deleted,
            error=error,
        )
    )


def recent_runs(session: Session, limit: int = 20) -> list[SyncRunRow]:
    return list(session.scalars(select(SyncRunRow).order_by(SyncRunRow.id.desc()).limit(limit)))
