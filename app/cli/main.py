"""The ``slotsync`` command: one entry point for every process and ops action."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console

from app.cli.exit_codes import (
    DEPENDENCY_EXIT,
    EXIT_CODES,
    FAILED_EXIT,
    INTERRUPTED_EXIT,
    OK_EXIT,
    USAGE_EXIT,
)
from app.settings import Settings, UnsafeSettings, get_settings

if TYPE_CHECKING:
    from app.sync.messages import ResyncRequest

# Messages, progress and errors; stdout carries only what a command reports (with --json:
# one JSON document and nothing else).
console = Console(stderr=True)


# Exit status of `status` and `sync-status`: monitoring and cron act on it.
HEALTH_EXIT = {"ok": 0, "degraded": 1, "down": 2}
HEALTH_EXITS = {
    OK_EXIT: "ok",
    FAILED_EXIT: "degraded: serving, but the cache may differ from the EHR",
    USAGE_EXIT: "down (or bad arguments or settings)",
    DEPENDENCY_EXIT: "the cache database has no schema or cannot be reached",
}


def print_json(data: object) -> None:
    """``data`` as one JSON document on stdout: no colour, no wrapping, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=_json_value) + "\n")
    sys.stdout.flush()


def _json_value(value: object) -> str:
    if isinstance(value, date):  # datetimes too
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from app.cache.migrate import upgrade

    upgrade(settings.effective_database_url)  # alembic logs each migration as it goes
    console.print("[green]database schema is up to date[/green]")
    return OK_EXIT


def _prepare_metrics_dir(settings: Settings, workers: int) -> Path | None:
    """Several API processes share their metrics through a directory that starts empty.

    Returns the directory when this call created it (and so must remove it).
    """
    directory = settings.metrics_multiproc_dir
    created = None
    if directory is None:
        if workers < 2:
            return None
        directory = created = Path(tempfile.mkdtemp(prefix="slotsync-metrics-"))
        # read by prometheus-client in the worker processes uvicorn is about to start
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    _empty_metrics_dir(directory)
    return created


def _empty_metrics_dir(directory: Path) -> None:
    """Create the shared metrics directory, or drop samples an earlier run left in it."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    if settings.embedded and args.workers > 1:
        # each process would run its own in-process tasks and periodic jobs
        console.print(
            "[red]--workers > 1 needs a broker: set SLOTSYNC_REDIS_URL (and a PostgreSQL"
            " SLOTSYNC_DATABASE_URL), or serve embedded mode with one worker[/red]"
        )
        return USAGE_EXIT
    created = _prepare_metrics_dir(settings, args.workers)
    try:
        return _run_uvicorn(args, settings)
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)


def _run_uvicorn(args: argparse.Namespace, settings: Settings) -> int:
    from app.cli.serve import serve

    return serve(
        {
            "app": "app.api.main:create_app",
            "factory": True,
            "host": args.host,
            "port": args.port,
            "log_level": args.log_level,
            # our access log (route templates, no query strings) replaces uvicorn's
            "access_log": False,
            "log_config": None,
            "proxy_headers": True,
            "forwarded_allow_ips": args.forwarded_allow_ips or settings.forwarded_allow_ips,
            "timeout_graceful_shutdown": args.graceful_timeout,
        },
        args.workers,
    )


WORKERS_APP = "workers.celery_app:celery_app"


def _celery_main(argv: list[str], settings: Settings) -> int:
    if settings.embedded:
        console.print(
            "[red]SLOTSYNC_REDIS_URL is not set: in embedded mode tasks run inside "
            "`slotsync demo`/`serve`; a separate worker or beat needs Redis.[/red]"
        )
        return USAGE_EXIT
    # Celery's own command line, given the workers' app by name (as `celery -A` is):
    # the CLI starts the workers without importing their code.
    from celery.bin.celery import celery as celery_command

    celery_command.main(args=["-A", WORKERS_APP, *argv], standalone_mode=False)
    return 0


def _passthrough(celery_args: Sequence[str]) -> list[str]:
    """Celery's own options, written after ``--`` (``slotsync beat -- --schedule=...``)."""
    args = list(celery_args)
    return args[1:] if args[:1] == ["--"] else args


