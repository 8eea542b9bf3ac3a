"""Bulk writes of the slot cache: the dialect's ``INSERT ... ON CONFLICT`` executed as
batched executemany (SQLAlchemy's insertmanyvalues), and PostgreSQL COPY for slots;
never row-by-row ORM flushes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import String, any_, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.core.domain import CodeSet, Slot

BATCH = 2000
# For ORM-mode UPDATE/DELETE of rows no session here holds as objects: the default
# ("auto") strategy evaluates each statement's criteria against the identity map first.
NO_SYNC = {"synchronize_session": False}


def insert_statement(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def upsert(session: Session, table: Any, rows: list[dict[str, Any]], key: Sequence[str]) -> None:
    """``INSERT ... ON CONFLICT DO UPDATE`` of many rows as one executemany on the Core
    connection, which SQLAlchemy sends as multi-row ``VALUES`` batches of one statement
    compiled once (insertmanyvalues). Compiling a statement of a whole batch of values
    instead cost ~0.3 ms of CPU a row, far more than the database spends on it; the ORM
    bulk path costs more too. Rows must be unique on ``key``."""
    if not rows:
        return
    stmt = insert_statement(session, table.__table__)
    updates = {c: stmt.excluded[c] for c in rows[0] if c not in key}
    stmt = stmt.on_conflict_do_update(index_elements=list(key), set_=updates)
    session.connection().execute(stmt, rows)


ALL_SCHEDULES_LOCK = 0x510750  # advisory lock key of whole-window writes
COPY_THRESHOLD = 64  # below this many rows the staging round trips cost more than they save
# The slot columns bulk writes fill, with their PostgreSQL types (for binary COPY:
# half the cost of the text format, which spells out every timestamp).
SLOT_COPY_COLUMNS = {
    "id": "text",
    "schedule_id": "text",
    "start": "timestamptz",
    "end": "timestamptz",
    "status": "text",
    "code_set_id": "int4",
    "overbooked": "bool",
    "comment": "text",
    "version_id": "text",
    "ehr_last_updated": "timestamptz",
    "last_confirmed_at": "timestamptz",
}
SLOT_FIELDS = tuple(SLOT_COPY_COLUMNS)
CodeSetIds = Mapping[CodeSet, int]  # code set -> its row's id (app.cache.code_sets)


def _copy_rows(
    cur: Any, table: str, slots: Sequence[Slot], code_sets: CodeSetIds, confirmed_at: datetime
) -> None:
    columns = ", ".join(f'"{c}"' for c in SLOT_FIELDS)
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(SLOT_COPY_COLUMNS.values()))
        write = copy.write_row
        for s in slots:
            write(
                (
                    s.id,
                    s.schedule_id,
                    s.start,
                    s.end,
                    s.status,
                    code_sets[s.service_types, s.specialties, s.appointment_types],
                    s.overbooked,
                    s.comment,
                    s.version_id,
                    s.last_updated,
                    confirmed_at,
                )
            )


def driver_connection(session: Session) -> Any:
    """The psycopg connection under the session's connection (for ``COPY``, server-side
    cursors and reads that skip SQLAlchemy's row processing)."""
    raw = session.connection().connection.driver_connection
    assert raw is not None, "the session's connection is closed"
    return raw


def copy_upsert_slots(
    session: Session, slots: Sequence[Slot], code_sets: CodeSetIds, confirmed_at: datetime
) -> None:
    """PostgreSQL: ``COPY`` into a per-connection temporary table, then one
    ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``: the fast path for big upserts."""
    raw = driver_connection(session)
    columns = ", ".join(f'"{c}"' for c in SLOT_FIELDS)
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in SLOT_FIELDS if c != "id")
    with raw.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS slot_stage (LIKE slots) ON COMMIT DELETE ROWS")
        _copy_rows(cur, "slot_stage", slots, code_sets, confirmed_at)
        cur.execute(
            f"INSERT INTO slots ({columns}) SELECT {columns} FROM slot_stage"
            f" ON CONFLICT (id) DO UPDATE SET {updates}"
        )
        cur.execute("DELETE FROM slot_stage")


def copy_insert_slots(
    session: Session, slots: Sequence[Slot], code_sets: CodeSetIds, confirmed_at: datetime
) -> bool:
    """PostgreSQL, slots new to the cache (an initial load): ``COPY`` straight into
    ``slots``. Should one exist after all (moved in from another window or schedule),
    the savepoint undoes the copy and the answer is False: upsert them instead."""
    raw = driver_connection(session)
    with raw.cursor() as cur:
        cur.execute("SAVEPOINT slot_copy")
        try:
            _copy_rows(cur, "slots", slots, code_sets, confirmed_at)
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT slot_copy")
            return False
        cur.execute("RELEASE SAVEPOINT slot_copy")
        return True


def batched(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), BATCH):
        yield items[i : i + BATCH]


def among(session: Session, column: Any, values: Collection[str]) -> Iterator[ColumnElement[bool]]:
    """``column`` is one of ``values``, as conditions to run one statement each (never
    to AND into one statement: on SQLite a row matches only one of them).

    PostgreSQL: a single ``= ANY(array)``, whatever the count. Its text is the same every
    time, so SQLAlchemy compiles it once and psycopg parses one placeholder; an ``IN``
    list of a whole-window chunk's 600 schedule ids cost ~2 ms of client CPU a statement,
    several statements a chunk. SQLite: ``IN`` lists of at most :data:`BATCH`."""
    if not values:
        return
    if session.get_bind().dialect.name == "postgresql":
        array = bindparam(f"{column.key}_values", list(values), type_=postgresql.ARRAY(String))
        yield column == any_(array)
        return
    for chunk in batched(sorted(values)):
        yield column.in_(chunk)
