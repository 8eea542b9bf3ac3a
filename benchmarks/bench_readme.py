"""``python -m benchmarks bench-readme``: the README's performance blocks and chart, from the
newest *full* committed ``benchmarks/results/bench-*.json`` that ``make bench`` wrote (one
that measured 1M slots and was not ``--quick``; a smaller run is for trying the command
out), joined by the newest ``scale-*.json`` for sizes beyond it (10M). Tests keep the
README blocks and the chart equal to those files, so no figure there is typed in.

Writes the ``bench`` block (how it was measured, the chart, every figure's median and
spread), the ``bench-growth`` block (the curve from 10k up, the 100M predictions) and
the chart itself, ``bench-<date>.svg`` beside the result.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import chart, growth, readme_blocks, suite
from .readme_blocks import RESULTS, ROOT

FULL_SIZE = 1_000_000


def _load(path: Path, key: str) -> dict[str, Any]:
    data = json.loads(path.read_text()).get(key, {})
    return data if isinstance(data, dict) else {}


def is_full(result: dict[str, Any]) -> bool:
    """Whether a result is one the README should show: 1M slots measured, not a smoke run."""
    command = str(result.get("meta", {}).get("command", ""))
    quick = bool(result.get("quick")) or "--quick" in command.split()
    return not quick and str(FULL_SIZE) in (result.get("load") or {})


def newest(results: Path = RESULTS) -> Path | None:
    """The newest full ``bench-*.json`` (names sort by date); none full: the newest."""
    files = sorted(results.glob("bench-*.json"))
    full = [f for f in files if is_full(_load(f, "all"))]
    return (full or files)[-1] if files else None


def newest_scale(results: Path = RESULTS) -> Path | None:
    return readme_blocks.newest("scale", results)


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def sizes(path: Path, scale: Path | None = None) -> list[growth.Size]:
    """The growth curve: the bench result's sizes, then the scale result's larger ones."""
    sources = [(_name(path), _load(path, "all"))]
    if scale is not None:
        sources.append((_name(scale), _load(scale, "scale")))
    return growth.curve(sources)


def chart_path(path: Path) -> Path:
    return path.with_suffix(".svg")


def chart_svg(path: Path, scale: Path | None = None) -> str:
    result = _load(path, "all")
    repeat = result.get("repeat", 1)
    runs = f"median of {repeat} runs per point, bars from the least to the greatest run"
    caption = (
        f"slotsync benchmarks: {runs if repeat > 1 else 'one run per point'}; {path.name}"
        + (f" (larger sizes: {scale.name})" if scale is not None else "")
        + f", commit {result.get('meta', {}).get('commit')}"
    )
    return chart.render(growth.panels(sizes(path, scale)), caption)


def _header(path: Path, result: dict[str, Any]) -> str:
    meta = result.get("meta", {})
    repeat = int(result.get("repeat", 1))
    minutes = round((meta.get("wall_seconds") or 0) / 60)
    rounds = result.get("rounds") or []
    each = "; ".join(str(r.get("load_average_before")) for r in rounds)
    runs = (
        f"each figure the median of {repeat} runs, with the least and greatest run"
        if repeat > 1
        else "one run"
    )
    full = "" if is_full(result) else " Not a full run (no 1M-slot load, or `--quick`)."
    return (
        f"`{meta.get('command')}` at commit {meta.get('commit')}, started"
        f" {meta.get('started_at')}, on {meta.get('cores')} cores (load average before"
        f" {meta.get('load_average_before')}"
        + (f"; before each round: {each}" if len(rounds) > 1 else "")
        + f"), Python {meta.get('python')}; {minutes} min in all; {runs}"
        f" (`{_name(path)}`).{full}"
    )


def block_content(path: Path) -> str:
    result = _load(path, "all")
    image = f"![latency, load rate and memory against cache size]({_name(chart_path(path))})"
    return f"{_header(path, result)}\n\n{image}\n\n{suite.table(result)}"


def growth_content(path: Path, scale: Path | None = None) -> str:
    curve = sizes(path, scale)
    lines = "\n".join(f"- {line}" for line in growth.predictions(curve))
    biggest = chart.size_label(max((s.size for s in curve), default=0))
    return (
        f"{growth.table(curve)}\n\n"
        f"What these medians predict for {chart.size_label(growth.TARGET_SIZE)} slots"
        f" (extrapolated from {chart.size_label(curve[0].size) if curve else '-'} and"
        f" {biggest}, the smallest and largest sizes measured):\n\n{lines}"
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p  # nothing to choose: the newest full result


def run(args: argparse.Namespace) -> dict[str, Any]:
    path, scale = newest(), newest_scale()
    if path is None:
        raise SystemExit("no benchmarks/results/bench-*.json: run `make bench` first")
    readme_blocks.write("bench", block_content(path))
    readme_blocks.write("bench-growth", growth_content(path, scale))
    chart_path(path).write_text(chart_svg(path, scale))
    return {
        "readme": "updated",
        "from": path.name,
        "scale": scale.name if scale else None,
        "chart": chart_path(path).name,
    }
