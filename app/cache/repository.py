"""All SQL of the slot cache: reads for $find and status, bulk writes for sync.

Bulk writes use the dialect's ``INSERT ... ON CONFLICT`` executed as batched
executemany (SQLAlchemy's insertmanyvalues), never row-by-row ORM flushes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Text, case, cast, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from app.core.domain import Actor, Schedule, Slot

from .bulk import (
    ALL_SCHEDULES_LOCK,
    BATCH,
    COPY_THRESHOLD,
    NO_SYNC,
    CodeSetIds,
    among,
    batched,
    copy_insert_slots,
    copy_upsert_slots,
    driver_connection,
    insert_statement,
    upsert,
)
from .code_sets import code_set_ids, code_set_of
from .models import (
    ActorRow,
    CacheGenerationRow,
    CodeSetRow,
    ScheduleActorRow,
    ScheduleRow,
    SlotRow,
    SyncMarkRow,
)
from .rows import (
    ACTOR_COLUMNS,
    SCHEDULE_COLUMNS,
    SLOT_COLUMNS,
    actor_from_row,
    contact_json,
    schedule_from_row,
    select_slots,
    slot_from_row,
)
from .snapshot import SnapshotPlan

# -- conversions --------------------------------------------------------------


def slot_row(slot: Slot, code_sets: CodeSetIds, confirmed_at: datetime) -> dict[str, Any]:
    return {
        "id": slot.id,
        "schedule_id": slot.schedule_id,
        "start": slot.start,
        "end": slot.end,
        "status": slot.status,
        "code_set_id": code_sets[code_set_of(slot)],
        "overbooked": slot.overbooked,
        "comment": slot.comment,
        "version_id": slot.version_id,
        "ehr_last_updated": slot.last_updated,
        "last_confirmed_at": confirmed_at,
    }


# -- writes -------------------------------------------------------------------


def upsert_actors(session: Session, actors: Iterable[Actor], confirmed_at: datetime) -> None:
    actors = sorted(actors, key=lambda a: a.ref)  # one lock order for concurrent writers
    rows = {
        a.ref: {
            "ref": a.ref,
            "resource_type": a.resource_type,
            "display": a.display,
            "codes": list(a.codes),
            "address": a.address,
            "part_of": a.part_of,
            "timezone": a.timezone,
            **contact_json(a),
            "last_confirmed_at": confirmed_at,
        }
        for a in actors
    }
    upsert(session, ActorRow, list(rows.values()), ["ref"])


NEVER = datetime(1970, 1, 1, tzinfo=UTC)  # "slots not confirmed yet" of a new schedule


def upsert_schedules(
    session: Session, schedules: Iterable[Schedule], confirmed_at: datetime | None
) -> None:
    """Insert or update schedules (and their actor links), in id order.

    ``confirmed_at=None`` records the schedules without claiming their slots are
    confirmed (schedule discovery): new ones get :data:`NEVER`, known ones keep theirs.
    """
    unique = {s.id: s for s in sorted(schedules, key=lambda s: s.id)}
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
            "last_confirmed_at": confirmed_at or NEVER,
        }
        for s in unique.values()
    ]
    if confirmed_at is None:
        stmt = insert_statement(session, ScheduleRow)
        keep = {"id", "last_confirmed_at"}
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"], set_={c: stmt.excluded[c] for c in rows[0] if c not in keep}
        )
        for i in range(0, len(rows), BATCH):
            session.execute(stmt, rows[i : i + BATCH])
    else:
        upsert(session, ScheduleRow, rows, ["id"])
    ids = list(unique)
    for matched in among(session, ScheduleActorRow.schedule_id, ids):
        session.execute(delete(ScheduleActorRow).where(matched), execution_options=NO_SYNC)
    links = [
        {"schedule_id": s.id, "actor_ref": ref} for s in unique.values() for ref in s.actor_refs
    ]
    for i in range(0, len(links), BATCH):
        session.execute(insert_statement(session, ScheduleActorRow), links[i : i + BATCH])


def cached_slots(
    session: Session, schedule_ids: Collection[str] | None, start: datetime, end: datetime
) -> dict[str, Slot]:
    """Every cached slot of the scope (``None`` = all schedules) starting in [start, end)."""
    stmt = select_slots(*SLOT_COLUMNS).where(SlotRow.start >= start, SlotRow.start < end)
    # a Core read: the ORM's row loading costs more than the query for many rows; one
    # fetch per statement, not a call per row
    connection = session.connection()
    rows = _rows_among(
        lambda s: connection.execute(s).all(), stmt, session, SlotRow.schedule_id, schedule_ids
    )
    return {row[0]: slot_from_row(row) for row in rows}


def _rows_among(
    execute: Callable[[Any], Iterable[Any]],
    stmt: Any,
    session: Session,
    column: Any,
    values: Collection[str] | None,
) -> Iterator[Any]:
    """The rows of ``stmt`` whose ``column`` is among ``values`` (every row for None), by
    ``execute`` once per condition of :func:`among`."""
    if values is None:
        yield from execute(stmt)
        return
    for matched in among(session, column, values):
        yield from execute(stmt.where(matched))


def cached_window_slots(
    session: Session, schedule_ids: Collection[str], start: datetime, end: datetime
) -> list[Slot]:
    """:func:`cached_slots` of ``schedule_ids`` as a list (explain's read), cheaper per
    row: each code list is decoded once per distinct text (a window repeats a few
    combinations thousands of times), and PostgreSQL's rows come straight from the
    driver. Per row, decoding JSON and SQLAlchemy's result processing cost several
    times what the query does."""
    if not schedule_ids:
        return []
    decoded: dict[str | None, tuple[str, ...]] = {None: ()}

    def tokens(text: str | None) -> tuple[str, ...]:
        found = decoded.get(text)
        if found is None:
            found = decoded[text] = tuple(json.loads(text) or ())  # type: ignore[arg-type]
        return found

    out = []
    for row in _window_rows(session, _FULL, schedule_ids, start, end):
        slot_id, schedule_id, start_at, end_at, status = row[:5]
        services, specialties, types = tokens(row[5]), tokens(row[6]), tokens(row[7])
        updated = row[11].astimezone(UTC) if row[11] is not None else None
        out.append(
            Slot(slot_id, schedule_id, start_at.astimezone(UTC), end_at.astimezone(UTC), status,
                 services, specialties, types, bool(row[8]), row[9], row[10], updated)
        )  # fmt: skip
    return out


def cached_slot_spans(
    session: Session, schedule_ids: Collection[str], start: datetime, end: datetime
) -> list[Slot]:
    """The cached slots of ``schedule_ids`` starting in [start, end) with their id,
    schedule, times and status only (no codes, no comment): for a reader that looks at
    nothing else, such as explain's "not covered" schedules, a fraction of the cost."""
    if not schedule_ids:
        return []
    return [
        Slot(slot_id, schedule_id, start_at.astimezone(UTC), end_at.astimezone(UTC), status)
        for slot_id, schedule_id, start_at, end_at, status in _window_rows(
            session, _SPANS, schedule_ids, start, end
        )
    ]


# The columns of explain's reads, in Slot's order; code lists as JSON text.
_SPANS = (SlotRow.id, SlotRow.schedule_id, SlotRow.start, SlotRow.end, SlotRow.status)
_FULL = (
    *_SPANS,
    *(cast(c, Text) for c in (CodeSetRow.service_types, CodeSetRow.specialties)),
    cast(CodeSetRow.appointment_types, Text),
    *SLOT_COLUMNS[8:],
)
_PG_WINDOW = "SELECT {} WHERE s.start >= %s AND s.start < %s AND s.schedule_id = ANY(%s)"
_PG_COLUMNS = {
    _SPANS: 's.id, s.schedule_id, s.start, s."end", s.status FROM slots s',
    _FULL: 's.id, s.schedule_id, s.start, s."end", s.status, c.service_types::text,'
    " c.specialties::text, c.appointment_types::text, s.overbooked, s.comment, s.version_id,"
    " s.ehr_last_updated FROM slots s JOIN code_sets c ON c.id = s.code_set_id",
}


def _window_rows(
    session: Session,
    columns: tuple[Any, ...],
    schedule_ids: Collection[str],
    start: datetime,
    end: datetime,
) -> Sequence[Sequence[Any]]:
    """``columns`` of the slots of ``schedule_ids`` starting in [start, end). On
    PostgreSQL from the driver's cursor (plain tuples, times in the session's zone)."""
    if session.get_bind().dialect.name == "postgresql":
        raw = driver_connection(session)
        with raw.cursor() as cursor:
            sql = _PG_WINDOW.format(_PG_COLUMNS[columns])
            cursor.execute(sql, (start, end, list(schedule_ids)))
            return cursor.fetchall()
    stmt = select_slots(*columns).where(
        SlotRow.start >= start, SlotRow.start < end, SlotRow.schedule_id.in_(list(schedule_ids))
    )
    return session.connection().execute(stmt).all()


def apply_snapshot(
    session: Session,
    plan: SnapshotPlan,
    confirmed_at: datetime,
    cached: Mapping[str, Slot] | None = None,
    moved: Callable[[Sequence[Slot]], Sequence[Slot]] | None = None,
) -> int:
    """Write a snapshot plan: upserts, then deletes, and bump ``slots_version`` of every
    schedule whose slots changed (API processes keep slots in memory by that version).
    Returns the number of slots written.

    ``cached`` is the scope's cached slots the plan was made from. On PostgreSQL big
    writes go through ``COPY``: straight into the table for slots not in ``cached``,
    staged and upserted for the others. ``moved`` keeps, of the slots new to the scope,
    those to write after all when the cache may already hold some elsewhere (another
    schedule or day): it is asked only then, which on PostgreSQL means once the
    straight ``COPY`` has met one, never on a first load."""
    cached = cached or {}
    code_sets = code_set_ids(session, plan.upserts)
    new = [s for s in plan.upserts if s.id not in cached]
    changed = [s for s in plan.upserts if s.id in cached]
    touched = {s.schedule_id for s in changed} | {cached[s.id].schedule_id for s in changed}

    def elsewhere() -> list[Slot]:
        """The new slots still to write, and the schedules holding them now touched."""
        kept = list(moved(new)) if moved is not None and new else new
        touched.update(_schedules_holding(session, [s.id for s in kept]))
        return kept

    if len(plan.upserts) < COPY_THRESHOLD or session.get_bind().dialect.name != "postgresql":
        new = elsewhere()
        kept = {s.id for s in new}
        # in the plan's order (by id): concurrent upserts lock rows in one order
        rows = [
            slot_row(s, code_sets, confirmed_at)
            for s in plan.upserts
            if s.id in cached or s.id in kept
        ]
        upsert(session, SlotRow, rows, ["id"])
    else:
        if new and not copy_insert_slots(session, new, code_sets, confirmed_at):
            new = elsewhere()
            if new:
                copy_upsert_slots(session, new, code_sets, confirmed_at)
        if changed:
            copy_upsert_slots(session, changed, code_sets, confirmed_at)
    touched.update(s.schedule_id for s in new)
    for matched in among(session, SlotRow.id, plan.deletes):
        deleted = session.execute(
            delete(SlotRow).where(matched).returning(SlotRow.schedule_id),
            execution_options=NO_SYNC,
        )
        touched.update(deleted.scalars())
    bump_slots_version(session, touched)
    return len(new) + len(changed)


def _schedules_holding(session: Session, slot_ids: Sequence[str]) -> set[str]:
    """Schedules that currently hold any of these slots."""
    found: set[str] = set()
    for matched in among(session, SlotRow.id, slot_ids):
        stmt = select(SlotRow.schedule_id).where(matched).distinct()
        found.update(session.execute(stmt).scalars())
    return found


def bump_slots_version(session: Session, schedule_ids: Collection[str]) -> None:
    """Tell in-memory readers that these schedules' slots changed (same transaction):
    they get the next cache generation as their version (see ``CacheGenerationRow``).
    Call it last before committing: it holds the generation row until then."""
    if not schedule_ids:
        return
    generation = next_generation(session)
    stmt = update(ScheduleRow).values(slots_version=generation)
    for matched in among(session, ScheduleRow.id, schedule_ids):
        session.execute(stmt.where(matched), execution_options=NO_SYNC)


def next_generation(session: Session) -> int:
    """Take the next cache generation (row-locked until the transaction ends)."""
    stmt = (
        update(CacheGenerationRow)
        .where(CacheGenerationRow.id == 1)
        .values(value=CacheGenerationRow.value + 1)
        .returning(CacheGenerationRow.value)
    )
    value = session.execute(stmt).scalar()
    if value is None:  # a database created without the migration's seed row
        session.execute(insert(CacheGenerationRow).values(id=1, value=1))
        return 1
    return int(value)


def cache_generation(session: Session) -> int:
    """The newest committed cache generation."""
    value = session.execute(
        select(CacheGenerationRow.value).where(CacheGenerationRow.id == 1)
    ).scalar()
    return int(value or 0)


def lock_schedules(session: Session, schedule_ids: Collection[str] | None) -> set[str]:
    """Row-lock the schedules about to be written (all of them for None), in id order;
    returns the ids locked, i.e. those the cache holds.

    Writers of one schedule then queue up in the database, so the check of the day
    marks and the write that follows it see no concurrent change, and no schedule can
    be deleted under slots being written to it (slots have no foreign key, see
    :func:`check_schedules_held`). Locking in id order keeps two multi-schedule writers
    from deadlocking. SQLite has one writer at a time: it only reads the ids.
    """
    stmt = select(ScheduleRow.id).order_by(ScheduleRow.id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
        if schedule_ids is None:
            # Writers of every schedule also insert schedules the row locks cannot cover
            # yet (a first load): they take turns as a whole.
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ALL_SCHEDULES_LOCK})
    return set(_rows_among(session.scalars, stmt, session, ScheduleRow.id, schedule_ids))


