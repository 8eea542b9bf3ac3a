"""``slotsync resync``, ``status`` and ``sync-status``: load from the EHR, watch the sync."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from rich.console import Console

from app.cli.exit_codes import DEPENDENCY_EXIT, FAILED_EXIT, OK_EXIT, USAGE_EXIT
from app.cli.help_text import JSON_HELP, Subcommands, add_command
from app.cli.output import console, print_json

if TYPE_CHECKING:
    from app.settings import Settings
    from app.sync.messages import ResyncRequest


# Exit status of `status` and `sync-status`: monitoring and cron act on it.
HEALTH_EXIT = {"ok": 0, "degraded": 1, "down": 2}
HEALTH_EXITS = {
    OK_EXIT: "ok",
    FAILED_EXIT: "degraded: serving, but the cache may differ from the EHR",
    USAGE_EXIT: "down (or bad arguments or settings)",
    DEPENDENCY_EXIT: "the cache database has no schema or cannot be reached",
}


def _resync_request(args: argparse.Namespace) -> ResyncRequest:
    from app.fhir.parse import parse_instant
    from app.sync.messages import ResyncRequest
    from app.sync.windows import horizon, utcnow

    start = parse_instant(args.start, "--start") if args.start else None
    end = parse_instant(args.end, "--end") if args.end else None
    everything = not args.schedule and not args.actor and start is None and end is None
    if args.horizon_days and end is None:
        end = horizon(utcnow(), args.horizon_days)[1]
    ids = tuple(s.removeprefix("Schedule/") for s in args.schedule) if args.schedule else None
    return ResyncRequest(
        kind="initial-load" if everything else "resync",
        schedule_ids=ids,
        actor=args.actor,
        start=start,
        end=end,
    )


def _cmd_resync(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict

    from app.cli.progress import RunTimeout, run_with_progress, watch_run
    from app.fhir.parse import FhirParseError
    from app.runtime import dispatcher, sync_context
    from app.sync.feed import ensure_subscription

    try:
        request = _resync_request(args)
    except FhirParseError as exc:
        console.print(f"[red]{exc}[/red]")
        return USAGE_EXIT
    ctx = sync_context(settings)
    if args.subscribe:
        state = ensure_subscription(ctx)
        if state.endpoint:
            colour = "red" if state.error else "green"
            console.print(
                f"[{colour}]subscription {state.ehr_id or '-'} {state.status}[/{colour}]"
                f" -> {state.endpoint} {state.error or ''}"
            )
        else:
            console.print("[yellow]SLOTSYNC_PUBLIC_BASE_URL unset: no subscription, polling[/]")
    token = None
    if settings.embedded or not args.enqueue:
        result = run_with_progress(ctx, request, quiet=args.json)
    else:
        token = dispatcher(settings).resync(request)
        if not args.json:
            console.print(f"resync queued (token {token})")
        if args.no_wait:
            if args.json:
                print_json({"token": token, "status": "queued"})
            return OK_EXIT
        try:
            result = watch_run(ctx, token, timeout=args.timeout, quiet=args.json)
        except RunTimeout as exc:
            console.print(f"[red]{exc}: it goes on; follow it with `slotsync sync-status`[/red]")
            if args.json:
                print_json({"token": token, "status": "timeout"})
            return FAILED_EXIT
    if args.json:
        print_json({**asdict(result), **({"token": token} if token else {})})
    return OK_EXIT if result.status == "ok" else FAILED_EXIT


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from app.cli.status_report import print_status

    return print_status(settings, runs=args.limit, lagging=args.lagging, as_json=args.json)


def _cmd_sync_status(args: argparse.Namespace, settings: Settings) -> int:
    from rich.table import Table
    from sqlalchemy.orm import Session

    from app.runtime import get_engine
    from app.sync.status import sync_status
    from app.sync.windows import utcnow

    with Session(get_engine(settings)) as session:
        report = sync_status(
            session,
            now=utcnow(),
            settings=settings,
            schedule_ids=args.schedule or None,
            limit=args.limit,
        )
    overall = report["overall"]
    code = HEALTH_EXIT[overall["health"]]
    if args.json:
        print_json(report)
        return code
    out = Console()
    colour = {"ok": "green", "degraded": "yellow", "down": "bold red"}[overall["health"]]
    out.print(f"sync: [{colour}]{overall['health']}[/{colour}]")
    for problem in overall["problems"]:
        out.print(f"  - {problem}")
    out.print(
        f"cache: {overall['slots_cached']} free slots in {overall['schedules']} schedules;"
        f" EHR feed: [bold]{overall['feed_state']}[/bold]"
    )
    last = overall["last_complete_full_load"]
    out.print(f"last complete full load: {last['finished_at'] if last else 'never'}")
    _print_uncovered(out, overall["uncovered_schedules"])
    for feed in overall["feeds"]:
        out.print(
            f"feed {feed['id']}: subscription {feed['ehr_id'] or '-'} {feed['status']},"
            f" {feed['feed_state']}, last heard {feed['last_heard_at'] or 'never'},"
            f" last polled {feed['last_polled_at'] or 'never'}"
            + (f", error: {feed['last_error']}" if feed["last_error"] else "")
        )
    runs = Table("run", "kind", "scope", "started", "status", "chunks", "seen", "written", "error")
    for run in overall["running"] + [r for r in report["recent_runs"] if r["status"] != "running"]:
        runs.add_row(
            str(run["id"]),
            run["kind"],
            (run["scope"] or "")[:30],
            run["started_at"] or "",
            run["status"],
            f"{run['chunks_done']}+{run['chunks_failed']}/{run['chunks_total']}",
            str(run["slots_seen"]),
            str(run["slots_upserted"]),
            (run["error"] or "")[:50],
        )
    out.print(runs)
    if args.schedules or args.schedule:
        table = Table("schedule", "slots", "last confirmed", "last error")
        for row in report["schedules"]:
            table.add_row(
                row["id"],
                str(row["slots_cached"]),
                row["last_confirmed_at"] or "never",
                (row["last_error"] or "")[:60],
            )
        out.print(table)
    return code


def _print_uncovered(out: Console, uncovered: dict[str, Any]) -> None:
    """The schedules the rules in force leave without offers (see `rules check`)."""
    if uncovered["count"] is None:
        out.print(f"[yellow]rules file {uncovered['rules']} unreadable: coverage unknown[/]")
        return
    out.print(f"schedules no rule covers: {uncovered['count']}")
    for item in uncovered["schedules"]:
        who = f" ({item['actor']})" if item["actor"] else ""
        out.print(f"  - {item['id']}{who}: {item['reason']}", highlight=False)
    if uncovered["truncated"]:
        out.print(f"  ... see `slotsync rules check {uncovered['rules']}` for all")


def register(sub: Subcommands) -> None:
    """Add ``resync``, ``status`` and ``sync-status`` to ``sub``."""
    resync = add_command(
        sub,
        "resync",
        help="reload from the EHR now: everything, or some schedules / an actor",
        description="Reload from the EHR now: everything (a full load), or some schedules, an"
        " actor's schedules or a window. Runs here, or with --enqueue on the Celery workers;"
        " a progress bar on a terminal, one summary line otherwise.",
        examples=[
            ("slotsync resync", "everything, over the horizon"),
            ("slotsync resync --schedule sch-1 --schedule sch-2", "two schedules"),
            ("slotsync resync --actor Practitioner/pr-1 --start 2025-03-01 --end 2025-03-08", ""),
            ("slotsync resync --enqueue --no-wait", "queue it for the workers"),
            ("slotsync resync --json", "the run's summary as JSON"),
        ],
        exits={
            OK_EXIT: "the run finished ok (with --no-wait: it was queued)",
            FAILED_EXIT: "the run failed (some chunks did not load: see `slotsync sync-status`),"
            " or did not finish within --timeout",
            USAGE_EXIT: "bad arguments (e.g. an unreadable --start) or settings",
            DEPENDENCY_EXIT: "the EHR, Redis or the cache database cannot be used (no schema:"
            " run `slotsync db upgrade`)",
        },
    )
    resync.add_argument("--schedule", action="append", default=[], help="Schedule id (repeat)")
    resync.add_argument("--actor", help="all schedules of e.g. Practitioner/pr-1")
    resync.add_argument("--start", help="window start (FHIR date or dateTime)")
    resync.add_argument("--end", help="window end (FHIR date or dateTime)")
    resync.add_argument("--horizon-days", type=int, default=None)
    resync.add_argument("--subscribe", action="store_true", help="create/renew the Subscription")
    resync.add_argument("--enqueue", action="store_true", help="run it on the Celery workers")
    resync.add_argument("--no-wait", action="store_true", help="with --enqueue: do not watch it")
    resync.add_argument("--timeout", type=float, default=3600.0, help="seconds to watch")
    resync.add_argument("--json", action="store_true", help=JSON_HELP)
    resync.set_defaults(func=_cmd_resync)

    status = add_command(
        sub,
        "status",
        help="sync health at a glance (exit status 0 ok, 1 degraded, 2 down)",
        description="Sync health at a glance: one verdict per concern (database, broker, full"
        " load, freshness, sync work, sync errors, cache), the most lagging schedules and the"
        " latest runs. The exit status is the verdict, for cron and monitoring.",
        examples=[
            ("slotsync status", ""),
            ("slotsync status --limit 20 --lagging 10", "more runs and schedules"),
            ("slotsync status --json | jq .health", "for a script"),
        ],
        exits=HEALTH_EXITS,
    )
    status.add_argument("--limit", type=int, default=10, help="recent runs to show")
    status.add_argument("--lagging", type=int, default=5, help="most lagging schedules to show")
    status.add_argument("--json", action="store_true", help=JSON_HELP)
    status.set_defaults(func=_cmd_status)

    sync_status = add_command(
        sub,
        "sync-status",
        help="the sync in detail: feed, runs with progress, per-schedule freshness",
        description="The sync in detail: the EHR feed, the runs with their progress, per-schedule"
        " freshness and the schedules no rule covers (as GET /admin/sync-status).",
        examples=[
            ("slotsync sync-status", ""),
            ("slotsync sync-status --schedules", "every schedule's freshness"),
            ("slotsync sync-status --schedule sch-1 --json", "one schedule, as JSON"),
        ],
        exits=HEALTH_EXITS,
    )
    sync_status.add_argument("--schedule", action="append", default=[], help="only these schedules")
    sync_status.add_argument("--schedules", action="store_true", help="list every schedule")
    sync_status.add_argument("--limit", type=int, default=1000)
    sync_status.add_argument("--json", action="store_true", help=JSON_HELP)
    sync_status.set_defaults(func=_cmd_sync_status)
