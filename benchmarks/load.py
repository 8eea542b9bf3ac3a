"""Initial load: N slots from the sandbox EHR into PostgreSQL by a real Celery worker.

Measures wall time from enqueuing ``slotsync.initial_load`` to the run's
completion (schedule discovery included), slots/second, the peak memory of the
worker's process tree and the CPU seconds each side spent (worker, sandbox EHR,
PostgreSQL); then checks the cache holds exactly the EHR's free slot count.
Targets (issue 24): >= 50,000 slots/s, worker RSS <= 200 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy.orm import Session

from app.cache import repository as repo
from app.sync.windows import horizon, utcnow
from sandbox_ehr.process import start_sandbox

from .machine import cpu_during, cpu_probe_ms
from .processes import MemorySampler, Sampling
from .stacks import stack

log = logging.getLogger(__name__)

TARGET_SLOTS_PER_SECOND = 50_000
TARGET_WORKER_RSS_MB = 200
# The _count a load asks of the EHR. A 1,000-slot page of a whole-window chunk names ~380
# Schedules and ~415 actors, which it also carries: 40 % of its bytes, rendered, sent and
# read again on every page. At 5,000 slots a page those repeat a fifth as often; the 1M
# load's worker CPU fell from 15.7 to 11 s (`benchmarks load --page-size 1000` / `5000`).
PAGE_SIZE = 5000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=1_000_000, help="sandbox slots (approximate)")
    p.add_argument("--fhir-version", choices=("stu3", "r4"), default="stu3")
    p.add_argument(
        "--profile",
        choices=("sandbox", "plain-r4"),
        default="sandbox",
        help="plain-r4: a generic R4 server (no $prefetch, no notifications, _count capped"
        " at the page size); implies --fhir-version r4",
    )
    p.add_argument("--horizon-days", type=int, default=90)
    p.add_argument("--pool", choices=("prefork", "threads"), default="threads")
    p.add_argument(
        "--concurrency",
        type=int,
        default=3,
        help="worker threads or processes (3, as `slotsync worker`: whole-window chunks write"
        " one at a time, and while one writes two fetch)",
    )
    p.add_argument("--chunking", choices=("auto", "schedule", "window"), default="auto")
    p.add_argument("--window-days", type=int, default=None, help="default: the setting's")
    p.add_argument("--bulk-window-days", type=int, default=None, help="default: the setting's")
    p.add_argument("--schedules-per-chunk", type=int, default=None, help="default: the setting's")
    p.add_argument(
        "--page-size",
        type=int,
        default=PAGE_SIZE,
        help=f"slots per EHR page, SLOTSYNC_EHR_PAGE_SIZE ({PAGE_SIZE}: the sandbox's largest;"
        " every page carries the Schedules and actors of its slots, so bigger pages repeat them"
        " less often)",
    )
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="record the worker and the sandbox with py-spy (if installed) during the load:"
        " DIR/worker.txt and DIR/sandbox.txt (collapsed stacks per thread, idle ones too)",
    )


@dataclass
class CpuMeter(Sampling):
    """CPU seconds spent during the load by each side: the worker's process tree, the
    sandbox EHR's, and the PostgreSQL backends serving the run's own database (found by
    their process title). Where the time goes between processes is the first question
    of any profile; sampled in a thread so that backends that come and go are counted
    up to their last sample."""

    roots: dict[str, int]  # side -> root pid
    database: str
    interval: float = 0.2
    _first: dict[int, tuple[str, float]] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _processes(self) -> list[tuple[str, psutil.Process]]:
        found: list[tuple[str, psutil.Process]] = []
        for side, pid in self.roots.items():
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                found += [(side, p) for p in (root, *root.children(recursive=True))]
        for p in psutil.process_iter(["name", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                if self.database in " ".join(p.info["cmdline"] or ()):
                    found.append(("postgres", p))
        return found

    def _sample(self) -> None:
        for side, p in self._processes():
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                used = times.user + times.system
                self._first.setdefault(p.pid, (side, used))
                self._last[p.pid] = used

    def as_json(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for pid, (side, first) in self._first.items():
            used[side] = used.get(side, 0.0) + self._last[pid] - first
        return {side: round(seconds, 1) for side, seconds in sorted(used.items())}


@contextlib.contextmanager
def py_spy(out: Path | None, pids: dict[str, int]) -> Iterator[None]:
    """``py-spy record`` of each process (and its children) while the block runs."""
    if out is None:
        yield
        return
    binary = shutil.which("py-spy")
    if binary is None:
        raise SystemExit("--py-spy needs py-spy on PATH (pip install py-spy)")
    out.mkdir(parents=True, exist_ok=True)
    recorders = [
        subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--subprocesses", "--format", "raw",
             "--rate", "200", "--nonblocking", "--idle", "--threads",
             "--output", str(out / f"{name}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]  # fmt: skip
    time.sleep(1.0)  # attached before the load starts
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for recorder in recorders:
            recorder.wait(timeout=60)


def _ehr_free_total(base_url: str, fhir_version: str, start: str, end: str) -> int:
    """The EHR's own count of free slots in the window (a zero-size page's total)."""
    params: tuple[tuple[str, str], ...]
    if fhir_version == "stu3":
        url = f"{base_url}/Slot/$prefetch"
        params = (("start", start), ("end", end), ("_count", "0"))
    else:
        url = f"{base_url}/Slot"
        params = (
            ("start", f"ge{start}"),
            ("start", f"lt{end}"),
            ("status", "free"),
            ("_count", "0"),
        )
    return int(httpx.get(url, params=params, timeout=120).json()["total"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    if args.profile == "plain-r4":
        args.fhir_version = "r4"
    with start_sandbox(
        size=args.size,
        fhir_version=args.fhir_version,
        profile=args.profile,
        max_count=args.page_size if args.profile == "plain-r4" else None,
        page_size=args.page_size,
        extra_args=("--horizon-days", str(args.horizon_days)),
        ready_timeout=600.0,
    ) as sandbox:
        sandbox_ready = time.perf_counter() - started
        extra = {
            "SLOTSYNC_HORIZON_DAYS": str(args.horizon_days),
            "SLOTSYNC_LOAD_CHUNKING": args.chunking,
            "SLOTSYNC_EHR_PAGE_SIZE": str(args.page_size),
        }
        for name, value in (
            ("LOAD_WINDOW_DAYS", args.window_days),
            ("LOAD_BULK_WINDOW_DAYS", args.bulk_window_days),
            ("LOAD_SCHEDULES_PER_CHUNK", args.schedules_per_chunk),
        ):
            if value is not None:
                extra[f"SLOTSYNC_{name}"] = str(value)
        with stack(
            ehr_base_url=sandbox.base_url, fhir_version=args.fhir_version, extra=extra
        ) as running:
            worker = running.start_worker(concurrency=args.concurrency, pool=args.pool)
            running.wait_workers(timeout=60)
            database = running.settings.effective_database_url.rsplit("/", 1)[-1]
            probe = cpu_probe_ms()
            with (
                py_spy(args.py_spy, {"worker": worker.pid, "sandbox": sandbox.pid}),
                MemorySampler(worker.pid) as memory,
                CpuMeter({"worker": worker.pid, "sandbox": sandbox.pid}, database) as cpu,
                cpu_during() as machine_cpu,
            ):
                t0 = time.perf_counter()
                run_row = running.load(timeout=args.timeout)
                wall = time.perf_counter() - t0
            probe_after = cpu_probe_ms()
            lo, hi = horizon(utcnow(), args.horizon_days)
            with Session(running.engine) as session:
                cached = repo.count_slots(session)
            expected = _ehr_free_total(
                sandbox.base_url, args.fhir_version, lo.date().isoformat(), hi.date().isoformat()
            )
            running_settings = running.settings.model_dump()
    mem = memory.as_json()
    rate = run_row.slots_seen / wall if wall else 0.0
    return {
        "fhir_version": args.fhir_version,
        "profile": args.profile,
        "sandbox_size": args.size,
        "sandbox_start_seconds": round(sandbox_ready, 1),
        "worker_pool": args.pool,
        "worker_concurrency": args.concurrency,
        "chunking_setting": args.chunking,
        "chunking_used": "window" if (run_row.scope or "").endswith(":window") else "schedule",
        "window_days": running_settings["load_window_days"],
        "bulk_window_days": running_settings["load_bulk_window_days"],
        "schedules_per_chunk": running_settings["load_schedules_per_chunk"],
        "page_size": args.page_size,
        "run_status": run_row.status,
        "chunks": run_row.chunks_total,
        "chunks_failed": run_row.chunks_failed,
        "slots_loaded": run_row.slots_seen,
        "slots_cached": cached,
        "ehr_free_slots": expected,
        "cache_matches_ehr_count": cached == expected,
        "wall_seconds": round(wall, 2),
        "slots_per_second": round(rate),
        **mem,
        "cpu_seconds": cpu.as_json(),
        # the machine's own speed before and after, and its CPU shares during the load
        # (benchmarks.machine): the same load's CPU seconds grow on a slower machine
        "machine": {
            "cpu_probe_ms": probe,
            "cpu_probe_after_ms": probe_after,
            "cpu": machine_cpu or None,
        },
        "targets": {
            "slots_per_second": TARGET_SLOTS_PER_SECOND,
            "worker_rss_mb": TARGET_WORKER_RSS_MB,
        },
        "meets_targets": {
            "slots_per_second": rate >= TARGET_SLOTS_PER_SECOND,
            "worker_rss_total": mem["peak_rss_total_mb"] <= TARGET_WORKER_RSS_MB,
            "worker_pss_total": mem["peak_pss_total_mb"] <= TARGET_WORKER_RSS_MB,
        },
    }
