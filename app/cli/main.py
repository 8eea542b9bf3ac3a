"""The ``slotsync`` command: one entry point for every process and ops action.

Each command group lives in its own module and adds its commands to the parser; this
module assembles them, reads the settings and dispatches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from pydantic_settings import SettingsError

from app.cli import config, db, demo, explain, processes, rules, sync
from app.cli.exit_codes import (
    DEPENDENCY_EXIT,
    EXIT_CODES,
    INTERRUPTED_EXIT,
    OK_EXIT,
    USAGE_EXIT,
)
from app.cli.help_text import JSON_HELP, epilog, fill
from app.cli.output import console
from app.settings import UnsafeSettings, get_settings

# In the order `slotsync --help` lists their commands.
GROUPS = (processes, demo, sync, rules, explain, db, config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slotsync",
        description=fill(
            "slotsync: one entry point for every process and ops action of the Argonaut"
            " Scheduling server. `slotsync COMMAND --help` shows a command's options, examples"
            " and exit statuses."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=epilog(
            [
                ("slotsync demo", "sandbox EHR, initial load and the API on :8000"),
                ("slotsync db upgrade && slotsync resync", "prepare the cache, load it"),
                ("slotsync serve --workers 4", "the API"),
                ("slotsync status --json", "sync health for a script"),
                ("slotsync config", "the settings in force, secrets masked"),
                ("slotsync COMMAND --help", "a command's options, examples, exit status"),
            ],
            EXIT_CODES,
        )
        + "\n\n"
        + fill(f"--json (status, sync-status, resync, rules check, explain, config): {JSON_HELP}."),
    )
    parser.add_argument("--log-level", default=None, help="default: SLOTSYNC_LOG_LEVEL")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # pass the sandbox its own arguments untouched (including --help)
    if argv[:1] == ["sandbox-ehr"]:
        from sandbox_ehr.cli import main as sandbox_main

        return sandbox_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except (UnsafeSettings, SettingsError) as exc:
        console.print(f"[red]{exc}[/red]", soft_wrap=True, highlight=False)
        return USAGE_EXIT
    except ValidationError as exc:
        # name the variables, never echo their values (they may be secrets)
        for error in exc.errors():
            name = "SLOTSYNC_" + "_".join(str(p) for p in error["loc"]).upper()
            console.print(f"[red]{name}: {error['msg']}[/red]", soft_wrap=True, highlight=False)
        return USAGE_EXIT
    from app.observability.logging import configure_logging

    args.log_level = (args.log_level or settings.log_level).lower()
    configure_logging(settings, level=args.log_level)
    try:
        return int(args.func(args, settings) or OK_EXIT)
    except KeyboardInterrupt:
        return INTERRUPTED_EXIT
    except Exception as exc:
        from app.cli.failures import explain

        line = explain(exc, settings)
        if line is None:
            raise  # a bug: keep its traceback
        console.print(f"[red]{line}[/red]", soft_wrap=True, highlight=False)
        return DEPENDENCY_EXIT
