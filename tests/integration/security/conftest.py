"""A seeded app for abuse tests: real auth, a cache with known content to prove nothing changes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from tests.integration.api.conftest import record_full_load, seed

TABLES = ("actors", "schedules", "schedule_actors", "slots", "sync_runs")


def fingerprint(engine: Engine) -> str:
    """A digest of every row of the cache: equal before and after means nothing changed."""
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for table in TABLES:
            rows = conn.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()
            digest.update(f"{table}:{len(rows)}:{sorted(map(repr, rows))}".encode())
    return digest.hexdigest()


def seed_cache(engine: Engine) -> None:
    """A ready cache: schedules with free slots and a recent successful full load."""
    seed(engine, confirmed_at=datetime.now(UTC) - timedelta(minutes=1), schedules=3, per=4)
    record_full_load(engine, finished_at=datetime.now(UTC) - timedelta(minutes=2))
