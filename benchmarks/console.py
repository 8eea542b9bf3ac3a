"""``console``: the ops console's overview, server time, at production size.

A throwaway PostgreSQL cache is filled directly (``--schedules`` schedules holding
``--slots`` slots, a finished full load, a day of samples), then ``GET /console`` is
timed in process (the app's own handling, no network) for ``--requests`` requests
after a warm-up. Target: the median at or under 100 ms at 1M slots and 2,000
schedules, because the overview reads schedules, runs, feeds and the recorded samples,
never the slots. ``python -m benchmarks console --slots 1000000 --schedules 2000``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from app.api.main import create_app
from app.cache import repository as repo
from app.cache import runs as runs_repo
from app.cache import samples
from app.cache.db import make_engine, transaction
from app.cache.snapshot import SnapshotPlan
from app.core.domain import Actor, Schedule, Slot
from app.settings import Settings

from .databases import throwaway_postgres

KEY = "console-benchmark-admin-key-0123456789"
TARGET_MS = 100.0
BATCH = 50_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slots", type=int, default=1_000_000)
    p.add_argument("--schedules", type=int, default=2000)
    p.add_argument("--requests", type=int, default=50)


def _fill(url: str, slots: int, schedules: int, now: datetime) -> None:
    engine = make_engine(url)
    try:
        with transaction(engine) as session:
            actors = [Actor(ref=f"Practitioner/pr-{n}", display=None) for n in range(schedules)]
            repo.upsert_actors(session, actors, now)
            repo.upsert_schedules(
                session,
                [Schedule(id=f"sch-{n}", actor_refs=(a.ref,)) for n, a in enumerate(actors)],
                now,
            )
        start = now.replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
        for first in range(0, slots, BATCH):
            batch = tuple(
                Slot(
                    id=f"slot-{n}",
                    schedule_id=f"sch-{n % schedules}",
                    start=start + timedelta(minutes=15 * (n // schedules)),
                    end=start + timedelta(minutes=15 * (n // schedules) + 15),
                    status="free",
                )
                for n in range(first, min(first + BATCH, slots))
            )
            with transaction(engine) as session:
                repo.apply_snapshot(session, SnapshotPlan(batch, (), 0), now)
        with transaction(engine) as session:
            run = runs_repo.start_run(
                session, kind="initial-load", scope="*", window=None,
                started_at=now - timedelta(minutes=10),
            )  # fmt: skip
            runs_repo.finish_run(session, run, status="ok", finished_at=now, error=None)
            for minute in range(24 * 60):
                samples.record(
                    session,
                    samples.Sample(
                        now - timedelta(minutes=minute), slots, schedules, 30.0 + minute % 90, 0
                    ),
                )
    finally:
        engine.dispose()


def run(args: argparse.Namespace) -> dict[str, Any]:
    now = datetime.now(UTC)
    with throwaway_postgres(migrated=True) as url:
        fill_started = time.monotonic()
        _fill(url, args.slots, args.schedules, now)
        fill_seconds = time.monotonic() - fill_started
        settings = Settings(database_url=url, api_keys={KEY: ["slotsync/admin"]})
        app = create_app(settings)
        # the overview needs the engine and the authenticator only; no lifespan, so no
        # periodic work (a sampler counting slots) runs beside the measurement
        app.state.engine = make_engine(url)
        try:
            client = TestClient(app)
            form = client.get("/console/login").text
            token = re.search(r'name="csrf" value="([^"]+)"', form)
            assert token, "the login form has no CSRF token"
            client.post("/console/login", data={"credential": KEY, "csrf": token.group(1)})
            timings = []
            for n in range(args.requests + 5):
                started = time.perf_counter()
                answer = client.get("/console", follow_redirects=False)
                elapsed = (time.perf_counter() - started) * 1000
                assert answer.status_code == 200, answer.status_code
                if n >= 5:  # the first requests warm the connection pool and templates
                    timings.append(elapsed)
        finally:
            app.state.engine.dispose()
    timings.sort()
    median = statistics.median(timings)
    return {
        "slots": args.slots,
        "schedules": args.schedules,
        "requests": args.requests,
        "fill_seconds": round(fill_seconds, 1),
        "overview_ms": {
            "median": round(median, 1),
            "p95": round(timings[int(0.95 * (len(timings) - 1))], 1),
            "max": round(timings[-1], 1),
        },
        "target_ms": TARGET_MS,
        "meets_target": median <= TARGET_MS,
    }
