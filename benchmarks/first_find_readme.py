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


def newest() -> Path | None:
    return readme_blocks.newest("first-find")


def block_content(path: Path) -> str:
    data = json.loads(path.read_text())
    result = data.get("first-find", data)
    return f"{readme_line(result)} (`{path.relative_to(ROOT).as_posix()}`)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p  # nothing to choose: the newest result


def run(args: argparse.Namespace) -> dict[str, Any]:
    return readme_blocks.write_newest(
        "first-find", "first-find", block_content, "run first-find with --out"
    )
