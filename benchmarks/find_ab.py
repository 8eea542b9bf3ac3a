"""$find A/B: this tree against an earlier commit, requests interleaved, same cache.

Why interleaved: "explain off costs nothing" (issue #21) is a claim about a difference
of a fraction of a millisecond, and two runs of ``python -m benchmarks find`` minutes
apart differ by more than that on a shared two-core machine. Here one sandbox, one
loaded cache and two API processes run side by side: ``baseline`` is ``--baseline``
(a commit, checked out into a temporary git worktree) and ``head`` is this tree. Each
round sends the same typical request to every arm in a shuffled order, so a busy
moment falls on all arms alike. A third arm, ``head_explain``, is this tree with
``_explain=true`` in an API process of its own, reported beside the others.

The result has each arm's percentiles, and the median and 95 % bootstrap interval of
the per-round difference ``head - baseline``: an interval that holds 0 means "no
difference within noise". ``--kind broad`` compares broad requests instead (every visit
type, 30 days, ``_count`` 100), and ``--no-explain`` leaves the explain arm out (explain
on a broad request takes a second).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from sandbox_ehr.process import start_sandbox

from .find import HEADERS, KINDS, _days, _full_days, _wait_warm, percentiles
from .processes import ROOT, free_port, run_slotsync, slotsync, spawn
from .stacks import serve, stack, start_api

ARMS = ("baseline", "head", "head_explain")
REQUESTS = {
    "typical": "typical (one visit type, one specialty, 7 days, _count 20)",
    "broad": "broad (every visit type and provider, 30 days, _count 100)",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baseline", required=True, help="the commit to compare against")
    p.add_argument("--size", type=int, default=100_000, help="sandbox slots (approximate)")
    p.add_argument("--horizon-days", type=int, default=90)
    p.add_argument("--rounds", type=int, default=600, help="requests per arm")
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--kind", choices=tuple(REQUESTS), default="typical", help="the request")
    p.add_argument("--no-explain", action="store_true", help="leave out the head_explain arm")


@contextmanager
def checkout(commit: str) -> Iterator[Path]:
    """``commit`` in a temporary git worktree of this repository, removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="slotsync-ab-"))
    tree = parent / "baseline"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), commit],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    try:
        yield tree
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True
        )
        shutil.rmtree(parent, ignore_errors=True)


def paired_difference(
    a_ms: list[float], b_ms: list[float], *, seed: int = 0, resamples: int = 2000
) -> dict[str, float]:
    """Median of ``b - a`` per round, with a 95 % percentile-bootstrap interval."""
    diffs = [b - a for a, b in zip(a_ms, b_ms, strict=True)]
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(diffs, k=len(diffs))) for _ in range(resamples))
    return {
        "median_ms": round(statistics.median(diffs), 3),
        "ci95_low_ms": round(medians[int(0.025 * resamples)], 3),
        "ci95_high_ms": round(medians[int(0.975 * resamples) - 1], 3),
    }


def _interleave(
    urls: dict[str, str], days: list[Any], rounds: int, seed: int, kind: str = "typical"
) -> dict[str, list[float]]:
    rng = random.Random(seed)
    build = KINDS[kind][0]
    timings: dict[str, list[float]] = {arm: [] for arm in urls}
    clients = {
        arm: httpx.Client(base_url=url, headers=HEADERS, timeout=60) for arm, url in urls.items()
    }
    try:
        for i in range(rounds):
            params = build(days[i % len(days)])
            order = list(urls)
            rng.shuffle(order)
            for arm in order:
                extra = [("_explain", "true")] if arm == "head_explain" else []
                t0 = time.perf_counter()
                response = clients[arm].get("/fhir/Appointment/$find", params=tuple(params + extra))
                timings[arm].append((time.perf_counter() - t0) * 1000)
                response.raise_for_status()
    finally:
        for client in clients.values():
            client.close()
    return timings


def run(args: argparse.Namespace) -> dict[str, Any]:
    first_day = datetime.now(UTC).date() + timedelta(days=1)
    baseline_commit = subprocess.run(
        ["git", "rev-parse", "--short", args.baseline],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with (
        start_sandbox(
            size=args.size,
            fhir_version="stu3",
            page_size=1000,
            extra_args=("--horizon-days", str(args.horizon_days)),
            ready_timeout=600.0,
        ) as sandbox,
        checkout(args.baseline) as tree,
    ):
        extra = {"SLOTSYNC_HORIZON_DAYS": str(args.horizon_days), "SLOTSYNC_LOG_LEVEL": "WARNING"}
        with stack(ehr_base_url=sandbox.base_url, fhir_version="stu3", extra=extra) as running:
            run_slotsync("resync", env=running.env, timeout=1800, check=True, log_level="WARNING")
            head = running.start_api(workers=1)
            # explain gets a process of its own: its requests would otherwise share the
            # head arm's offer memo, heap and garbage collector, and weigh on its figures
            explaining = None if args.no_explain else start_api(running.env, workers=1)
            port = free_port()
            env = {**running.env, "PYTHONPATH": str(tree)}
            # python -m puts the working directory first on sys.path: the old tree's code
            old = spawn("api-baseline", slotsync(*serve(port, 1)), env=env, cwd=tree)
            old.url = f"http://127.0.0.1:{port}"
            try:
                old.wait_for_http(f"{old.url}/healthz", timeout=120)
                urls = {"baseline": old.url, "head": head.url}
                if explaining is not None:
                    urls["head_explain"] = explaining.url
                for url in urls.values():
                    _wait_warm(url, 1)
                span = KINDS[args.kind][1]
                days = _full_days(head.url, args.kind, _days(first_day, span, args.horizon_days))
                # warm every arm alike first
                _interleave(urls, days, min(50, args.rounds), args.seed, args.kind)
                timings = _interleave(urls, days, args.rounds, args.seed + 1, args.kind)
            finally:
                old.stop()
                if explaining is not None:
                    explaining.stop()
    return {
        "sandbox_size": args.size,
        "request": REQUESTS[args.kind],
        "baseline_commit": baseline_commit,
        "rounds": args.rounds,
        "arms": {arm: percentiles(values) for arm, values in timings.items()},
        "head_minus_baseline": paired_difference(
            timings["baseline"], timings["head"], seed=args.seed
        ),
        **(
            {}
            if "head_explain" not in timings
            else {
                "explain_on_minus_off": paired_difference(
                    timings["head"], timings["head_explain"], seed=args.seed
                )
            }
        ),
    }
