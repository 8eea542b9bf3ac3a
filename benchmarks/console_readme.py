"""``python -m benchmarks console-readme``: the README's ops console figure, from the
newest committed ``benchmarks/results/console-*.json`` (a test keeps them equal)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import readme_blocks
from .readme_blocks import ROOT


def newest() -> Path | None:
    return readme_blocks.newest("console")


def block_content(path: Path) -> str:
    result = json.loads(path.read_text())["console"]
    overview, meta = result["overview_ms"], result["meta"]
    history = (
        f", {result['history_days']} days of sync runs ({result['sync_chunks']:,} chunks)"
        if "history_days" in result
        else ""
    )
    cpu = result.get("overview_cpu_ms")
    cpu_text = (
        f" (CPU per request: {cpu['median']:.1f} ms median, {cpu['p95']:.1f} ms p95)" if cpu else ""
    )
    sampler = result.get("sampler_ms")
    sampler_text = (
        f" The minute sampler took {sampler['steady']:,.0f} ms ({sampler['first']:,.0f} ms"
        " right after a full load, when it counts every schedule once); counting every"
        f" slot, as it did each minute before, takes {sampler['full_count_before']:,.0f} ms."
        if sampler
        else ""
    )
    load = ", ".join(f"{x:g}" for x in meta["load_average_before"])
    return (
        f"At {result['slots']:,} cached slots and {result['schedules']:,} schedules{history},"
        f" `GET /console` took {overview['median']:.1f} ms median, {overview['p95']:.1f} ms"
        f" p95 and {overview['max']:.1f} ms max server time over {result['requests']}"
        f" requests{cpu_text}; target {result['target_ms']:.0f} ms.{sampler_text}"
        f" (`{meta['command']}` at commit {meta['commit']}, {meta['cores']} cores shared with"
        f" other work, load average before [{load}];"
        f" `{path.relative_to(ROOT).as_posix()}`.)"
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p  # nothing to choose: the newest result


def run(args: argparse.Namespace) -> dict[str, Any]:
    return readme_blocks.write_newest("console", "console", block_content, "run console with --out")
