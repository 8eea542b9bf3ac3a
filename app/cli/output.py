"""Where a command's output goes: messages to stderr, reports (and ``--json``) to stdout."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

from rich.console import Console

# Messages, progress and errors; stdout carries only what a command reports (with --json:
# one JSON document and nothing else).
console = Console(stderr=True)


def print_json(data: object) -> None:
    """``data`` as one JSON document on stdout: no colour, no wrapping, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=json_value) + "\n")
    sys.stdout.flush()


def json_value(value: object) -> str:
    if isinstance(value, date):  # datetimes too
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
