"""``slotsync config``: the settings in force, where each came from, secrets masked."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from app.cli.exit_codes import OK_EXIT, USAGE_EXIT
from app.cli.help_text import JSON_HELP, Subcommands, add_command
from app.cli.output import print_json

if TYPE_CHECKING:
    from app.settings import Settings


def _cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    """Every setting in force and where it came from; secrets masked before formatting."""
    from app.cli.effective_config import effective_config

    config = effective_config(settings)
    if args.json:
        print_json(config)
        return OK_EXIT
    print("# slotsync effective configuration (secrets masked)")
    for source in ("environment", "default"):
        chosen = {k: v for k, v in config["settings"].items() if v["source"] == source}
        print(f"\n# {'set in the environment' if source == 'environment' else 'defaults'}:")
        if not chosen:
            print("# (none)")
        for item in chosen.values():
            print(f"{item['env']}={_env_text(item['value'])}")
    print("\n# derived:")
    for name, value in config["derived"].items():
        print(f"# {name}: {_env_text(value)}")
    return OK_EXIT


def _env_text(value: object) -> str:
    """A value as an environment variable would hold it (unset: empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def register(sub: Subcommands) -> None:
    """Add ``config`` to ``sub``."""
    config = add_command(
        sub,
        "config",
        help="the effective configuration: every setting, its source, secrets masked",
        description="Print every setting in force (SLOTSYNC_* variables) with where it came"
        " from (the environment or the default) and the values derived from them. Secrets,"
        " API keys and the passwords in URLs are masked.",
        examples=[
            ("slotsync config", "as NAME=value lines, grouped by source"),
            ("slotsync config --json | jq .settings.horizon_days", "for a script"),
        ],
        exits={
            OK_EXIT: "printed",
            USAGE_EXIT: "bad arguments, or a setting is invalid (named, its value never shown)",
        },
    )
    config.add_argument("--json", action="store_true", help=JSON_HELP)
    config.set_defaults(func=_cmd_config)