class ScheduleGone(Exception):
    """Slots about to be written belong to a schedule the cache no longer holds: it was
    forgotten (:func:`delete_schedules_not_in`) after the fetch looked it up. Transient:
    the next attempt reads the schedule from the EHR again, or leaves its slots out if
    the EHR no longer has it."""


def check_schedules_held(slots: Iterable[Slot], held: Collection[str]) -> None:
    """Raise :class:`ScheduleGone` unless every slot's schedule is among ``held`` (the
    schedules the writing transaction has locked or written). The database no longer
    checks this row by row (migration 0012): this is the check, once per write."""
    missing = {s.schedule_id for s in slots} - set(held)
    if missing:
        raise ScheduleGone(f"slots of schedules no longer cached: {', '.join(sorted(missing)[:5])}")


def fresher_days(
    session: Session,
    schedule_ids: Collection[str] | None,
    start: datetime,
    end: datetime,
    than: datetime,
) -> set[tuple[str, datetime]]:
    """(schedule, day) pairs of [start, end) confirmed by a fetch newer than ``than``."""
    stmt = select(SyncMarkRow.schedule_id, SyncMarkRow.day).where(
        SyncMarkRow.day >= start, SyncMarkRow.day < end, SyncMarkRow.confirmed_at > than
    )
    rows = _rows_among(session.execute, stmt, session, SyncMarkRow.schedule_id, schedule_ids)
    return {(r[0], r[1]) for r in rows}


