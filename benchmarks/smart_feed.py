"""SMART Scheduling Links feed: full download rate, API memory while it streams, manifest p99.

Real processes as :mod:`benchmarks.find` starts them: the sandbox EHR (``--size``
slots), PostgreSQL and Redis of their own, ``slotsync resync`` loading the horizon,
and the API (``slotsync serve``, one worker: the memory figure is that process's).
Then:

- first refresh: the first manifest request starts working out every offer and
  writing the published rows (503 and Retry-After until done; timed); later
  refreshes run in the background, off the requests;
- full download, twice (the first right after the refresh): the manifest, then every
  file it lists, one after the other, as an aggregator reads them, counting Slot
  lines; the rate is Slot lines per second of the whole download, and the API's RSS
  is sampled throughout (growth = peak during the download less the RSS just before
  it); the targets are judged on the worse of the two;
- manifest: ``--requests`` sequential requests, p50/p95/p99.

Targets (issue #22): RSS growth <= 50 MB and >= 100k slots/s for the full download
at 1M cached slots; manifest p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import httpx
import psutil
import psycopg

from sandbox_ehr.process import start_sandbox

from .find import _wait_warm, percentiles
from .processes import free_port, run_slotsync
from .stacks import stack

TARGET_RSS_GROWTH_MB = 50.0
TARGET_SLOTS_PER_SECOND = 100_000.0
TARGET_MANIFEST_P99_MS = 50.0
MANIFEST = "/smart/$bulk-publish"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=1_000_000, help="sandbox slots (approximate)")
    p.add_argument("--horizon-days", type=int, default=90)
    p.add_argument("--requests", type=int, default=500, help="sequential manifest requests")


class _RssPeak:
    """Peak RSS of one process tree, sampled every 50 ms in a thread."""

    def __init__(self, pid: int):
        self._root = psutil.Process(pid)
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def now(self) -> int:
        procs = [self._root, *self._root.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs)

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> _RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def _download(client: httpx.Client) -> dict[str, Any]:
    """Manifest and every file, streamed; lines per type and bytes."""
    manifest = client.get(MANIFEST)
    manifest.raise_for_status()
    lines: dict[str, int] = {}
    size = 0
    files = manifest.json()["output"]
    for item in files:
        with client.stream("GET", item["url"]) as answer:
            answer.raise_for_status()
            for chunk in answer.iter_bytes():
                size += len(chunk)
                lines[item["type"]] = lines.get(item["type"], 0) + chunk.count(b"\n")
    return {"files": len(files), "lines": lines, "megabytes": round(size / 1e6, 1)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with start_sandbox(
        size=args.size,
        fhir_version="stu3",
        page_size=1000,
        extra_args=("--horizon-days", str(args.horizon_days)),
        ready_timeout=600.0,
    ) as sandbox:
        extra = {
            "SLOTSYNC_HORIZON_DAYS": str(args.horizon_days),
            "SLOTSYNC_LOG_LEVEL": "WARNING",
            "SLOTSYNC_PUBLIC_BASE_URL": base,
            "SLOTSYNC_SMART_BOOKING_LINK": "https://app.example.org/book?appointment={proposal_id}",
            "SLOTSYNC_SMART_BOOKING_PHONE": "555-000-0100",
            # the run must not refresh again in the middle of the download
            "SLOTSYNC_SMART_MAX_AGE_SECONDS": "86400",
        }
        with stack(
            ehr_base_url=sandbox.base_url, fhir_version="stu3", extra=extra, api_port=port
        ) as running:
            db_url = running.settings.effective_database_url
            t0 = time.perf_counter()
            run_slotsync("resync", env=running.env, timeout=3600, check=True, log_level="WARNING")
            load_seconds = time.perf_counter() - t0
            with psycopg.connect(db_url.replace("+psycopg", "")) as conn:
                row = conn.execute("SELECT count(*) FROM slots").fetchone()
                cached = row[0] if row else 0
            api = running.start_api(workers=1)
            _wait_warm(base, 1)
            with httpx.Client(base_url=base, timeout=3600) as client:
                t0 = time.perf_counter()
                while client.get(MANIFEST).status_code == 503:  # the first refresh works
                    time.sleep(1)
                client.get(MANIFEST).raise_for_status()
                refresh_seconds = time.perf_counter() - t0
                downloads = []
                for _ in ("first", "repeat"):  # the first right after the refresh
                    memory = _RssPeak(api.pid)
                    before = memory.now()
                    with memory:
                        t0 = time.perf_counter()
                        download = _download(client)
                        seconds = time.perf_counter() - t0
                    slots = download["lines"].get("Slot", 0)
                    downloads.append(
                        {
                            **download,
                            "seconds": round(seconds, 2),
                            "slots_per_second": round(slots / seconds) if seconds else 0,
                            "api_rss_before_mb": round(before / 1024 / 1024, 1),
                            "api_rss_peak_mb": round(memory.peak / 1024 / 1024, 1),
                            "api_rss_growth_mb": round((memory.peak - before) / 1024 / 1024, 1),
                        }
                    )
                timings = []
                for _ in range(args.requests):
                    t0 = time.perf_counter()
                    client.get(MANIFEST).raise_for_status()
                    timings.append((time.perf_counter() - t0) * 1000)
    # targets are judged on the worse of the two downloads
    growth_mb = max(d["api_rss_growth_mb"] for d in downloads)
    rate = min(d["slots_per_second"] for d in downloads)
    manifest = percentiles(timings)
    return {
        "sandbox_size": args.size,
        "slots_cached": cached,
        "load_seconds": round(load_seconds, 1),
        "first_refresh_seconds": round(refresh_seconds, 1),
        "download": {"first": downloads[0], "repeat": downloads[1]},
        "manifest": manifest,
        "targets": {
            "rss_growth_mb": TARGET_RSS_GROWTH_MB,
            "slots_per_second": TARGET_SLOTS_PER_SECOND,
            "manifest_p99_ms": TARGET_MANIFEST_P99_MS,
        },
        "meets_targets": {
            "rss_growth": growth_mb <= TARGET_RSS_GROWTH_MB,
            "slots_per_second": rate >= TARGET_SLOTS_PER_SECOND,
            "manifest_p99": manifest["p99_ms"] <= TARGET_MANIFEST_P99_MS,
        },
    }
