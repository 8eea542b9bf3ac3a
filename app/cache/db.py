"""Engines and sessions for the cache database (SQLite embedded, PostgreSQL in production)."""

from __future__ import annotations

import time
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
    """JSON as text, by msgspec: the engines' serializer."""
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
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 5)
        kwargs.setdefault("max_overflow", 10)
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        ping_when_idle(engine)
    return engine


# A pooled connection back from use less than this long ago is handed out unpinged.
PING_AFTER_IDLE_SECONDS = 1.0


def ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection with a round trip before handing it out, but only
    when it has been idle for :data:`PING_AFTER_IDLE_SECONDS`; a dead one is replaced
    (the pool retries with a fresh connection).

    Why not SQLAlchemy's ``pool_pre_ping``: it pings on every checkout, and that
    ``SELECT 1`` was a third of a typical ``$find``'s time in its thread (0.45 of
    1.3 ms at 1M slots). What the ping guards against -- the server restarted, a
    proxy or firewall dropped an idle connection -- shows on connections that sat
    idle; one used a moment ago is alive or fails at once (a restart under way),
    and that failure answers ``503`` and has SQLAlchemy drop every older connection
    of the pool, so the next request connects afresh (:mod:`app.api.outages`)."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)  # None: connected just now
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_conn, None):
                # as pre_ping does: a dead idle connection means the others are too
                raise sqlalchemy.exc.InvalidatePoolError(str(exc)) from exc
            raise


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