# glibc's allocator, left alone, keeps a heap per thread and serves large buffers (the
# EHR's 1 MB pages) from them, so a worker's memory only ever grows; these settings
# keep it near its working set. Read at process start: the worker re-executes itself.
ALLOCATOR_ENV = {
    "MALLOC_ARENA_MAX": "2",
    "MALLOC_MMAP_THRESHOLD_": "131072",
    "MALLOC_TRIM_THRESHOLD_": "131072",
}


def _with_allocator_settings(extra: dict[str, str] | None = None) -> None:
    """Re-execute with the allocator settings (and ``extra``) when any is missing."""
    wanted = {**ALLOCATOR_ENV, **(extra or {})}
    missing = {k: v for k, v in wanted.items() if k not in os.environ}
    if missing and sys.platform.startswith("linux"):
        os.execve(
            sys.executable,
            [sys.executable, "-m", "app.cli", *sys.argv[1:]],
            {**os.environ, **missing},
        )


def _worker_metrics_env(settings: Settings) -> dict[str, str]:
    """With a worker metrics port, the prefork children share their samples through a
    directory, which must be named before prometheus-client is first imported (the
    worker re-executes itself with it) and start empty."""
    if not settings.worker_metrics_port or settings.metrics_multiproc_dir is not None:
        return {}
    directory = (settings.data_dir / f"worker-metrics-{settings.worker_metrics_port}").resolve()
    _empty_metrics_dir(directory)
    return {"PROMETHEUS_MULTIPROC_DIR": str(directory)}


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    _with_allocator_settings(_worker_metrics_env(settings))
    argv = [
        "worker",
        f"--loglevel={args.log_level}",
        f"--concurrency={args.concurrency}",
        f"--queues={args.queues or settings.worker_queues}",
        f"--pool={args.pool}",
    ]
    return _celery_main(argv + _passthrough(args.celery_args), settings)


def _cmd_beat(args: argparse.Namespace, settings: Settings) -> int:
    argv = ["beat", f"--loglevel={args.log_level}", f"--schedule={args.schedule_file}"]
    return _celery_main(argv + _passthrough(args.celery_args), settings)


def _cmd_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from sandbox_ehr.cli import main as sandbox_main

    return sandbox_main(list(args.sandbox_args))


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


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from app.cli.demo import run_demo

    return run_demo(
        settings,
        host=args.host,
        port=args.port,
        sandbox_port=args.sandbox_port,
        ehr_profile=args.ehr_profile,
    )


COMMON_EXITS = {
    USAGE_EXIT: "bad arguments or settings",
    INTERRUPTED_EXIT: EXIT_CODES[INTERRUPTED_EXIT],
}
DEPENDENCY_HELP = (
    "the cache database has no schema (run `slotsync db upgrade`) or cannot be reached"
)
WIDTH = 88
JSON_HELP = "print one JSON document on stdout, nothing else (no colour, no progress)"


