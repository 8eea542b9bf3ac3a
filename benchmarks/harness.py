"""Real processes for benchmarks: PostgreSQL and Redis databases of their own, the sandbox
EHR, Celery workers, the API, and a memory sampler for a process tree."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from celery import Celery

from app.cache.migrate import upgrade
from app.settings import Settings
from tests import support
from tests.support import free_port as free_port
from tests.support import throwaway_redis_db as throwaway_redis
from tests.support import wait_for_http
from workers.celery_app import make_celery


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A migrated PostgreSQL database of the benchmark's own, dropped afterwards."""
    with support.throwaway_postgres() as url:
        upgrade(url)
        yield url


@dataclass
class Child:
    """A child process whose output goes to a log file; stop() ends it and its children."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def spawn(name: str, args: Sequence[str], env: dict[str, str]) -> Child:
    log = Path(tempfile.mkstemp(prefix=f"slotsync-{name}-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(args), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Child(name=name, proc=proc, log=log)


def slotsync(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", "--log-level", "WARNING", *args]


@dataclass
class MemorySampler:
    """Peak memory of a process and all its descendants, sampled in a thread."""

    pid: int
    interval: float = 0.2
    peak_rss_total: int = 0  # sum of RSS over the tree (counts shared pages twice)
    peak_rss_process: int = 0  # the largest single process
    peak_pss_total: int = 0  # proportional set size: shared pages split fairly
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        rss = pss = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                info = p.memory_full_info()
                rss += info.rss
                pss += getattr(info, "pss", info.rss)
                self.peak_rss_process = max(self.peak_rss_process, info.rss)
        self.peak_rss_total = max(self.peak_rss_total, rss)
        self.peak_pss_total = max(self.peak_pss_total, pss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> MemorySampler:
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def as_json(self) -> dict[str, float]:
        mb = 1024 * 1024
        return {
            "peak_rss_total_mb": round(self.peak_rss_total / mb, 1),
            "peak_rss_largest_process_mb": round(self.peak_rss_process / mb, 1),
            "peak_pss_total_mb": round(self.peak_pss_total / mb, 1),
        }


@dataclass
class Stack:
    env: dict[str, str]
    settings: Settings
    celery: Celery
    children: list[Child] = field(default_factory=list)

    def start_worker(
        self, concurrency: int = 2, queues: str = "sync,load", pool: str = "prefork"
    ) -> Child:
        args = ["--concurrency", str(concurrency), "--queues", queues, "--pool", pool]
        child = spawn("worker", slotsync("worker", *args), self.env)
        self.children.append(child)
        return child

    def start_api(self, port: int, workers: int = 1) -> Child:
        args = slotsync("serve", "--port", str(port), "--workers", str(workers))
        child = spawn("api", args, self.env)
        self.children.append(child)
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
        return child

    def start_beat(self) -> Child:
        schedule_file = Path(tempfile.mkdtemp(prefix="slotsync-beat-")) / "schedule"
        child = spawn("beat", slotsync("beat", "--schedule-file", str(schedule_file)), self.env)
        self.children.append(child)
        return child

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


@contextmanager
def stack(
    *, ehr_base_url: str, fhir_version: str, extra: dict[str, str] | None = None
) -> Iterator[Stack]:
    """PostgreSQL + Redis of their own and the environment for slotsync processes."""
    with throwaway_postgres() as db_url, throwaway_redis() as redis_url:
        values = {
            "SLOTSYNC_DATABASE_URL": db_url,
            "SLOTSYNC_REDIS_URL": redis_url,
            "SLOTSYNC_EHR_BASE_URL": ehr_base_url,
            "SLOTSYNC_EHR_FHIR_VERSION": fhir_version,
            **(extra or {}),
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTSYNC_")}
        env.update(values)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")]
        )
        settings = Settings(**{k.removeprefix("SLOTSYNC_").lower(): v for k, v in values.items()})
        running = Stack(env=env, settings=settings, celery=make_celery(settings))
        try:
            yield running
        finally:
            running.stop()
