"""``console``: the ops console's overview, server time, at production size.

A throwaway PostgreSQL cache is filled directly (``--schedules`` schedules holding
``--slots`` slots, a day of samples, and ``--history-days`` of sync runs as the
product leaves them: a daily full load and a reconcile every 15 minutes, a chunk per
4 schedules each, plus one reconcile running now), then ``GET /console`` is timed in
process (the app's own handling, no network) for ``--requests`` requests after a
warm-up. Target: at or under 100 ms at 1M slots and 2,000 schedules, because the
overview reads schedules, runs, feeds and the recorded samples, never the slots.
The minute sampler (``slotsync.sample``) is timed too, as it runs beside the API in
embedded mode: its first run after the load (every schedule counted) and a steady one.
``python -m benchmarks console --slots 1000000 --schedules 2000``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from app.api.main import create_app
from app.cache import repository as repo
from app.cache import runs as runs_repo
from app.cache import samples
from app.cache.db import make_engine, transaction
from app.cache.snapshot import SnapshotPlan
from app.core.domain import Actor, Schedule, Slot
from app.settings import Settings
from app.sync.context import SyncContext
from app.sync.coordination import LocalCoordinator
from app.sync.samples import record_sample

from .databases import throwaway_postgres

KEY = "console-benchmark-admin-key-0123456789"
TARGET_MS = 100.0
BATCH = 50_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slots", type=int, default=1_000_000)
    p.add_argument("--schedules", type=int, default=2000)
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--history-days", type=int, default=7, help="days of sync runs (retention)")


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


# Sync runs as the product leaves them in ``sync_runs``/``sync_chunks`` (kept 7 days):
# per day one full load and 96 reconciles (every 15 min), each a chunk per 4 schedules.
_RUNS = text(
    "INSERT INTO sync_runs (kind, scope, started_at, finished_at, progress_at, status,"
    " slots_seen, slots_upserted, slots_deleted, generation, chunks_total, chunks_done,"
    " chunks_failed)"
    " SELECT CASE WHEN g % 97 = 0 THEN 'initial-load' ELSE 'reconcile' END, 'schedule',"
    " :now - g * interval '15 minutes', :now - g * interval '15 minutes' + interval '2 minutes',"
    " :now - g * interval '15 minutes' + interval '2 minutes', 'ok', 0, 0, 0, 0, :chunks,"
    " :chunks, 0 FROM generate_series(1, :runs) AS g"
)
_CHUNKS = text(
    "INSERT INTO sync_chunks (run_id, seq, schedule_ids, window_start, window_end, status,"
    " attempts, slots_seen, slots_upserted, slots_deleted, finished_at, claim_token,"
    " claimed_at, heartbeat_at)"
    ' SELECT r.id, s, \'["sch-0", "sch-1", "sch-2", "sch-3"]\'::jsonb,'
    " r.started_at, r.started_at + interval '7 days',"
    " CASE WHEN r.status = 'running' AND s >= :chunks / 2 THEN 'pending' ELSE 'ok' END,"
    " 1, 0, 0, 0, r.finished_at,"
    " CASE WHEN r.status = 'running' AND s = :chunks / 2 THEN 'lease' END,"
    " r.started_at, CASE WHEN r.status = 'running' THEN :now ELSE r.started_at END"
    " FROM sync_runs AS r CROSS JOIN generate_series(0, :chunks - 1) AS s"
)


def _fill_history(url: str, schedules: int, days: int, now: datetime) -> int:
    """``days`` of finished runs with their chunks, and one reconcile half done now."""
    engine = make_engine(url)
    chunks = max(1, schedules // 4)
    try:
        with transaction(engine) as session:
            session.execute(_RUNS, {"now": now, "runs": days * 96, "chunks": chunks})
            # quiet for longer than the stall time but leased: not stuck, and the stuck-run
            # check has to look at its chunks' leases
            runs_repo.start_run(
                session, kind="reconcile", scope="schedule", window=None,
                started_at=now - timedelta(minutes=10),
            )  # fmt: skip
            session.execute(_CHUNKS, {"chunks": chunks, "now": now})
            total = session.scalar(text("SELECT count(*) FROM sync_chunks"))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))  # as autovacuum would have by now
    finally:
        engine.dispose()
    return int(total or 0)


def _time_sampler(url: str, settings: Settings) -> dict[str, float]:
    """The minute sampler's first run (every schedule counted), a steady one (the median
    of the five after it), and the grouped count of every slot it ran each minute
    before (for comparison)."""
    engine = make_engine(url)
    ctx = SyncContext(
        engine=engine, client=None, coord=LocalCoordinator(), settings=settings,  # type: ignore[arg-type]
    )  # fmt: skip
    timings = {}
    try:
        runs = []
        for _ in range(6):
            started = time.perf_counter()
            record_sample(ctx)
            runs.append((time.perf_counter() - started) * 1000)
        timings["first"] = round(runs[0], 1)
        timings["steady"] = round(statistics.median(runs[1:]), 1)  # median of five
        # what the sampler did every minute before the count was maintained
        with transaction(engine) as session:
            started = time.perf_counter()
            session.execute(text("SELECT status, count(*) FROM slots GROUP BY status")).all()
            timings["full_count_before"] = round((time.perf_counter() - started) * 1000, 1)
    finally:
        engine.dispose()
    return timings


def run(args: argparse.Namespace) -> dict[str, Any]:
    now = datetime.now(UTC)
    with throwaway_postgres(migrated=True) as url:
        fill_started = time.monotonic()
        _fill(url, args.slots, args.schedules, now)
        chunks = _fill_history(url, args.schedules, args.history_days, now)
        fill_seconds = time.monotonic() - fill_started
        settings = Settings(database_url=url, api_keys={KEY: ["slotsync/admin"]})
        sampler_ms = _time_sampler(url, settings)
        app = create_app(settings)
        # the overview needs the engine and the authenticator only; no lifespan, so no
        # periodic work (a sampler counting slots) runs beside the measurement
        app.state.engine = make_engine(url)
        # imported here: every `python -m benchmarks` imports this module, and Starlette
        # warns on importing its test client
        from fastapi.testclient import TestClient

        try:
            client = TestClient(app)
            form = client.get("/console/login").text
            token = re.search(r'name="csrf" value="([^"]+)"', form)
            assert token, "the login form has no CSRF token"
            client.post("/console/login", data={"credential": KEY, "csrf": token.group(1)})
            timings, cpu = [], []
            for n in range(args.requests + 5):
                started, cpu_started = time.perf_counter(), time.process_time()
                answer = client.get("/console", follow_redirects=False)
                elapsed = (time.perf_counter() - started) * 1000
                used = (time.process_time() - cpu_started) * 1000
                assert answer.status_code == 200, answer.status_code
                if n >= 5:  # the first requests warm the connection pool and templates
                    timings.append(elapsed)
                    cpu.append(used)
        finally:
            app.state.engine.dispose()
    timings.sort()
    median = statistics.median(timings)
    p95 = round(timings[int(0.95 * (len(timings) - 1))], 1)
    return {
        "slots": args.slots,
        "schedules": args.schedules,
        "requests": args.requests,
        "history_days": args.history_days,
        "sync_chunks": chunks,
        "fill_seconds": round(fill_seconds, 1),
        "overview_ms": {
            "median": round(median, 1),
            "p95": p95,
            "max": round(timings[-1], 1),
        },
        # CPU of this process (the API's side, the test client included) per request:
        # what the overview costs whatever else the shared machine runs meanwhile
        "overview_cpu_ms": {
            "median": round(statistics.median(cpu), 1),
            "p95": round(sorted(cpu)[int(0.95 * (len(cpu) - 1))], 1),
        },
        "sampler_ms": sampler_ms,
        "target_ms": TARGET_MS,
        "meets_target": p95 <= TARGET_MS,
    }