def _epilog(
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


def _fill(text: str) -> str:
    return textwrap.fill(text, WIDTH)


def _command(
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
        description=_fill(description or help[0].upper() + help[1:] + "."),
        epilog=_epilog(examples, exits, other),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slotsync",
        description=_fill(
            "slotsync: one entry point for every process and ops action of the Argonaut"
            " Scheduling server. `slotsync COMMAND --help` shows a command's options, examples"
            " and exit statuses."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_epilog(
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
        + _fill(f"--json (status, sync-status, resync, rules check, config): {JSON_HELP}."),
    )
    parser.add_argument("--log-level", default=None, help="default: SLOTSYNC_LOG_LEVEL")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _command(
        sub,
        "serve",
        help="run the HTTP API (uvicorn)",
        examples=[
            ("slotsync serve", "on 127.0.0.1:8000"),
            ("slotsync serve --host 0.0.0.0 --workers 4", "behind a proxy, 4 processes"),
        ],
        exits={
            OK_EXIT: "stopped (SIGTERM or Ctrl-C)",
            USAGE_EXIT: "bad arguments or settings, e.g. --workers > 1 without SLOTSYNC_REDIS_URL",
            DEPENDENCY_EXIT: "could not start: the port is in use, or the application failed"
            " to start",
        },
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="proxies trusted for X-Forwarded-For/-Proto (comma list of addresses or networks,"
        " '*' for any); default: SLOTSYNC_FORWARDED_ALLOW_IPS (127.0.0.1)",
    )
    serve.add_argument(
        "--graceful-timeout",
        type=int,
        default=20,
        help="seconds in-flight requests get to finish on SIGTERM",
    )
    serve.set_defaults(func=_cmd_serve)

    celery_exits = {
        OK_EXIT: "stopped",
        USAGE_EXIT: "bad arguments or settings, e.g. SLOTSYNC_REDIS_URL unset (embedded mode)",
    }
    worker = _command(
        sub,
        "worker",
        help="run a Celery worker (needs SLOTSYNC_REDIS_URL)",
        examples=[
            ("slotsync worker", "both queues, 3 threads"),
            ("slotsync worker --queues load --concurrency 8", "bulk loads only"),
            ("slotsync worker -- --hostname=w1@%h", "Celery's own options after --"),
        ],
        exits=celery_exits,
        other="Celery's own exit status",
    )
    worker.add_argument("--concurrency", type=int, default=3)
    worker.add_argument("--queues", help="comma-separated: sync (refreshes), load (bulk)")
    worker.add_argument(
        "--pool",
        choices=("prefork", "threads", "solo"),
        default="threads",
        help="threads: one process, I/O-bound tasks overlap (the default; scale out with more"
        " workers); prefork: a process per unit of concurrency",
    )
    worker.add_argument("celery_args", nargs=argparse.REMAINDER)
    worker.set_defaults(func=_cmd_worker)

    beat = _command(
        sub,
        "beat",
        help="run Celery beat: the daily load and periodic checks",
        examples=[
            ("slotsync beat", "exactly one per deployment"),
            ("slotsync beat --schedule-file /var/lib/slotsync/beat", "keep its state there"),
        ],
        exits=celery_exits,
        other="Celery's own exit status",
    )
    beat.add_argument(
        "--schedule-file", default="celerybeat-schedule", help="where beat keeps its state"
    )
    beat.add_argument("celery_args", nargs=argparse.REMAINDER)
    beat.set_defaults(func=_cmd_beat)

    # `slotsync sandbox-ehr ...` goes to the sandbox's own parser (see main), whose help
    # has its examples; this entry names the command in the list above
    sandbox = sub.add_parser(
        "sandbox-ehr",
        help="run the sandbox EHR (see `slotsync sandbox-ehr --help`)",
        add_help=False,
    )
    sandbox.add_argument("sandbox_args", nargs=argparse.REMAINDER)
    sandbox.set_defaults(func=_cmd_sandbox)

    demo = _command(
        sub,
        "demo",
        help="embedded demo: sandbox EHR, load, API on :8000",
        description="Start the sandbox EHR, migrate the SQLite cache, load it (with a progress"
        " bar on a terminal), print curls that work and serve the API until Ctrl-C. What"
        " `make demo` runs.",
        examples=[
            ("slotsync demo", "Argonaut STU3 sandbox"),
            ("slotsync demo --ehr-profile plain-r4", "a generic FHIR R4 server instead"),
            ("slotsync demo --port 8080 --sandbox-port 8180", "other ports"),
        ],
        exits={
            OK_EXIT: "stopped (Ctrl-C or SIGTERM)",
            DEPENDENCY_EXIT: "the cache database cannot be used, or the sandbox EHR did not answer",
        },
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--sandbox-port", type=int, default=8100)
    demo.add_argument(
        "--ehr-profile",
        choices=("sandbox", "plain-r4"),
        default="sandbox",
        help="sandbox: an Argonaut STU3 EHR ($prefetch, $hold/$book, notifications);"
        " plain-r4: a generic FHIR R4 server (Slot search with _count capped at 100, booking"
        " by POST Appointment, no notifications: slotsync polls)",
    )
    demo.set_defaults(func=_cmd_demo)

    resync = _command(
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

    status = _command(
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

    sync_status = _command(
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

    rules = _command(
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
    rules_check = _command(
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
    rules_init = _command(
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

    db = _command(
        sub,
        "db",
        help="database schema",
        examples=[("slotsync db upgrade", "before the first start and after each upgrade")],
        exits={DEPENDENCY_EXIT: "the database cannot be reached"},
    )
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    db_upgrade = _command(
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

    config = _command(
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
