"""Fixtures shared by the whole suite: real PostgreSQL and SQLite caches."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from app.cache.db import make_engine
from app.cache.migrate import upgrade
from tests.support import throwaway_postgres, throwaway_redis_db


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with throwaway_postgres() as url:
        upgrade(url)
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A migrated, empty cache on each backend (PostgreSQL tables are emptied per test)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'cache.sqlite3'}"
        upgrade(url)
        eng = make_engine(url)
    else:
        url = request.getfixturevalue("pg_url")
        eng = make_engine(url)
        with eng.begin() as conn:
            conn.exec_driver_sql(
                "TRUNCATE slot_claims, slots, schedule_actors, schedules, actors, sync_runs,"
                " sync_chunks, sync_marks, subscriptions, appointment_holds, published_slots,"
                " publish_state"
                " RESTART IDENTITY CASCADE"
            )
    yield eng
    eng.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A real Redis database of this test's own (flushed afterwards)."""
    with throwaway_redis_db() as url:
        yield url
