"""The sync pipeline with real processes: sandbox EHR over HTTP, Redis, PostgreSQL, a Celery
worker and beat, and the API receiving the sandbox's notifications.

Each test drives the EHR (mutations, faults, lost heartbeats, a killed worker) and
then requires the cache to equal the sandbox's ground truth of free slots.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.cache import feeds
from app.cache import runs as runs_repo
from app.cache.db import make_engine
from app.cache.migrate import upgrade
from app.cache.models import SlotRow
from app.settings import Settings
from sandbox_ehr.process import start_sandbox
from tests.support import free_port, throwaway_postgres, throwaway_redis_db, wait_for_http
from workers.celery_app import make_celery

pytestmark = pytest.mark.integration

HORIZON_DAYS = 14
SECRET = "e2e-webhook-secret"
ADMIN = {"X-API-Key": "slotsync-demo-key"}  # development credentials hold the admin scope
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Pipeline:
    engine: Engine
    env: dict[str, str]
    sandbox: Any
    api_url: str
    celery: Any
    redis_url: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        log = Path(f"/tmp/slotsync-e2e-{os.getpid()}-{name}.log")
        self.logs[name] = log
        with log.open("ab") as out:  # a restarted process keeps its predecessor's log
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "--log-level", "INFO", *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=ROOT,
            )

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)

    def log(self, name: str) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace")[-4000:] if path and path.exists() else ""

    # -- the EHR ---------------------------------------------------------------

    def control(self, method: str, path: str, **kw: Any) -> Any:
        response = httpx.request(method, f"{self.sandbox.control_url}{path}", timeout=30, **kw)
        response.raise_for_status()
        return response.json() if response.content else None

    def truth(self) -> dict[str, tuple[str, datetime, datetime]]:
        start = datetime.now(UTC).date()
        end = start + timedelta(days=HORIZON_DAYS)
        slots = self.control("GET", "/truth", params={"start": str(start), "end": str(end)})
        return {
            s["id"]: (s["schedule"], _instant(s["start"]), _instant(s["end"]))
            for s in slots["slots"]
        }

    def free_slot_ids(self, schedule: str, n: int) -> list[str]:
        ids = [sid for sid, (sch, _, _) in sorted(self.truth().items()) if sch == schedule]
        return ids[-n:]  # far from "now": certainly inside every window

    # -- the cache ---------------------------------------------------------------

    def cache(self) -> dict[str, tuple[str, datetime, datetime]]:
        with Session(self.engine) as s:
            rows = s.execute(select(SlotRow.id, SlotRow.schedule_id, SlotRow.start, SlotRow.end))
            return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def load(self, timeout: float = 90) -> Any:
        token = self.celery.send_task("slotsync.initial_load").id
        return self.wait_run(token, timeout)

    def wait_run(self, token: str, timeout: float) -> Any:
        def finished() -> Any:
            with Session(self.engine) as s:
                run = runs_repo.run_by_token(s, token)
                return run if run is not None and run.status != "running" else None

        return eventually(finished, timeout, lambda: self.log("worker"))

    def feed(self) -> Any:
        with Session(self.engine) as s:
            rows = [r for r in feeds.all_feeds(s) if r.endpoint]
            return rows[0] if rows else None


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def eventually(
    check: Callable[[], Any], timeout: float, context: Callable[[], str] = lambda: ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s\n{context()}")
        time.sleep(0.2)


def converged(p: Pipeline, timeout: float = 30) -> None:
    """The cache equals the EHR's free slots of the horizon (ids, schedules and times)."""

    def same() -> bool:
        truth = p.truth()
        return p.cache() == truth

    def diff() -> str:
        truth, cache = p.truth(), p.cache()
        missing = sorted(set(truth) - set(cache))[:5]
        extra = sorted(set(cache) - set(truth))[:5]
        changed = [k for k in set(truth) & set(cache) if truth[k] != cache[k]][:5]
        return f"missing {missing} extra {extra} changed {changed}\n{p.log('worker')}"

    eventually(same, timeout, diff)