def slot_positions(session: Session, slot_ids: Collection[str]) -> dict[str, tuple[str, datetime]]:
    """``slot id -> (schedule id, start)`` of the cached slots among ``slot_ids``."""
    out: dict[str, tuple[str, datetime]] = {}
    stmt = select(SlotRow.id, SlotRow.schedule_id, SlotRow.start)
    for matched in among(session, SlotRow.id, slot_ids):
        rows = session.execute(stmt.where(matched))
        out.update((sid, (schedule, start)) for sid, schedule, start in rows)
    return out


def mark_days(
    session: Session,
    schedule_ids: Sequence[str],
    days: Sequence[datetime],
    confirmed_at: datetime,
    skip: Collection[tuple[str, datetime]] = (),
) -> None:
    """Record that these schedule days now hold the EHR's state as of ``confirmed_at``."""
    pairs = [(sid, day) for sid in sorted(schedule_ids) for day in days if (sid, day) not in skip]
    if not pairs:
        return
    if session.get_bind().dialect.name == "postgresql":
        # one statement whatever the count (a whole-window chunk marks every schedule):
        # the arrays travel as two parameters and the statement is compiled once
        session.execute(
            _MARK_DAYS_PG,
            {
                "sids": [sid for sid, _ in pairs],
                "days": [day for _, day in pairs],
                "confirmed": confirmed_at,
            },
        )
        return
    rows = [{"schedule_id": sid, "day": day, "confirmed_at": confirmed_at} for sid, day in pairs]
    upsert(session, SyncMarkRow, rows, ["schedule_id", "day"])


