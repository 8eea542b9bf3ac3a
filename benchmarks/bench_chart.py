"""``python -m benchmarks bench-chart``: the chart of a ``make bench`` result (latency
percentiles, load rate and memory against cache size), written beside it as
``bench-<date>.svg``; sizes beyond the result's come from the newest ``scale-*.json``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .bench_readme import chart_path, chart_svg, newest, newest_scale


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--result", type=Path, default=None, help="a bench-*.json (default: the newest full one)"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    path = args.result or newest()
    if path is None or not path.exists():
        raise SystemExit(f"no result file {path or 'benchmarks/results/bench-*.json'}")
    chart_path(path).write_text(chart_svg(path, newest_scale()))
    return {"chart": str(chart_path(path))}
