"""``all``: every benchmark, with the load and ``$find`` ones at several cache sizes.

One run gives the whole picture the README's performance table shows: initial
load and ``$find`` at each of ``--sizes`` (how the costs grow with the cache),
freshness with notifications and with the polling fallback. Each part runs its
own real processes, one after the other, so they do not compete for the cores.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

from . import find, freshness, load

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", default="10000,100000,1000000", help="sandbox sizes, comma list")
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


def _step(name: str, fn: Callable[[], dict[str, Any]], into: dict[str, Any]) -> None:
    """Run one part; a failure is recorded and the others still run."""
    log.warning("benchmark: %s", name)
    try:
        into[name] = fn()
    except Exception as exc:  # reported in the results, not hidden
        log.exception("benchmark %s failed", name)
        into[name] = {"error": f"{type(exc).__name__}: {exc}"}


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(s) for s in args.sizes.split(",")]
    quick = args.quick
    results: dict[str, Any] = {"load": {}, "find": {}, "freshness": {}, "load_plain_r4": {}}
    for size in sizes:
        _step(str(size), lambda size=size: load.run(_defaults(load, size=size)), results["load"])
        find_args = _defaults(
            find,
            size=size,
            requests=50 if quick else 200,
            clients="1,4" if quick else "1,2,4,8,16",
            seconds=3.0 if quick else 10.0,
            ehr_samples=3 if quick else 10,
        )
        _step(str(size), lambda a=find_args: find.run(a), results["find"])
    notify = _defaults(
        freshness, size=args.freshness_size, mutations=20 if quick else args.mutations
    )
    _step("notifications", lambda: freshness.run(notify), results["freshness"])
    poll = _defaults(
        freshness,
        size=args.freshness_size,
        mode="polling",
        mutations=6 if quick else args.polling_mutations,
    )
    _step("polling", lambda: freshness.run(poll), results["freshness"])
    # a generic R4 server: load by plain Slot search, freshness by polling only
    plain_load = _defaults(load, size=max(sizes), profile="plain-r4")
    _step("plain-r4", lambda: load.run(plain_load), results["load_plain_r4"])
    plain_poll = _defaults(
        freshness,
        size=args.freshness_size,
        profile="plain-r4",
        mutations=6 if quick else args.polling_mutations,
    )
    _step("polling-plain-r4", lambda: freshness.run(plain_poll), results["freshness"])
    return results


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def table(results: dict[str, Any]) -> str:
    """The results as the Markdown table the README carries."""
    rows = ["| measure | value |", "|---|---|"]

    def add(label: str, value: Any, unit: str = "") -> None:
        if value is None:
            text = "failed / not run"
        elif isinstance(value, int | float):
            text = f"{value:,}{unit}"
        else:
            text = f"{value}{unit}"
        rows.append(f"| {label} | {text} |")

    for size, r in results.get("load", {}).items():
        add(f"initial load, {int(size):,}-slot EHR: slots/s", _get(r, "slots_per_second"))
        add(f"initial load, {int(size):,}-slot EHR: wall", _get(r, "wall_seconds"), " s")
        add(f"initial load, {int(size):,}-slot EHR: worker peak RSS",
            _get(r, "peak_rss_total_mb"), " MB")  # fmt: skip
    for r in results.get("load_plain_r4", {}).values():
        size = _get(r, "sandbox_size")
        label = f"initial load from plain R4 (Slot search), {int(size or 0):,}-slot EHR"
        add(f"{label}: slots/s", _get(r, "slots_per_second"))
        add(f"{label}: worker peak RSS", _get(r, "peak_rss_total_mb"), " MB")
    for size, r in results.get("find", {}).items():
        n = f"{int(size):,}"
        for kind in ("typical", "broad"):
            add(f"$find {kind}, {n}: p50 / p99 single client",
                _pair(_get(r, kind, "single_client", "p50_ms"),
                      _get(r, kind, "single_client", "p99_ms")), " ms")  # fmt: skip
            add(f"$find {kind}, {n}: req/s at p99 <= 100 ms",
                _get(r, kind, "throughput_at_p99_100ms"))  # fmt: skip
            add(f"$find {kind}, {n}: bare SQL read p50", _get(r, kind, "bare_sql", "p50_ms"), " ms")
        add(f"$find typical, {n}: EHR in real time p50",
            _get(r, "typical", "ehr_realtime", "p50_ms"), " ms")  # fmt: skip
        add(f"$find, {n}: API peak RSS ({_get(r, 'api_workers')} workers)",
            _get(r, "api_memory", "peak_rss_total_mb"), " MB")  # fmt: skip
    for mode, r in results.get("freshness", {}).items():
        add(f"freshness ({mode}): p50 / p99",
            _pair(_get(r, "all", "p50_ms"), _get(r, "all", "p99_ms")), " ms")  # fmt: skip
    return "\n".join(rows)


def _pair(a: Any, b: Any) -> str | None:
    return None if a is None or b is None else f"{a} / {b}"
