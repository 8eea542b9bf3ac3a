"""``python -m benchmarks smart-feed-readme``: the README's feed figures, from the newest
committed ``benchmarks/results/smart-feed-*.json`` (a test keeps them equal)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import readme_blocks
from .readme_blocks import ROOT


def newest() -> Path | None:
    return readme_blocks.newest("smart-feed")


def block_content(path: Path) -> str:
    result = json.loads(path.read_text())["smart-feed"]
    downloads = result["download"]
    rates = sorted(d["slots_per_second"] for d in downloads.values())
    growth = max(d["api_rss_growth_mb"] for d in downloads.values())
    first = downloads["first"]
    meta = result["meta"]
    return (
        f"At {result['sandbox_size']:,} sandbox slots ({result['slots_cached']:,} cached,"
        f" {first['lines']['Slot']:,} published Slots in {first['files']} files) a full"
        f" download streamed at {rates[0] / 1000:.0f}-{rates[-1] / 1000:.0f}k Slots/s with"
        f" the API's RSS growing by {growth:.1f} MB, and the manifest answered in"
        f" {result['manifest']['p99_ms']:.1f} ms at p99; the first refresh took"
        f" {result['first_refresh_seconds']:.0f} s (`{meta['command']}` at commit"
        f" {meta['commit']}, {meta['cores']} cores; `{path.relative_to(ROOT).as_posix()}`)."
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p  # nothing to choose: the newest result


def run(args: argparse.Namespace) -> dict[str, Any]:
    return readme_blocks.write_newest(
        "smart-feed", "smart-feed", block_content, "run smart-feed with --out"
    )