@pytest.fixture(scope="module")
def pipeline() -> Iterator[Pipeline]:
    api_port = free_port()
    with (
        throwaway_postgres() as db_url,
        throwaway_redis_db() as redis_url,
        start_sandbox(
            size=4000,
            page_size=100,
            callback_secret="not-the-webhook-secret",
            extra_args=("--horizon-days", str(HORIZON_DAYS), "--heartbeat-seconds", "5"),
        ) as sandbox,
    ):
        upgrade(db_url)
        values = {
            "SLOTSYNC_DATABASE_URL": db_url,
            "SLOTSYNC_REDIS_URL": redis_url,
            "SLOTSYNC_EHR_BASE_URL": sandbox.base_url,
            "SLOTSYNC_EHR_FHIR_VERSION": "stu3",
            "SLOTSYNC_EHR_TIMEOUT_SECONDS": "2",
            "SLOTSYNC_EHR_PAGE_SIZE": "100",
            "SLOTSYNC_HORIZON_DAYS": str(HORIZON_DAYS),
            "SLOTSYNC_LOAD_WINDOW_DAYS": "7",
            "SLOTSYNC_EHR_RETRY_ATTEMPTS": "3",
            "SLOTSYNC_TASK_MAX_RETRIES": "2",
            "SLOTSYNC_WEBHOOK_SECRET": SECRET,
            "SLOTSYNC_PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
            "SLOTSYNC_HEARTBEAT_SECONDS": "5",
            "SLOTSYNC_HEARTBEAT_GRACE": "1.5",
            "SLOTSYNC_WATCHDOG_SECONDS": "1",
            "SLOTSYNC_POLL_INTERVAL_SECONDS": "5",
            "SLOTSYNC_POLL_NEAR_DAYS": str(HORIZON_DAYS),
            "SLOTSYNC_BROKER_VISIBILITY_TIMEOUT_SECONDS": "10",
            "SLOTSYNC_TASK_TIME_LIMIT_SECONDS": "9",
            "SLOTSYNC_SCHEDULE_LOCK_SECONDS": "8",
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTSYNC_")}
        env.update(values)
        env["PYTHONPATH"] = str(ROOT)
        settings = Settings(**{k.removeprefix("SLOTSYNC_").lower(): v for k, v in values.items()})
        p = Pipeline(
            engine=make_engine(db_url),
            env=env,
            sandbox=sandbox,
            api_url=f"http://127.0.0.1:{api_port}",
            celery=make_celery(settings),
            redis_url=redis_url,
        )
        try:
            p.start("api", "serve", "--port", str(api_port))
            p.start("worker", "worker", "--concurrency", "2")
            p.start("beat", "beat", "--schedule-file", f"/tmp/slotsync-e2e-beat-{os.getpid()}")
            wait_for_http(f"{p.api_url}/healthz")
            yield p
        finally:
            for name in list(p.processes):
                p.stop(name)
            p.engine.dispose()


def test_initial_load_equals_ground_truth(pipeline):
    run = pipeline.load()
    assert run.status == "ok", pipeline.log("worker")
    assert run.chunks_total > 1 and run.chunks_failed == 0
    converged(pipeline, timeout=5)


def test_notifications_bring_every_change(pipeline):
    # beat subscribed on start; the sandbox's handshake makes the feed live
    eventually(
        lambda: (f := pipeline.feed()) and f.feed_state == "live" and f.ehr_id,
        30,
        lambda: pipeline.log("beat") + pipeline.log("api"),
    )
    booked = pipeline.free_slot_ids("sch-pr-1", 3)
    moved = pipeline.free_slot_ids("sch-room-1", 1)
    pipeline.control("POST", "/mutate", json={"op": "book", "slots": booked})
    pipeline.control("POST", "/mutate", json={"op": "move", "slot": moved[0], "minutes": 5})
    pipeline.control("POST", "/mutate", json={"op": "random", "count": 25, "seed": 3})
    converged(pipeline, timeout=20)
    pipeline.control("POST", "/mutate", json={"op": "free", "slots": booked[:1]})
    converged(pipeline, timeout=20)


def test_duplicate_and_out_of_order_notifications_are_harmless(pipeline):
    pipeline.control("POST", "/faults", json={"kind": "notify-duplicate"})
    pipeline.control("POST", "/faults", json={"kind": "notify-out-of-order", "times": 2})
    try:
        pipeline.control("POST", "/mutate", json={"op": "random", "count": 10, "seed": 5})
        converged(pipeline, timeout=20)
    finally:
        pipeline.control("DELETE", "/faults")


def test_forged_and_malformed_webhook_calls_change_nothing(pipeline):
    queues = redis.Redis.from_url(pipeline.redis_url)
    heard = pipeline.feed().last_heard_at
    hook = f"{pipeline.api_url}/webhook/subscription"
    body = {
        "resourceType": "Schedule",
        "id": "sch-pr-2",
        "actor": [{"reference": "Practitioner/pr-2"}],
        "planningHorizon": {"start": str(datetime.now(UTC).date())},
    }
    forged = httpx.post(hook, json=body, headers={"Authorization": "Bearer guess"})
    assert forged.status_code == 401
    malformed = httpx.post(
        hook,
        content=b'{"resourceType": "Schedule", "actor": 5',
        headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/fhir+json"},
    )
    assert malformed.status_code == 400
    assert queues.llen("sync") == 0
    after = pipeline.feed().last_heard_at
    assert after is None or heard is None or after >= heard  # only real heartbeats move it


def test_lost_heartbeats_fall_back_to_polling(pipeline):
    feed = pipeline.feed()
    httpx.delete(f"{pipeline.sandbox.base_url}/Subscription/{feed.ehr_id}", timeout=10)
    eventually(lambda: pipeline.feed().feed_state == "stale", 30, lambda: pipeline.log("beat"))
    # changes the EHR no longer notifies arrive by polling
    pipeline.control("POST", "/mutate", json={"op": "random", "count": 10, "seed": 9})
    converged(pipeline, timeout=30)
    assert pipeline.feed().last_polled_at is not None
    # a renewed subscription makes the feed live again
    pipeline.celery.send_task("slotsync.subscribe")
    eventually(lambda: pipeline.feed().feed_state == "live", 30, lambda: pipeline.log("worker"))


def test_faults_during_a_load_leave_the_cache_correct(pipeline):
    faults = [
        {"kind": "500", "path": "/fhir/Slot/$prefetch", "times": 3},
        {"kind": "429", "path": "/fhir/Slot/$prefetch", "retry_after": 1, "times": 2},
        {"kind": "timeout", "path": "/fhir/Slot/$prefetch", "hang_seconds": 3, "times": 1},
        {"kind": "short-page", "path": "/fhir/Slot/$prefetch", "times": 2},
        {"kind": "truncate", "path": "/fhir/Slot/$prefetch", "times": 2},
        {"kind": "reset", "path": "/fhir/Slot/$prefetch", "times": 1},
    ]
    pipeline.control("POST", "/mutate", json={"op": "random", "count": 20, "seed": 11})
    for fault in faults:
        pipeline.control("POST", "/faults", json=fault)
    try:
        run = pipeline.load(timeout=120)
    finally:
        pipeline.control("DELETE", "/faults")
    assert run.status == "ok", pipeline.log("worker")
    converged(pipeline, timeout=5)


def test_a_resync_against_a_failing_ehr_changes_nothing(pipeline):
    converged(pipeline)
    before = pipeline.cache()
    pipeline.control("POST", "/faults", json={"kind": "503", "path": "/fhir/Slot/$prefetch"})
    pipeline.control("POST", "/faults", json={"kind": "notify-drop"})
    pipeline.control("POST", "/mutate", json={"op": "random", "count": 20, "seed": 13})
    try:
        response = httpx.post(
            f"{pipeline.api_url}/admin/resync",
            json={"schedule": ["sch-pr-1", "sch-pr-2", "sch-room-1"]},
            headers=ADMIN,
            timeout=10,
        )
        assert response.status_code == 202
        run = pipeline.wait_run(response.json()["token"], timeout=90)
        assert run.status == "failed" and run.chunks_failed == run.chunks_total > 1
        assert pipeline.cache() == before
        status = httpx.get(
            f"{pipeline.api_url}/admin/sync-status", headers=ADMIN, timeout=10
        ).json()
        errors = {s["id"]: s["last_error"] for s in status["schedules"]}
        assert "503" in errors["sch-pr-1"]
    finally:
        pipeline.control("DELETE", "/faults")
    # the lost notifications showed as a gap in the numbering: polling catches up
    assert pipeline.feed().feed_state == "catching-up"
    converged(pipeline, timeout=40)
    eventually(lambda: pipeline.feed().feed_state == "live", 20)


def test_a_worker_killed_mid_load_is_redelivered_and_ends_consistent(pipeline):
    pipeline.control("POST", "/faults", json={"kind": "latency", "latency_ms": 150})
    pipeline.control("POST", "/mutate", json={"op": "random", "count": 20, "seed": 17})
    token = pipeline.celery.send_task("slotsync.initial_load").id

    def some_chunks_done() -> bool:
        with Session(pipeline.engine) as s:
            run = runs_repo.run_by_token(s, token)
            return run is not None and 0 < run.chunks_done < run.chunks_total

    eventually(some_chunks_done, 60, lambda: pipeline.log("worker"))
    pipeline.stop("worker", signal.SIGKILL)  # the whole worker, mid-task, no goodbye
    pipeline.control("DELETE", "/faults")
    pipeline.start("worker", "worker", "--concurrency", "2")
    run = pipeline.wait_run(token, timeout=90)
    assert run.status == "ok" and run.chunks_done == run.chunks_total
    converged(pipeline, timeout=20)
