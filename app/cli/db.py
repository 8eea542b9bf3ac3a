"""``slotsync db upgrade``: the cache database's schema."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from app.cli.exit_codes import DEPENDENCY_EXIT, OK_EXIT
from app.cli.help_text import Subcommands, add_command
from app.cli.output import console

if TYPE_CHECKING:
    from app.settings import Settings


def _cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from app.cache.migrate import upgrade

    upgrade(settings.effective_database_url)  # alembic logs each migration as it goes
    console.print("[green]database schema is up to date[/green]")
    return OK_EXIT


def register(sub: Subcommands) -> None:
    """Add ``db`` (``upgrade``) to ``sub``."""
    db = add_command(
        sub,
        "db",
        help="database schema",
        examples=[("slotsync db upgrade", "before the first start and after each upgrade")],
        exits={DEPENDENCY_EXIT: "the database cannot be reached"},
    )
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    db_upgrade = add_command(
        db_sub,
        "upgrade",
        help="apply Alembic migrations",
        description="Bring the cache database's schema up to date (Alembic migrations); safe"
        " to run again.",
        examples=[
            ("slotsync db upgrade", ""),
            ("SLOTSYNC_DATABASE_URL=postgresql+psycopg://... slotsync db upgrade", ""),
        ],
        exits={
            OK_EXIT: "the schema is up to date",
            DEPENDENCY_EXIT: "the database cannot be reached",
        },
    )
    db_upgrade.set_defaults(func=_cmd_db_upgrade)
