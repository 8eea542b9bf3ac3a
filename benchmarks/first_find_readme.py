"""``python -m benchmarks first-find-readme``: the README's clean-clone figure, from the
newest committed ``benchmarks/results/first-find-*.json`` (a test keeps them equal)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import readme_blocks
from .first_find import readme_line
from .readme_blocks import ROOT

RESULTS = ROOT / "benchmarks" / "results"


def newest(results: Path = RESULTS) -> Path | None:
    files = sorted(results.glob("first-find-*.json"))
    return files[-1] if files else None


def block_content(path: Path) -> str:
    data = json.loads(path.read_text())
    result = data.get("first-find", data)
    return f"{readme_line(result)} (`{path.relative_to(ROOT).as_posix()}`)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p  # nothing to choose: the newest result


def run(args: argparse.Namespace) -> dict[str, Any]:
    path = newest()
    if path is None:
        raise SystemExit("no benchmarks/results/first-find-*.json: run first-find with --out")
    readme_blocks.write("first-find", block_content(path))
    return {"readme": "updated", "from": path.name}
