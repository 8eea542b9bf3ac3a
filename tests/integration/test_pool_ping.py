"""Pooled PostgreSQL connections are pinged when they sat idle, not on every checkout
(app.cache.db.ping_when_idle), against a real server whose backend we terminate."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from app.cache import db
from app.cache.db import make_engine


@pytest.fixture
def pooled(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def _backend(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _terminate(pg_url: str, pid: int) -> None:
    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_connection_that_sat_idle_is_pinged_and_replaced_when_dead(
    pooled: Engine, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # every checkout counts as idle
    first = _backend(pooled)
    _terminate(pg_url, first)  # what a server restart or a dropped idle connection does
    second = _backend(pooled)  # answered on a fresh connection, no error
    assert second != first


def test_a_connection_used_a_moment_ago_is_handed_out_unpinged(
    pooled: Engine, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    first = _backend(pooled)
    _terminate(pg_url, first)
    # no round trip before use: the dead connection fails the statement itself...
    with pytest.raises(OperationalError):
        _backend(pooled)
    # ...and the pool lets it go, so the next use connects afresh
    assert _backend(pooled) != first
