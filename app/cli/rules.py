"""``slotsync rules check``, ``init``, ``diff`` and ``apply``: a business-rules file against
the cache and the rules in force."""

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
    from rules.schema import horizon_days

    try:
        rules = load_rules(args.file)
    except RulesError as exc:
        if args.json:
            print_json({"file": args.file, "valid": False, "error": str(exc)})
        else:
            print(exc, file=sys.stderr)
        return FAILED_EXIT
    now = datetime.now(UTC)
    horizon = horizon_days(rules)
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


def _cmd_rules_diff(args: argparse.Namespace, settings: Settings) -> int:
    """What replacing the rules in force by a file would gain and lose, over the cache."""
    from datetime import UTC, datetime

    from sqlalchemy.orm import Session

    from app.availability.catalog import read_catalog
    from app.availability.preview import preview_rules, request_patient
    from app.availability.service import MAX_SLOT_LENGTH
    from app.availability.slot_index import SlotIndex
    from app.cli.rules_table import print_preview
    from app.runtime import get_engine
    from rules.loader import RulesError, load_rules

    live_path = settings.effective_rules_path
    try:
        new = load_rules(args.file)
        old = load_rules(live_path)
    except RulesError as exc:
        if args.json:
            print_json({"file": args.file, "valid": False, "problems": _problems(exc)})
        else:
            print(exc, file=sys.stderr)
        return FAILED_EXIT
    now = datetime.now(UTC)
    with (
        console.status("composing the offers of both files"),
        Session(get_engine(settings)) as session,
    ):
        preview = preview_rules(
            session,
            old=old,
            new=new,
            catalog=read_catalog(session),
            slot_index=SlotIndex(lookback=MAX_SLOT_LENGTH),
            now=now,
            patient=request_patient(now.date(), args.age, args.gender),
            examples=args.examples,
        )
    if args.json:
        print_json({"file": args.file, "valid": True, "live": str(live_path), **preview.as_json()})
        return OK_EXIT
    print_preview(preview, live=Path(live_path).name, new=Path(args.file).name)
    return OK_EXIT


def _problems(exc: object) -> list[dict[str, object]]:
    return [p.as_json() for p in getattr(exc, "problems", [])]


def _cmd_rules_apply(args: argparse.Namespace, settings: Settings) -> int:
    """Validate a file and make it the rules file in force (every API process reloads it)."""
    from rules.loader import RulesError, load_rules, replace_rules_file
    from rules.preview import diff_rules

    if settings.rules_path is None:
        message = (
            "no rules file of your own is configured (the bundled example is in force):"
            " set SLOTSYNC_RULES_PATH first"
        )
        if args.json:
            print_json({"file": args.file, "applied": False, "error": message})
        else:
            console.print(f"[red]{message}[/red]", soft_wrap=True, highlight=False)
        return FAILED_EXIT
    live = Path(settings.rules_path)
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        console.print(f"[red]{path}: cannot read: {exc}[/red]", soft_wrap=True, highlight=False)
        return FAILED_EXIT
    try:
        old = load_rules(live)
    except RulesError:
        old = None  # a broken live file can still be replaced by a valid one
    fmt = "json" if path.suffix.lower() == ".json" else "yaml"
    try:
        new = replace_rules_file(live, text, fmt=fmt, source=str(path))
    except RulesError as exc:
        if args.json:
            print_json({"file": args.file, "applied": False, "problems": _problems(exc)})
        else:
            print(exc, file=sys.stderr)
            print(f"{live} is unchanged", file=sys.stderr)
        return FAILED_EXIT
    changes = diff_rules(old, new) if old is not None else []
    if args.json:
        print_json(
            {
                "file": args.file,
                "applied": True,
                "rules": str(live),
                "changes": [c.as_json() for c in changes],
            }
        )
        return OK_EXIT
    print(
        f"applied {path} as {live}: {len(changes)} change(s); every API process serves it"
        " within its rules check interval (a second)"
    )
    for change in changes:
        print(f"  {change.kind:<8} {change.path}")
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
    """Add ``rules`` (``check``, ``init``, ``diff``, ``apply``) to ``sub``."""
    rules = add_command(
        sub,
        "rules",
        help="business rules: write a starter file, check a file against the cache",
        examples=[
            ("slotsync rules init --out rules.yaml", "a starter file from the cache"),
            ("slotsync rules check rules.yaml", "what it offers, what it leaves out"),
            ("slotsync rules diff new.yaml", "offers gained and lost if it replaced the live file"),
            ("slotsync rules apply new.yaml", "validate it and put it in force"),
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
    rules_diff = add_command(
        rules_sub,
        "diff",
        help="preview a rules change: the offers it gains and loses over the cache",
        description="Compose every offer $find would make over the cached horizon under the"
        " rules in force (SLOTSYNC_RULES_PATH) and under NEW_FILE, and show the difference:"
        " counted per schedule, visit type and day, with examples, the reason the other file"
        " does not offer them and the edit that caused it. Nothing is changed. Eligibility"
        " changes are previewed for a patient on each side of every changed age, gender or"
        " new/existing boundary, unless --age/--gender name one patient.",
        examples=[
            ("slotsync rules diff new.yaml", ""),
            ("slotsync rules diff new.yaml --json", "for a script"),
            ("slotsync rules diff new.yaml --age 16 --gender female", "for one patient"),
        ],
        exits={
            OK_EXIT: "previewed (the difference may be empty)",
            FAILED_EXIT: "a rules file is invalid or unreadable",
            DEPENDENCY_EXIT: DEPENDENCY_HELP,
        },
    )
    rules_diff.add_argument("file", metavar="NEW_FILE")
    rules_diff.add_argument("--age", type=int, help="preview for a patient of this age (years)")
    rules_diff.add_argument(
        "--gender", choices=["male", "female", "other", "unknown"], help="and/or this gender"
    )
    rules_diff.add_argument("--examples", type=int, default=5, help="per direction (default 5)")
    rules_diff.add_argument("--json", action="store_true", help=JSON_HELP)
    rules_diff.set_defaults(func=_cmd_rules_diff)
    rules_apply = add_command(
        rules_sub,
        "apply",
        help="validate a rules file and put it in force in every API process",
        description="Validate NEW_FILE; if valid, replace the rules file in force"
        " (SLOTSYNC_RULES_PATH) atomically. Every API process reloads it at its next"
        " change check (within a second); an invalid file changes nothing.",
        examples=[
            ("slotsync rules diff new.yaml && slotsync rules apply new.yaml", ""),
        ],
        exits={
            OK_EXIT: "applied",
            FAILED_EXIT: "the file is invalid or unreadable, or no SLOTSYNC_RULES_PATH is set:"
            " nothing changed",
        },
    )
    rules_apply.add_argument("file", metavar="NEW_FILE")
    rules_apply.add_argument("--json", action="store_true", help=JSON_HELP)
    rules_apply.set_defaults(func=_cmd_rules_apply)
