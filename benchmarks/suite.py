"""``all``: every benchmark, with the load and ``$find`` ones at several cache sizes.

One run gives the whole picture the README's performance table shows: initial
load and ``$find`` at each of ``--sizes`` (how the costs grow with the cache),
freshness with notifications and with the polling fallback. Each part runs its
own real processes, one after the other, so they do not compete for the cores.

Every part runs ``--repeat`` times (default 3), in rounds: each round runs every part
once, so that a quarter hour of other work on the machine lands on one run of each part
rather than on every run of one. The result keeps each run's figures and their median
and spread (:mod:`benchmarks.repeats`); the load average before each round is recorded.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from . import find, freshness, load
from .repeats import aggregate, figure

log = logging.getLogger(__name__)

Step = tuple[str, str, Callable[[], dict[str, Any]]]  # (group, key, run once)
SMALL_PAGE_SIZE = 1000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", default="10000,100000,1000000", help="sandbox sizes, comma list")
    p.add_argument("--repeat", type=int, default=3, help="runs of every part (median, spread)")
    p.add_argument("--freshness-size", type=int, default=100_000)
    p.add_argument("--mutations", type=int, default=200, help="freshness with notifications")
    p.add_argument("--polling-mutations", type=int, default=30, help="freshness by polling")
    p.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")


def _defaults(module: Any, **overrides: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    args = parser.parse_args([])
    for name, value in overrides.items():
        setattr(args, name, value)
    return args


def _once(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one part once; a failure is recorded and the others still run."""
    log.warning("benchmark: %s", name)
    try:
        return fn()
    except Exception as exc:  # reported in the results, not hidden
        log.exception("benchmark %s failed", name)
        return {"error": f"{type(exc).__name__}: {exc}"}


def sizes_of(args: argparse.Namespace) -> list[int]:
    return [int(s) for s in str(args.sizes).split(",") if s.strip()]


def size_steps(
    sizes: list[int],
    *,
    quick: bool,
    ehr_samples: int | None = None,
    load_timeout: float | None = None,
    offer_memo_max_offers: int | None = None,
) -> list[Step]:
    """Load and ``$find`` at each size: the growth curve's parts."""
    steps: list[Step] = []
    for size in sizes:
        load_args = _defaults(load, size=size)
        if load_timeout is not None:
            load_args.timeout = load_timeout
        steps.append(("load", str(size), partial(load.run, load_args)))
        find_args = _defaults(
            find,
            size=size,
            requests=50 if quick else 200,
            clients="1,4" if quick else "1,2,4,8,16",
            seconds=3.0 if quick else 10.0,
            ehr_samples=ehr_samples or (3 if quick else 10),
            offer_memo_max_offers=offer_memo_max_offers,
        )
        steps.append(("find", str(size), partial(find.run, find_args)))
    return steps


def _steps(args: argparse.Namespace) -> list[Step]:
    sizes, quick = sizes_of(args), args.quick
    steps = size_steps(sizes, quick=quick)
    notify = _defaults(
        freshness, size=args.freshness_size, mutations=20 if quick else args.mutations
    )
    steps.append(("freshness", "notifications", partial(freshness.run, notify)))
    poll = _defaults(
        freshness,
        size=args.freshness_size,
        mode="polling",
        mutations=6 if quick else args.polling_mutations,
    )
    steps.append(("freshness", "polling", partial(freshness.run, poll)))
    # The largest load again with the pages of 1,000 slots it used to ask for: how much
    # the page size is worth (an EHR that caps _count lower gives smaller pages).
    small_pages = _defaults(load, size=max(sizes), page_size=SMALL_PAGE_SIZE)
    steps.append(("load_small_pages", str(max(sizes)), partial(load.run, small_pages)))
    # a generic R4 server (load by plain Slot search, freshness by polling only) with
    # _count capped at 1,000, as generic servers cap it
    plain_load = _defaults(load, size=max(sizes), profile="plain-r4", page_size=SMALL_PAGE_SIZE)
    steps.append(("load_plain_r4", "plain-r4", partial(load.run, plain_load)))
    plain_poll = _defaults(
        freshness,
        size=args.freshness_size,
        profile="plain-r4",
        mutations=6 if quick else args.polling_mutations,
    )
    steps.append(("freshness", "polling-plain-r4", partial(freshness.run, plain_poll)))
    return steps


