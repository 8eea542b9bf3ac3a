"""The sync pipeline as real processes, for end-to-end tests: the sandbox EHR over HTTP,
a Celery worker and beat, and the API receiving the sandbox's notifications, all on a
PostgreSQL cache and a Redis the caller provides.

:func:`running_pipeline` starts it; :class:`Pipeline` drives it (processes, the EHR's
control API, the cache) and :func:`converged` requires the cache to equal the sandbox's
ground truth of free slots.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.cache import feeds
from app.cache import runs as runs_repo
from app.cache.db import make_engine
from app.cache.migrate import upgrade
from app.cache.models import SlotRow
from app.settings import Settings
from sandbox_ehr.process import start_sandbox
from tests.support import free_port, wait_for_http
from workers.celery_app import make_celery

HORIZON_DAYS = 14
SECRET = "e2e-webhook-secret"
ADMIN = {"X-API-Key": "slotsync-demo-key"}  # development credentials hold every scope
ROOT = Path(__file__).resolve().parents[2]

Slots = dict[str, tuple[str, datetime, datetime]]


@dataclass
class Pipeline:
    engine: Engine
    env: dict[str, str]
    sandbox: Any
    api_url: str
    celery: Any
    redis_url: str
    workdir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        log = self.workdir / f"{name}.log"
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

    def start_worker(self) -> None:
        self.start("worker", "worker", "--concurrency", "2")

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

    def truth(self) -> Slots:
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

    def ehr_requests(self, route: str) -> int:
        """How often the EHR served ``route`` (e.g. ``GET /fhir/Slot/$prefetch``)."""
        return int(self.control("GET", "/stats")["requests"].get(route, 0))

    # -- the cache ---------------------------------------------------------------

    def cache(self) -> Slots:
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
    """``check()``'s first truthy result, polled until ``timeout`` seconds have passed."""
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


@contextmanager
def running_pipeline(
    *,
    db_url: str,
    redis_url: str,
    extra_env: dict[str, str] | None = None,
    profile: str = "sandbox",
) -> Iterator[Pipeline]:
    """Sandbox EHR, API, worker and beat on these databases; everything stopped afterwards.

    Timings are shrunk (5 s heartbeats, 1 s watchdog, 10 s redelivery) so that the
    tests see failures and recoveries within seconds. ``profile`` is the sandbox's
    (``plain-r4``: a generic R4 server; pass its settings in ``extra_env``).
    """
    api_port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="slotsync-e2e-"))
    with start_sandbox(
        profile=profile,
        size=4000,
        page_size=100,
        callback_secret="not-the-webhook-secret",
        extra_args=("--horizon-days", str(HORIZON_DAYS), "--heartbeat-seconds", "5"),
    ) as sandbox:
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
            "SLOTSYNC_DATA_DIR": str(workdir),
            "SLOTSYNC_WORKER_METRICS_PORT": str(free_port()),
            **(extra_env or {}),
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
            workdir=workdir,
        )
        try:
            p.start("api", "serve", "--port", str(api_port))
            p.start_worker()
            # as compose orders them: beat subscribes at start, and the EHR's handshake
            # must find the API listening
            wait_for_http(f"{p.api_url}/healthz")
            p.start("beat", "beat", "--schedule-file", str(workdir / "beat-schedule"))
            yield p
        finally:
            for name in list(p.processes):
                p.stop(name)
            p.engine.dispose()
            p.celery.close()
            shutil.rmtree(workdir, ignore_errors=True)