_MARK_DAYS_PG = text(
    "INSERT INTO sync_marks (schedule_id, day, confirmed_at)"
    " SELECT m.sid, m.day, CAST(:confirmed AS timestamptz)"
    " FROM unnest(CAST(:sids AS text[]), CAST(:days AS timestamptz[])) AS m(sid, day)"
    " ON CONFLICT (schedule_id, day) DO UPDATE SET confirmed_at = excluded.confirmed_at"
)


def confirm_schedules(
    session: Session,
    schedule_ids: Collection[str] | None,
    start: datetime,
    end: datetime,
    confirmed_at: datetime,
) -> None:
    """Schedules were confirmed for [start, end): widen coverage, clear the last error.

    ``last_confirmed_at`` only moves forward: a write of older data (for days a
    newer fetch left alone) must not make the schedule look fresher or staler.
    """
    stmt = update(ScheduleRow).values(
        last_confirmed_at=case(
            (ScheduleRow.last_confirmed_at < confirmed_at, confirmed_at),
            else_=ScheduleRow.last_confirmed_at,
        ),
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
    if schedule_ids is None:
        session.execute(stmt, execution_options=NO_SYNC)
        return
    for matched in among(session, ScheduleRow.id, schedule_ids):
        session.execute(stmt.where(matched), execution_options=NO_SYNC)


def record_schedule_error(
    session: Session, schedule_ids: Collection[str] | None, error: str
) -> None:
    """Sync of these schedules (None: of every schedule, a whole-day chunk) failed for good;
    the next successful write of theirs clears it (:func:`confirm_schedules`)."""
    if schedule_ids is None:
        session.execute(update(ScheduleRow).values(last_error=error[:2000]))
        return
    for chunk in batched(sorted(schedule_ids)):
        session.execute(
            update(ScheduleRow).where(ScheduleRow.id.in_(chunk)).values(last_error=error[:2000])
        )


def delete_schedules_not_in(session: Session, keep: Collection[str], older_than: datetime) -> int:
    """Forget schedules the EHR no longer lists, and their slots."""
    keep_set = set(keep)
    # Locked as the writers lock them, and the age checked again on the locked rows: a
    # writer of one of them finishes first (its slots are then deleted with it) or, if it
    # confirmed the schedule, keeps it; one that comes after finds it gone
    # (:class:`ScheduleGone`).
    stmt = (
        select(ScheduleRow.id)
        .where(ScheduleRow.last_confirmed_at < older_than)
        .order_by(ScheduleRow.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    stale = [sid for sid in session.execute(stmt).scalars() if sid not in keep_set]
    for chunk in batched(stale):
        session.execute(delete(SlotRow).where(SlotRow.schedule_id.in_(chunk)))
        session.execute(delete(ScheduleRow).where(ScheduleRow.id.in_(chunk)))
    if stale:
        next_generation(session)  # in-memory readers drop the schedules gone
    return len(stale)


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


def schedules_by_id(session: Session, ids: Collection[str] | None = None) -> dict[str, Schedule]:
    rows = _rows_among(session.execute, select(*SCHEDULE_COLUMNS), session, ScheduleRow.id, ids)
    return {row.id: schedule_from_row(row) for row in rows}


def schedule_states(session: Session) -> tuple[dict[str, datetime], dict[str, str]]:
    """``schedule id -> when a sync last confirmed it`` for every cached schedule, and
    ``schedule id -> why its last sync failed for good`` for those in that state."""
    stmt = select(ScheduleRow.id, ScheduleRow.last_confirmed_at, ScheduleRow.last_error)
    confirmations: dict[str, datetime] = {}
    errors: dict[str, str] = {}
    for sid, confirmed, error in session.execute(stmt):
        confirmations[sid] = confirmed
        if error is not None:
            errors[sid] = error
    return confirmations, errors


def _content_digest(columns: Sequence[Any], key: Any) -> str:
    names = ", ".join(column.name for column in columns)
    table = columns[0].table.name
    # coalesce: string_agg of no rows is NULL, and NULL || anything is NULL
    digest = f"md5(string_agg(ROW({names})::text, ',' ORDER BY {key.name}))"
    return f"(SELECT coalesce({digest}, '') FROM {table})"


# Over exactly the columns the catalog's Schedule and Actor objects are made of: a
# column added to those tuples is in the digest too.
_CATALOG_DIGEST = (
    _content_digest(SCHEDULE_COLUMNS, ScheduleRow.id)
    + " || "
    + _content_digest(ACTOR_COLUMNS, ActorRow.ref)
)
# Over exactly what schedule_states reads.
_STATE_COLUMNS = (ScheduleRow.id, ScheduleRow.last_confirmed_at, ScheduleRow.last_error)
_DIGESTS = text(f"SELECT {_CATALOG_DIGEST}, {_content_digest(_STATE_COLUMNS, ScheduleRow.id)}")


@dataclass(frozen=True, slots=True)
class CatalogDigests:
    """Digests computed by PostgreSQL: equal digests, equal rows."""

    catalog: str  # every cached schedule and actor as the catalog holds them
    states: str  # every schedule's sync time and error (schedule_states)


def catalog_digests(session: Session) -> CatalogDigests | None:
    """The digests of what the catalog is read from, in one statement (its cost is
    PostgreSQL's, ~1 ms at 600 schedules, against ~3 ms of Python for reading the sync
    times, and many more for the schedules and actors). None on SQLite (no md5 there;
    its catalog is read whole)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    catalog, states = session.execute(_DIGESTS).one()
    return CatalogDigests(str(catalog), str(states))


def actors_by_ref(session: Session, refs: Collection[str] | None = None) -> dict[str, Actor]:
    rows = _rows_among(session.execute, select(*ACTOR_COLUMNS), session, ActorRow.ref, refs)
    return {row.ref: actor_from_row(row) for row in rows}


def count_slots(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(SlotRow)) or 0)


def slots_per_schedule(session: Session) -> dict[str, int]:
    rows = session.execute(select(SlotRow.schedule_id, func.count()).group_by(SlotRow.schedule_id))
    return {r[0]: int(r[1]) for r in rows}


def schedule_rows(
    session: Session, ids: Collection[str] | None = None, limit: int | None = None
) -> list[ScheduleRow]:
    stmt = select(ScheduleRow).order_by(ScheduleRow.id)
    if ids is not None:
        stmt = stmt.where(ScheduleRow.id.in_(list(ids)))
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def count_schedules(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(ScheduleRow)) or 0)


def remove_slots(session: Session, slot_ids: Collection[str]) -> None:
    """Take slots out of the cache now, whatever the sync last saw (the EHR said at
    booking time that they are busy, taken or gone); readers are told as by a sync."""
    ids = tuple(sorted(set(slot_ids)))
    if not ids:
        return
    # The sync's lock order (schedules, then their slots, then the generation): a
    # sync writing these schedules meanwhile waits for us or we for it, no deadlock.
    lock_schedules(session, _schedules_holding(session, ids))
    plan = SnapshotPlan(upserts=(), deletes=ids, unchanged=0)
    apply_snapshot(session, plan, datetime.now(UTC))  # no upserts: the time is not used


def schedule_page(
    session: Session, *, search: str | None, offset: int, limit: int
) -> tuple[list[ScheduleRow], int]:
    """One page of schedules in id order, and how many match: ``search`` matches a part of
    the schedule id or of an actor reference (the ops console's table)."""
    stmt = select(ScheduleRow)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        by_actor = select(ScheduleActorRow.schedule_id).where(
            ScheduleActorRow.actor_ref.like(pattern, escape="\\")
        )
        stmt = stmt.where(
            or_(ScheduleRow.id.like(pattern, escape="\\"), ScheduleRow.id.in_(by_actor))
        )
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    rows = session.scalars(stmt.order_by(ScheduleRow.id).offset(offset).limit(limit))
    return list(rows), total


def slots_in_schedules(session: Session, schedule_ids: Collection[str]) -> dict[str, int]:
    """Cached slots of just these schedules (the slot index's schedule column serves it)."""
    if not schedule_ids:
        return {}
    rows = session.execute(
        select(SlotRow.schedule_id, func.count())
        .where(SlotRow.schedule_id.in_(list(schedule_ids)))
        .group_by(SlotRow.schedule_id)
    )
    return {r[0]: int(r[1]) for r in rows}


def refresh_planner_statistics(session: Session) -> None:
    """``ANALYZE`` the tables a whole-horizon run rewrites (PostgreSQL; elsewhere
    nothing): PostgreSQL's own advice after a bulk load. The planner otherwise works
    from the statistics of before the load (an empty table, after the first one) until
    autovacuum gets to it, minutes later on a big table, or never where it is off.
    ANALYZE samples a fixed number of rows, so it takes about as long at 10M slots as at
    1M; it takes no lock that writers or readers wait for."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(text("SET LOCAL lock_timeout = '5s'"))  # behind a manual VACUUM: skip
    session.execute(text("ANALYZE slots, sync_marks, schedules"))
