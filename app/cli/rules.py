"""``slotsync rules check`` and ``rules init``: a business-rules file against the cache."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.exit_codes import DEPENDENCY_EXIT, FAILED_EXIT, OK_EXIT
from app.cli.help_text import DEPENDENCY_HELP, JSON_HELP, Subcommands, add_command
from app.cli.output import console, print_json

if TYPE_CHECKING:
    from app.settings import Settings


def _cmd_rules_check(args: argparse.Namespace, settings: Settings) -> int:
    """Validate a rules file, then count what it would offer from the current cache and
    list the cached schedules it leaves uncovered, with the reason."""
    from dataclasses import asdict
    from datetime import UTC, datetime, timedelta

    from sqlalchemy.orm import Session

    from app.cache import repository as repo
    from app.cache import slot_reads
    from app.runtime import get_engine
    from rules.check import format_report, summarise
    from rules.coverage import format_uncovered, summarise_slots, uncovered_schedules
    from rules.loader import RulesError, load_rules

    try:
        rules = load_rules(args.file)
    except RulesError as exc:
        if args.json:
            print_json({"file": args.file, "valid": False, "error": str(exc)})
        else:
            print(exc, file=sys.stderr)
        return FAILED_EXIT
    now = datetime.now(UTC)
    horizon = max(rules.effective(vt).max_horizon_days for vt in rules.visit_types)
    with console.status("reading the cache"), Session(get_engine(settings)) as session:
        slots = slot_reads.free_slots(
            session, now - timedelta(hours=12), now + timedelta(days=horizon + 1)
        )
        schedules = repo.schedules_by_id(session)
        actors = repo.actors_by_ref(session)
    summaries = summarise(rules, slots, schedules, actors, now)
    ahead = [s for s in slots if s.start >= now]
    uncovered = uncovered_schedules(rules, schedules, actors, summarise_slots(ahead), now)
    if args.json:
        print_json(
            {
                "file": args.file,
                "valid": True,
                "version": rules.version,
                "organization": rules.organization.name,
                "visit_types": [asdict(s) for s in summaries],
                "cached": {"free_slots": len(slots), "schedules": len(schedules)},
                "uncovered": [u.as_json() for u in uncovered],
            },
        )
        return OK_EXIT
    print(format_report(rules, summaries, source=args.file))
    print(f"(against {len(slots)} cached free slots in {len(schedules)} schedules)")
    print()
    print(format_uncovered(uncovered, len(schedules)), end="")
    return OK_EXIT


RULES_INIT_EXIT = {"written": OK_EXIT, "not-written": FAILED_EXIT, "empty-cache": DEPENDENCY_EXIT}


def _cmd_rules_init(args: argparse.Namespace, settings: Settings) -> int:
    """Write a starter rules file from the schedules, actors and slots in the cache."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import Session

    from app.cache import repository as repo
    from app.cache import slot_reads
    from app.runtime import get_engine
    from rules.loader import RulesError, parse_rules
    from rules.starter import MAX_HORIZON_DAYS, EmptyCache, starter_rules

    out = Path(args.out)
    if out.exists() and not args.force:
        console.print(f"[red]{out} exists: not overwritten (--force replaces it)[/red]")
        return RULES_INIT_EXIT["not-written"]
    now = datetime.now(UTC)
    try:
        with console.status("reading the cache"), Session(get_engine(settings)) as session:
            schedules = repo.schedules_by_id(session)
            actors = repo.actors_by_ref(session)
            slots = slot_reads.free_slots(session, now, now + timedelta(days=MAX_HORIZON_DAYS + 1))
        text = starter_rules(schedules, actors, slots, now)
    except (EmptyCache, SQLAlchemyError):
        console.print(
            "[red]the cache holds no schedules: load them from the EHR first"
            " (`slotsync db upgrade`, then `slotsync resync`)[/red]",
            soft_wrap=True,
            highlight=False,
        )
        return RULES_INIT_EXIT["empty-cache"]
    try:
        parse_rules(text, source=str(out))
    except RulesError as exc:  # a bug here, not the user's: say so rather than write it
        console.print(f"[red]the starter rules do not validate, not written:\n{exc}[/red]")
        return RULES_INIT_EXIT["not-written"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(
        f"wrote {out}: {len(schedules)} schedules, {len(actors)} actors, {len(slots)} free slots"
        f" read from the cache. Next: slotsync rules check {out}"
    )
    return RULES_INIT_EXIT["written"]


def register(sub: Subcommands) -> None:
    """Add ``rules`` (``check``, ``init``) to ``sub``."""
    rules = add_command(
        sub,
        "rules",
        help="business rules: write a starter file, check a file against the cache",
        examples=[
            ("slotsync rules init --out rules.yaml", "a starter file from the cache"),
            ("slotsync rules check rules.yaml", "what it offers, what it leaves out"),
        ],
        exits={DEPENDENCY_EXIT: DEPENDENCY_HELP},
        other="see `slotsync rules COMMAND --help`",
    )
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    rules_check = add_command(
        rules_sub,
        "check",
        help="validate a rules file and summarise what it offers from the cache",
        description="Validate a rules file, count what each visit type offers from the cached"
        " slots and list the cached schedules it leaves uncovered, with the reason.",
        examples=[
            ("slotsync rules check rules.yaml", ""),
            ("slotsync rules check rules.yaml --json", "for CI: .valid, .uncovered"),
        ],
        exits={
            OK_EXIT: "the file is valid (the report says what it offers)",
            FAILED_EXIT: "the file is invalid or unreadable",
            DEPENDENCY_EXIT: DEPENDENCY_HELP,
        },
    )
    rules_check.add_argument("file")
    rules_check.add_argument("--json", action="store_true", help=JSON_HELP)
    rules_check.set_defaults(func=_cmd_rules_check)
    rules_init = add_command(
        rules_sub,
        "init",
        help="write a starter rules file from the schedules, actors and slots in the cache",
        description="Write a starter rules file from what the EHR has, as the cache holds it"
        " after a load: a visit type per service type found, durations from the slots,"
        " opening hours that cover them, with comments saying what to adjust.",
        examples=[
            ("slotsync rules init", "writes rules.yaml"),
            ("slotsync rules init --out rules/clinic.yaml --force", "replace a file"),
        ],
        exits={
            RULES_INIT_EXIT["written"]: "written",
            RULES_INIT_EXIT["not-written"]: "not written (the file exists and --force is not"
            " given)",
            RULES_INIT_EXIT["empty-cache"]: "the cache holds no schedules (run `slotsync"
            " resync` first)",
        },
    )
    rules_init.add_argument("--out", default="rules.yaml", help="default: rules.yaml")
    rules_init.add_argument("--force", action="store_true", help="overwrite an existing file")
    rules_init.set_defaults(func=_cmd_rules_init)
