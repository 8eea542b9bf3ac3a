"""The shape of every command's help: a description, its examples and its exit statuses."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from app.cli.exit_codes import EXIT_CODES, INTERRUPTED_EXIT, USAGE_EXIT

# What each command group adds its commands to.
if TYPE_CHECKING:
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subcommands = argparse._SubParsersAction

COMMON_EXITS = {
    USAGE_EXIT: "bad arguments or settings",
    INTERRUPTED_EXIT: EXIT_CODES[INTERRUPTED_EXIT],
}
DEPENDENCY_HELP = (
    "the cache database has no schema (run `slotsync db upgrade`) or cannot be reached"
)
WIDTH = 88
JSON_HELP = "print one JSON document on stdout, nothing else (no colour, no progress)"


def epilog(
    examples: Sequence[tuple[str, str]], exits: Mapping[int, str], other: str | None = None
) -> str:
    """Examples, then every exit status (bad arguments and Ctrl-C unless said otherwise),
    and ``other`` for the statuses the command leaves to something else."""
    width = max((len(command) for command, what in examples if what), default=0)
    lines = ["examples:"]
    for command, what in examples:
        lines.append(f"  {command:<{width}}  # {what}" if what else f"  {command}")
    lines += ["", "exit status:"]
    merged = {str(code): text for code, text in sorted({**COMMON_EXITS, **exits}.items())}
    for code, text in {**merged, **({"other": other} if other else {})}.items():
        lines += textwrap.wrap(
            text, WIDTH, initial_indent=f"  {code:<6}", subsequent_indent=" " * 8
        )
    return "\n".join(lines)


def fill(text: str) -> str:
    return textwrap.fill(text, WIDTH)


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    examples: Sequence[tuple[str, str]],
    exits: Mapping[int, str],
    other: str | None = None,
    description: str | None = None,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """A subcommand whose help ends with its examples and exit statuses."""
    return sub.add_parser(
        name,
        help=help,
        description=fill(description or help[0].upper() + help[1:] + "."),
        epilog=epilog(examples, exits, other),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )
