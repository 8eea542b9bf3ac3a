"""``python -m benchmarks bench-readme``: the README's performance table, from the newest
committed ``benchmarks/results/bench-*.json`` that ``make bench`` wrote (a test keeps the
README equal to it, so no figure there is typed in)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import readme_blocks, suite
from .readme_blocks import ROOT


def newest() -> Path | None:
    return readme_blocks.newest("bench")


def block_content(path: Path) -> str:
    result = json.loads(path.read_text()).get("all", {})
    meta = result.get("meta", {})
    where = path.relative_to(ROOT).as_posix()
    minutes = round((meta.get("wall_seconds") or 0) / 60)
    header = (
        f"`{meta.get('command')}` at commit {meta.get('commit')}, started"
        f" {meta.get('started_at')}, on {meta.get('cores')} cores (load average before"
        f" {meta.get('load_average_before')}), Python {meta.get('python')}; {minutes} min in"
        f" all; one run (`{where}`)."
    )
    return f"{header}\n\n{suite.table(result)}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p  # nothing to choose: the newest result


def run(args: argparse.Namespace) -> dict[str, Any]:
    return readme_blocks.write_newest("bench", "bench", block_content, "run `make bench` first")
