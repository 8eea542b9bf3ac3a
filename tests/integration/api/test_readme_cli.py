"""The README documents every CLI command, its --json option and every exit status."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from app.cli.exit_codes import EXIT_CODES
from app.cli.main import build_parser
from tests.paths import REPO


def commands(parser: argparse.ArgumentParser, prefix: str = "slotsync") -> Iterator[str]:
    """Every runnable command path, e.g. ``slotsync rules init``."""
    yield from (path for path, _ in command_parsers(parser, prefix))


def command_parsers(
    parser: argparse.ArgumentParser, prefix: str = "slotsync"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield prefix, parser
    for group in groups:
        for name, sub in group.choices.items():
            yield from command_parsers(sub, f"{prefix} {name}")


def cli_section() -> str:
    text = (REPO / "README.md").read_text()
    return text.split("\n## CLI\n", 1)[1].split("\n## ", 1)[0]


def test_every_cli_command_is_documented_in_the_readme():
    readme = " ".join((REPO / "README.md").read_text().split())
    found = list(commands(build_parser()))
    assert "slotsync rules init" in found and "slotsync db upgrade" in found
    missing = [c for c in found if f"`{c}`" not in readme and f"`{c} " not in readme]
    assert missing == []


def test_every_json_option_is_documented_in_the_cli_section():
    rows = {
        line.split("`")[1]: line for line in cli_section().splitlines() if line.startswith("| `")
    }
    with_json = [
        path
        for path, parser in command_parsers(build_parser())
        if any("--json" in action.option_strings for action in parser._actions)
    ]
    assert "slotsync config" in with_json and "slotsync status" in with_json
    undocumented = [
        path
        for path in with_json
        if not any(
            (usage == path or usage.startswith(path + " ")) and "--json" in row
            for usage, row in rows.items()
        )
    ]
    assert undocumented == []


def test_every_exit_status_is_documented_in_the_cli_section():
    section = cli_section()
    missing = [code for code in EXIT_CODES if f"\n| {code} | " not in section]
    assert missing == []
