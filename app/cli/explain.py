"""``slotsync explain``: why a practitioner's cached slots are not offered, as a table.

The same answer as ``$find?_explain=true``, read from the cache directly (as ``rules
check`` does), without an API process.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.exit_codes import DEPENDENCY_EXIT, FAILED_EXIT, OK_EXIT, USAGE_EXIT
from app.cli.help_text import DEPENDENCY_HELP, JSON_HELP, Subcommands, add_command
from app.cli.output import console, print_json

if TYPE_CHECKING:
    from app.settings import Settings
    from rules.explain import Reason

LISTED_SLOTS = 2  # slot ids a row names; the count says how many in all


def _cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    """Compose what ``$find`` would offer for the request, then say why each other
    cached slot of the window is not offered."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy.orm import Session

    from app.availability.catalog import read_catalog
    from app.availability.explain import explain_offline
    from app.availability.params import (
        build_find_request,
        parse_datetime_param,
        split_values,
    )
    from app.core.errors import InvalidParameter
    from app.runtime import get_engine
    from rules.loader import RulesError, load_rules

    rules_path = args.rules or settings.effective_rules_path
    try:
        rules = load_rules(rules_path)
    except RulesError as exc:
        console.print(f"[red]{exc}[/red]", soft_wrap=True, highlight=False)
        return FAILED_EXIT
    items = [
        ("start", args.start),
        *(("practitioner", p) for p in args.practitioner),
        *(("visit-type", v) for v in args.service_type),
    ]
    if args.count is not None:
        items.append(("_count", str(args.count)))
    try:
        end = args.end or (parse_datetime_param("start", args.start) + timedelta(days=1))
        items.append(("end", end if isinstance(end, str) else end.isoformat()))
        request = build_find_request(split_values(items)).request
    except InvalidParameter as exc:
        console.print(f"[red]{exc}[/red]", soft_wrap=True, highlight=False)
        return USAGE_EXIT
    now = datetime.now(UTC)
    with console.status("reading the cache"), Session(get_engine(settings)) as session:
        explained = explain_offline(
            session,
            request,
            rules=rules,
            catalog=read_catalog(session),
            now=now,
            page_size=settings.find_max_results,
            stale_after=timedelta(seconds=settings.stale_warning_seconds),
        )
    if args.json:
        print_json(
            {
                "offers": explained.offers,
                "offered_slots": explained.offered_slots,
                "reasons": [_reason_json(r) for r in explained.reasons],
            }
        )
        return OK_EXIT
    _print_table(
        explained.reasons, explained.offers, explained.offered_slots, Path(rules_path).name
    )
    return OK_EXIT


def _reason_json(reason: Reason) -> dict[str, object]:
    return {
        "code": reason.code,
        "display": reason.display,
        "schedule": reason.schedule_id,
        "start": reason.start,
        "end": reason.end,
        "slots": len(reason.slot_ids),
        "slot_ids": list(reason.slot_ids),
        "rule": reason.rule,
        "visit_type": reason.visit_type,
        "detail": reason.detail,
    }


def _print_table(reasons: list[Reason], offers: int, offered_slots: int, source: str) -> None:
    from rich.console import Console
    from rich.table import Column, Table

    out = Console()
    table = Table(
        Column("schedule", no_wrap=True),
        Column("from (UTC)", no_wrap=True),
        Column("to", no_wrap=True),
        Column("reason", no_wrap=True),
        "slots",
        Column("rule", no_wrap=True),
        "detail",
        title=f"{offers} offers on {offered_slots} slots; not offered (rules: {source}):",
        title_justify="left",
    )
    for r in reasons:
        ids = ", ".join(r.slot_ids[:LISTED_SLOTS])
        more = len(r.slot_ids) - LISTED_SLOTS
        slots = f"{len(r.slot_ids)}: {ids}" + (f" +{more}" if more > 0 else "") if ids else "-"
        table.add_row(
            r.schedule_id,
            f"{r.start:%Y-%m-%d %H:%M}",
            f"{r.end:%H:%M}" if r.end.date() == r.start.date() else f"{r.end:%Y-%m-%d %H:%M}",
            r.code,
            slots,
            r.rule or "-",
            r.detail,
        )
    if reasons:
        out.print(table)
    else:
        out.print(f"{offers} offers on {offered_slots} slots; every cached slot is offered")


def register(sub: Subcommands) -> None:
    """Add ``explain`` to ``sub``."""
    explain = add_command(
        sub,
        "explain",
        help="why cached slots are not offered: the reason, the rule and the slots",
        description="Compose what $find would offer for a practitioner and a window from"
        " the cache, then list the cached slots that are not offered, grouped by schedule"
        " and time range, with the reason (a code of"
        " http://slotsync.example/fhir/CodeSystem/not-offered), the rule in the rules file"
        " and the slots. The same answer as $find?_explain=true.",
        examples=[
            (
                "slotsync explain --practitioner Practitioner/pr-1 --start 2030-01-08",
                "one day",
            ),
            (
                "slotsync explain --practitioner Practitioner/pr-1 --start 2030-01-08"
                " --end 2030-01-15 --json",
                "a week, for a script",
            ),
        ],
        exits={
            OK_EXIT: "explained (the table may be empty: everything is offered)",
            FAILED_EXIT: "the rules file is invalid or unreadable",
            DEPENDENCY_EXIT: DEPENDENCY_HELP,
        },
    )
    explain.add_argument(
        "--practitioner",
        action="append",
        default=[],
        required=True,
        help="Practitioner/<id>; repeat or comma-separate for several",
    )
    explain.add_argument("--start", required=True, help="FHIR date or dateTime with offset")
    explain.add_argument("--end", help="default: a day after --start")
    explain.add_argument(
        "--service-type",
        action="append",
        default=[],
        help="visit type as system|code (the $find service-type); default: every one",
    )
    explain.add_argument("--count", type=int, help="the $find _count (default: a full page)")
    explain.add_argument("--rules", help="rules file (default: SLOTSYNC_RULES_PATH)")
    explain.add_argument("--json", action="store_true", help=JSON_HELP)
    explain.set_defaults(func=_cmd_explain)
