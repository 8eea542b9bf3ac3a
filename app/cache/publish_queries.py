"""All SQL of the SMART Scheduling Links feed (:mod:`app.publish`): its slot rows and state.

The feed's Slot files stream from ``published_slots`` through a server-side cursor
(PostgreSQL) or the driver's row iterator (SQLite), a batch at a time, so that a
million-slot download never holds more than one batch in the API process.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, case, delete, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from .models import PublishedSlotRow, PublishStateRow, SlotClaimRow

MAX_PARAMETERS = 30_000  # below both SQLite's (32,766) and PostgreSQL's (65,535) limits
STREAM_BATCH = 5_000  # lines fetched per round trip while a file streams (~3 MB)

# Slot lines are built by the database (the row's values between fixed text pieces,
# timestamps spelled as FHIR instants, ``2026-12-07T14:00:00.000Z``): streaming a
# million lines then costs the API process little more than passing text on, and the
# database does the work on the other core.
_INSTANT = {
    "postgresql": lambda c: func.to_char(
        func.timezone("UTC", c), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"', type_=String
    ),
    "sqlite": lambda c: func.strftime("%Y-%m-%dT%H:%M:%fZ", c, type_=String),
}
_TIMES = ("start", "end", "updated_at")


def _line(dialect: str, segments: Sequence[str | tuple[str]]) -> Any:
    """Text pieces and fields (1-tuples naming columns) concatenated in SQL."""
    parts: list[ColumnElement[str]] = []
    for segment in segments:
        if isinstance(segment, str):
            parts.append(literal(segment, String))
        else:
            column = getattr(PublishedSlotRow, segment[0])
            parts.append(_INSTANT[dialect](column) if segment[0] in _TIMES else column)
    expression = parts[0]
    for part in parts[1:]:
        expression = expression.concat(part)
    return expression


@dataclass(frozen=True, slots=True)
class PublishState:
    generation: int
    rules: str
    refreshed_at: datetime
    claims: str = ""  # :func:`claims_version` as of the refresh


@dataclass(frozen=True, slots=True)
class FileCount:
    """How many rows one (state, week) holds (changed since the asked time, if any)."""

    state: str
    week: str
    rows: int


def read_state(session: Session, *, lock: bool = False) -> PublishState | None:
    """The feed's state; ``lock``: row-locked until the transaction ends (PostgreSQL),
    so that two API processes never refresh the feed at once."""
    stmt = select(
        PublishStateRow.generation,
        PublishStateRow.rules,
        PublishStateRow.refreshed_at,
        PublishStateRow.claims,
    ).where(PublishStateRow.id == 1)
    if lock:
        stmt = stmt.with_for_update()
    row = session.execute(stmt).first()
    return None if row is None else PublishState(int(row[0]), row[1], row[2], row[3])


def save_state(session: Session, state: PublishState) -> None:
    values = {
        "generation": state.generation,
        "rules": state.rules,
        "refreshed_at": state.refreshed_at,
        "claims": state.claims,
    }
    stmt = _insert(session, PublishStateRow.__table__).values(id=1, **values)
    session.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=values))


def claims_version(session: Session) -> str:
    """Changes whenever a slot is claimed or a claim is released (count and newest)."""
    count, newest = session.execute(select(func.count(), func.max(SlotClaimRow.created_at))).one()
    return f"{count}|{newest.isoformat() if newest else ''}"


def digests_between(session: Session, start: datetime, end: datetime) -> dict[str, tuple[str, str]]:
    """Feed slot id -> (digest, status) of the rows starting in ``[start, end)``."""
    stmt = select(PublishedSlotRow.id, PublishedSlotRow.digest, PublishedSlotRow.status).where(
        PublishedSlotRow.start >= start, PublishedSlotRow.start < end
    )
    return {row[0]: (row[1], row[2]) for row in session.execute(stmt)}


def upsert_slots(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace rows (each with every column), in batches."""
    if not rows:
        return
    per_statement = max(1, MAX_PARAMETERS // len(rows[0]))
    connection = session.connection().execution_options(compiled_cache=None)
    for i in range(0, len(rows), per_statement):
        stmt = _insert(session, PublishedSlotRow.__table__).values(rows[i : i + per_statement])
        updates = {c: stmt.excluded[c] for c in rows[0] if c != "id"}
        connection.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=updates))


def mark_busy(session: Session, ids: Collection[str], at: datetime) -> None:
    """The rows ``ids`` are no longer offered: busy as of ``at``."""
    listed = list(ids)
    for i in range(0, len(listed), MAX_PARAMETERS):
        session.execute(
            update(PublishedSlotRow)
            .where(PublishedSlotRow.id.in_(listed[i : i + MAX_PARAMETERS]))
            .values(status="busy", updated_at=at)
        )


def mark_busy_outside(session: Session, start: datetime, end: datetime, at: datetime) -> None:
    """Free rows starting outside ``[start, end)`` (past, or beyond the horizon) turn busy."""
    session.execute(
        update(PublishedSlotRow)
        .where(
            PublishedSlotRow.status == "free",
            (PublishedSlotRow.start < start) | (PublishedSlotRow.start >= end),
        )
        .values(status="busy", updated_at=at)
    )


def purge_busy(session: Session, before: datetime) -> int:
    """Forget busy rows that turned busy before ``before`` (incremental readers that
    asked since then have seen them)."""
    result = session.execute(
        delete(PublishedSlotRow).where(
            PublishedSlotRow.status == "busy", PublishedSlotRow.updated_at < before
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def published_schedules(session: Session) -> set[str]:
    """The feed Schedule ids the published slots name."""
    return set(session.execute(select(PublishedSlotRow.schedule).distinct()).scalars())


def file_counts(session: Session, since: datetime | None) -> list[FileCount]:
    """Rows per (state, week), those changed after ``since`` when given, in order."""
    stmt = select(PublishedSlotRow.state, PublishedSlotRow.week, func.count()).group_by(
        PublishedSlotRow.state, PublishedSlotRow.week
    )
    if since is not None:
        stmt = stmt.where(PublishedSlotRow.updated_at > since)
    rows = session.execute(stmt.order_by(PublishedSlotRow.week, PublishedSlotRow.state))
    return [FileCount(state, week, int(n)) for state, week, n in rows]


def stream_lines(
    session: Session,
    *,
    week: str,
    offset: int,
    limit: int,
    since: datetime | None,
    free: Sequence[str | tuple[str]],
    busy: Sequence[str | tuple[str]],
) -> Iterator[str]:
    """The lines of one Slot file in (start, id) order, built by the database from
    ``free`` or ``busy`` (text pieces and 1-tuples naming columns, after the row's
    status), fetched :data:`STREAM_BATCH` at a time."""
    dialect = session.get_bind().dialect.name
    text = case(
        (PublishedSlotRow.status == "free", _line(dialect, free)), else_=_line(dialect, busy)
    )
    stmt = select(text).where(PublishedSlotRow.week == week)
    if since is not None:
        stmt = stmt.where(PublishedSlotRow.updated_at > since)
    stmt = stmt.order_by(PublishedSlotRow.start, PublishedSlotRow.id).offset(offset).limit(limit)
    options = {"stream_results": True, "yield_per": STREAM_BATCH}
    yield from session.execute(stmt.execution_options(**options)).scalars()


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
