"""Engines and sessions for the cache database (SQLite embedded, PostgreSQL in production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy.exc
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names (or none)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername != "postgresql+psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the API read while a load writes; foreign keys are off by default in SQLite.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def json_text(value: Any) -> str:
    """JSON as text, by msgspec: the engines' serializer and bulk COPY's jsonb dumper."""
    return msgspec.json.encode(value).decode()


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    # msgspec both ways: the codes columns are on hot paths (slot loads, the catalog)
    kwargs.setdefault("json_serializer", json_text)
    kwargs.setdefault("json_deserializer", msgspec.json.decode)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 5)
        kwargs.setdefault("max_overflow", 10)
    return create_engine(url, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def ping(engine: Engine) -> None:
    """A round trip to the database (raises if it is not reachable)."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")


@contextmanager
def read_session(engine: Engine, *, autocommit: bool = False) -> Iterator[Session]:
    """A session for reads. With ``autocommit`` each statement stands alone: no BEGIN
    and ROLLBACK round trips around the one query a ``$find`` usually makes."""
    with Session(engine, expire_on_commit=False) as session:
        if autocommit:
            # same pool; autocommit is a client-side switch on both drivers (no round
            # trip), set on the connection: an engine with the option costs more to
            # derive than the whole query takes
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


# The database is unavailable (refused, restarting, connection lost, lock or statement
# timeouts), or no pooled connection came free: callers answer 503, not 500.
DATABASE_OUTAGES: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.TimeoutError,
)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session
