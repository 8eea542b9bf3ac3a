"""``python -m benchmarks <name>`` (load, find, freshness, faults, smart-feed, rules-preview,
index-read, all, scale, and the readme and chart writers below): run, print, save.

To add a benchmark: a module with ``add_arguments(parser)`` and ``run(args) -> dict``,
listed in :data:`BENCHMARKS` (and in :mod:`benchmarks.suite` if ``all`` should run
it). ``all`` runs load and ``$find`` at several sizes and both freshness modes, and
prints the README's results table. The JSON file maps benchmark name -> result and
is merged with an existing file, so several invocations can fill one file.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCHMARKS = {
    "load": "benchmarks.load",
    "freshness": "benchmarks.freshness",
    "find": "benchmarks.find",
    "find-ab": "benchmarks.find_ab",
    "faults": "benchmarks.faults",
    "faults-readme": "benchmarks.faults_readme",
    "first-find": "benchmarks.first_find",
    "first-find-readme": "benchmarks.first_find_readme",
    "bench-readme": "benchmarks.bench_readme",
    "bench-chart": "benchmarks.bench_chart",
    "smart-feed": "benchmarks.smart_feed",
    "smart-feed-readme": "benchmarks.smart_feed_readme",
    "console": "benchmarks.console",
    "console-readme": "benchmarks.console_readme",
    "rules-preview": "benchmarks.rules_preview",
    "rules-preview-readme": "benchmarks.rules_preview_readme",
    "all": "benchmarks.suite",
    "scale": "benchmarks.scale",
    "index-read": "benchmarks.index_read",
}


def _write(out: Path, results: dict[str, Any]) -> None:
    merged: dict[str, Any] = {}
    if out.exists():
        try:
            merged = json.loads(out.read_text())
        except json.JSONDecodeError:
            merged = {}
    merged.update(results)
    out.write_text(json.dumps(merged, indent=2) + "\n")


def machine_facts(argv: list[str]) -> dict[str, Any]:
    """What a figure depends on, recorded beside it: the command, the code, the machine
    and how busy it was just before the run."""
    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    # uncommitted changes to tracked files: the figures are not those of the commit alone
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=root,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # the output file is where the result went, not how it was measured
    words = [a for n, a in enumerate(argv) if "--out" not in (a, argv[n - 1] if n else "")]
    return {
        "command": " ".join(["python -m benchmarks", *words]),
        "commit": commit or None,
        "uncommitted_changes": bool(changed),
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cores": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--log-level", default="WARNING")
    sub = parser.add_subparsers(dest="name", required=True)
    modules = {name: importlib.import_module(path) for name, path in BENCHMARKS.items()}
    for name, module in modules.items():
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(p)
        p.add_argument("--out", type=Path, default=None, help="write/merge results JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    facts = machine_facts(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    result = modules[args.name].run(args)
    if isinstance(result, dict):
        result.setdefault("meta", {**facts, "wall_seconds": round(time.monotonic() - started)})
    results: dict[str, Any] = {args.name: result}
    print(json.dumps(results, indent=2), flush=True)
    table = getattr(modules[args.name], "table", None)
    if table is not None:
        print(table(results[args.name]), flush=True)
    if args.out:
        _write(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
