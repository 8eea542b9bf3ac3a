"""The README documents every CLI command."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from app.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def commands(parser: argparse.ArgumentParser, prefix: str = "slotsync") -> Iterator[str]:
    """Every runnable command path, e.g. ``slotsync rules init``."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield prefix
    for group in groups:
        for name, sub in group.choices.items():
            yield from commands(sub, f"{prefix} {name}")


def test_every_cli_command_is_documented_in_the_readme():
    readme = " ".join((ROOT / "README.md").read_text().split())
    found = list(commands(build_parser()))
    assert "slotsync rules init" in found and "slotsync db upgrade" in found
    missing = [c for c in found if f"`{c}`" not in readme and f"`{c} " not in readme]
    assert missing == []
