"""Clean clone to the first ``$find`` answer, as a new operator meets it.

Each run clones the committed HEAD into an empty directory, runs ``make demo`` there
with an empty uv cache (every wheel downloaded, as on a fresh machine; ``--warm-cache``
shares one cache across runs instead), and asks ``$find`` for tomorrow's week until
the answer holds offers. The figure is the wall time from the start of the clone to
that answer; the install part ends when the demo's virtualenv is complete. The
README's line is generated from the committed result (``python -m benchmarks
first-find-readme``); a test keeps the two equal.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from .processes import Child, free_port, spawn, wait_until

ROOT = Path(__file__).resolve().parents[1]
KEY = {"X-API-Key": "slotsync-demo-key"}
TIMEOUT_SECONDS = 600


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warm-cache", action="store_true", help="share one uv cache across runs")


def _first_offers(port: int, demo: Child, started: float) -> float:
    day = datetime.now(UTC).date() + timedelta(days=1)
    url = f"http://127.0.0.1:{port}/fhir/Appointment/$find"
    query = {"start": str(day), "end": str(day + timedelta(days=7)), "_count": "5"}

    def offers() -> bool:
        if not demo.alive():
            raise RuntimeError(f"make demo exited with {demo.proc.returncode}")
        answer = httpx.get(url, params=query, headers=KEY, timeout=5)
        return answer.status_code == 200 and answer.json().get("total", 0) > 0

    left = TIMEOUT_SECONDS - (time.monotonic() - started)
    wait_until(offers, left, "a $find answer with offers", interval=0.1, retry_on=httpx.HTTPError)
    return time.monotonic()


def _one_run(work: Path, cache: Path) -> dict[str, float]:
    clone = work / "slotsync"
    port, sandbox_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLOTSYNC_", "VIRTUAL_ENV"))}
    env["UV_CACHE_DIR"] = str(cache)
    started = time.monotonic()
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    demo = spawn(
        "demo",
        ["make", "demo", f"DEMO_ARGS=--port {port} --sandbox-port {sandbox_port}"],
        env=env,
        log=work / "demo.log",
        cwd=clone,
    )
    installed = None
    try:
        stamp = clone / ".venv" / ".installed-demo"
        while installed is None and time.monotonic() - started < TIMEOUT_SECONDS:
            if stamp.exists():
                installed = time.monotonic()
            elif not demo.alive():
                raise RuntimeError(f"make demo exited with {demo.proc.returncode}")
            time.sleep(0.05)
        answered = _first_offers(port, demo, started)
    finally:
        demo.stop(timeout=30, group=True)  # make does not pass a signal on
    assert installed is not None
    return {
        "seconds_to_first_find": round(answered - started, 1),
        "seconds_to_installed": round(installed - started, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="slotsync-first-find-") as tmp:
        shared = Path(tmp) / "uv-cache"
        for n in range(args.runs):
            work = Path(tmp) / f"run-{n}"
            work.mkdir()
            cache = shared if args.warm_cache else work / "uv-cache"
            runs.append(_one_run(work, cache))
            shutil.rmtree(work / "slotsync", ignore_errors=True)
    firsts = [r["seconds_to_first_find"] for r in runs]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "command": "python -m benchmarks first-find" + (" --warm-cache" if args.warm_cache else ""),
        "commit": commit,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "uv_cache": "shared" if args.warm_cache else "empty per run",
        "runs": runs,
        "median_seconds_to_first_find": statistics.median(firsts),
        "min_seconds_to_first_find": min(firsts),
        "max_seconds_to_first_find": max(firsts),
        "median_seconds_to_installed": statistics.median(r["seconds_to_installed"] for r in runs),
    }


def readme_line(result: dict[str, Any]) -> str:
    """The README's sentence, from a committed result."""
    return (
        f"Clean clone to the first `$find` answer: {result['median_seconds_to_first_find']} s"
        f" (median of {len(result['runs'])} runs, {result['min_seconds_to_first_find']}-"
        f"{result['max_seconds_to_first_find']} s; the install part"
        f" {result['median_seconds_to_installed']} s), on {result['cores']} cores with"
        f" an empty uv cache, measured by `{result['command']}` at commit {result['commit']}"
        f" ({result['date']})."
    )