def run_rounds(steps: list[Step], repeat: int, groups: tuple[str, ...]) -> dict[str, Any]:
    """Every step ``repeat`` times, round by round; each part's runs aggregated."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {(g, k): [] for g, k, _ in steps}
    rounds = []
    for n in range(1, max(1, repeat) + 1):
        rounds.append(
            {
                "round": n,
                "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "load_average_before": [round(x, 2) for x in os.getloadavg()],
            }
        )
        t0 = time.monotonic()
        for group, key, fn in steps:
            runs[(group, key)].append(_once(f"{group} {key} (run {n} of {repeat})", fn))
        rounds[-1]["wall_seconds"] = round(time.monotonic() - t0)
    results: dict[str, Any] = {"repeat": max(1, repeat), "rounds": rounds}
    results.update({g: {} for g in groups})
    for (group, key), done in runs.items():
        results.setdefault(group, {})[key] = aggregate(done)
    return results


def run(args: argparse.Namespace) -> dict[str, Any]:
    results = {"sizes": sizes_of(args), "quick": bool(args.quick)}
    groups = ("load", "find", "freshness", "load_small_pages", "load_plain_r4")
    results.update(run_rounds(_steps(args), args.repeat, groups))
    return results


def number(value: float, unit: str = "") -> str:
    """A figure as the README shows it: thousands separated, the unit after."""
    return f"{value:,}{unit}"


def _cell(part: Any, path: tuple[str, ...], unit: str) -> tuple[str, str]:
    fig = figure(part, *path)
    failed = f"{fig.failed} of {fig.runs + fig.failed} runs failed" if fig.failed else ""
    if fig.median is None:
        return "failed / not run", failed
    if not fig.spread:
        return number(fig.median, unit), "; ".join(filter(None, ["one run", failed]))
    assert fig.low is not None and fig.high is not None
    spread = f"{number(fig.low)}-{number(fig.high, unit)}"
    return number(fig.median, unit), "; ".join(filter(None, [spread, failed]))


def table(results: dict[str, Any]) -> str:
    """The results as the Markdown table the README carries: each figure's median over
    the runs and its spread (least to greatest); a part that failed says so."""
    rows = ["| measure | median | min-max |", "|---|---|---|"]

    def add(label: str, part: Any, *path: str, unit: str = "") -> None:
        median, spread = _cell(part, path, unit)
        rows.append(f"| {label} | {median} | {spread} |")

    for size, r in results.get("load", {}).items():
        n = f"initial load, {int(size):,}-slot EHR"
        add(f"{n}: slots/s", r, "slots_per_second")
        add(f"{n}: wall", r, "wall_seconds", unit=" s")
        add(f"{n}: worker peak RSS", r, "peak_rss_total_mb", unit=" MB")
    for size, r in results.get("load_small_pages", {}).items():
        pages = figure(r, "page_size").median
        n = f"initial load, {int(size):,}-slot EHR, {int(pages or 0):,}-slot pages"
        add(f"{n}: slots/s", r, "slots_per_second")
        add(f"{n}: wall", r, "wall_seconds", unit=" s")
        add(f"{n}: worker peak RSS", r, "peak_rss_total_mb", unit=" MB")
    for r in results.get("load_plain_r4", {}).values():
        size = figure(r, "sandbox_size").median
        n = f"initial load from plain R4 (Slot search), {int(size or 0):,}-slot EHR"
        add(f"{n}: slots/s", r, "slots_per_second")
        add(f"{n}: worker peak RSS", r, "peak_rss_total_mb", unit=" MB")
    for size, r in results.get("find", {}).items():
        n = f"{int(size):,}"
        for kind in ("typical", "broad"):
            add(f"$find {kind}, {n}: p50 single client", r, kind, "single_client", "p50_ms",
                unit=" ms")  # fmt: skip
            add(f"$find {kind}, {n}: p99 single client", r, kind, "single_client", "p99_ms",
                unit=" ms")  # fmt: skip
            if figure(r, kind, "composed_single_client", "p99_ms").median is not None:
                add(f"$find {kind}, {n}: p99 composed (first request of each window)", r,
                    kind, "composed_single_client", "p99_ms", unit=" ms")  # fmt: skip
            add(f"$find {kind}, {n}: req/s at p99 <= 100 ms", r, kind, "throughput_at_p99_100ms")
            add(f"$find {kind}, {n}: bare SQL read p50", r, kind, "bare_sql", "p50_ms", unit=" ms")
        if figure(r, "mixed", "broad_share").median is not None:
            add(f"$find mixed (1 broad in 5), {n}: req/s at p99 <= 50 ms", r, "mixed",
                "throughput_at_p99_50ms")  # fmt: skip
        add(f"$find typical, {n}: EHR in real time p50", r, "typical", "ehr_realtime", "p50_ms",
            unit=" ms")  # fmt: skip
        if figure(r, "machine", "cpu_probe_ms").median is not None:
            add(f"$find, {n}: machine probe, a fixed CPU loop before the run", r, "machine",
                "cpu_probe_ms", unit=" ms")  # fmt: skip
            add(f"$find, {n}: CPU stolen by the host during the run", r, "machine", "cpu",
                "steal_share")  # fmt: skip
        workers = figure(r, "api_workers").median
        add(f"$find, {n}: API peak RSS ({workers or '?'} workers)", r, "api_memory",
            "peak_rss_total_mb", unit=" MB")  # fmt: skip
    for mode, r in results.get("freshness", {}).items():
        add(f"freshness ({mode}): p50", r, "all", "p50_ms", unit=" ms")
        add(f"freshness ({mode}): p99", r, "all", "p99_ms", unit=" ms")
    return "\n".join(rows)
