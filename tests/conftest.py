"""Fixtures shared by the whole suite: real PostgreSQL and SQLite caches.

The folders are the test axes, and each test gets its folder's marker: ``unit`` (pure
code, no services), ``integration`` (real PostgreSQL, Redis or HTTP in this process)
and ``system`` (whole processes: API, workers, sandbox, CLI). ``pytest -m unit`` runs
the fast ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from app.cache.db import make_engine
from app.cache.migrate import upgrade
from benchmarks.databases import throwaway_postgres, throwaway_redis_db


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
        _empty(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A real Redis database of this test's own (flushed afterwards)."""
    with throwaway_redis_db() as url:
        yield url


def _empty(engine: Engine, attempts: int = 5) -> None:
    """Empty every table. The previous test's API may still be finishing a background
    transaction (its warm-up or periodic work): a deadlock with it is retried."""
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    "TRUNCATE slot_claims, slots, schedule_actors, schedules, actors, sync_runs,"
                    " sync_chunks, sync_marks, subscriptions, appointment_holds, ehr_capabilities,"
                    " published_slots, publish_state, sync_samples, code_sets"
                    " RESTART IDENTITY CASCADE"
                )
            return
        except OperationalError as exc:
            if "deadlock" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.2)


AXES = ("unit", "integration", "system")
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its axis, and refuse a test file outside the three folders."""
    for item in items:
        axis = item.path.relative_to(TESTS).parts[0]
        if axis not in AXES:
            raise pytest.UsageError(
                f"{item.path}: tests live under tests/{{unit,integration,system}}/"
            )
        item.add_marker(axis)
