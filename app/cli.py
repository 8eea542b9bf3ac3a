"""The ``slotsync`` command: one entry point for every process and ops action."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from app.settings import Settings, get_settings

console = Console(stderr=True)


def _cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from app.cache.migrate import upgrade

    upgrade(settings.effective_database_url)
    console.print("[green]database schema is up to date[/green]")
    return 0


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    uvicorn.run(
        "app.api.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=args.access_log,
        timeout_graceful_shutdown=20,
    )
    return 0


def _celery_main(argv: list[str], settings: Settings) -> int:
    if settings.embedded:
        console.print(
            "[red]SLOTSYNC_REDIS_URL is not set: in embedded mode tasks run inside "
            "`slotsync demo`/`serve`; a separate worker or beat needs Redis.[/red]"
        )
        return 2
    from workers.celery_app import celery_app

    celery_app.start(argv)
    return 0


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    argv = ["worker", f"--loglevel={args.log_level}", f"--concurrency={args.concurrency}"]
    return _celery_main(argv + list(args.celery_args), settings)


def _cmd_beat(args: argparse.Namespace, settings: Settings) -> int:
    return _celery_main(["beat", f"--loglevel={args.log_level}", *args.celery_args], settings)


def _cmd_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from sandbox_ehr.cli import main as sandbox_main

    return sandbox_main(list(args.sandbox_args))


def _cmd_resync(args: argparse.Namespace, settings: Settings) -> int:
    if args.enqueue:
        if settings.embedded:
            console.print("[red]--enqueue needs SLOTSYNC_REDIS_URL (a broker)[/red]")
            return 2
        from workers.tasks import initial_load_task

        result = initial_load_task.delay(args.horizon_days)
        console.print(f"initial load queued as task {result.id}")
        return 0
    from app.progress import run_load_with_progress

    run_load_with_progress(settings, args.horizon_days)
    return 0


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy.orm import Session

    from app.cache import repository as repo
    from app.runtime import get_engine

    with Session(get_engine(settings)) as session:
        slots = repo.count_slots(session)
        schedules = len(repo.schedules_by_id(session))
        runs = repo.recent_runs(session, args.limit)
    out = Console()
    out.print(f"cache: {slots} free slots in {schedules} schedules")
    table = Table(
        "run",
        "kind",
        "scope",
        "started",
        "finished",
        "status",
        "seen",
        "written",
        "removed",
        "error",
    )
    for run in runs:
        table.add_row(
            str(run.id),
            run.kind,
            run.scope or "",
            run.started_at.isoformat(timespec="seconds"),
            run.finished_at.isoformat(timespec="seconds") if run.finished_at else "",
            run.status,
            str(run.slots_seen),
            str(run.slots_upserted),
            str(run.slots_deleted),
            (run.error or "")[:60],
        )
    out.print(table)
    return 0


def _cmd_rules_check(args: argparse.Namespace, settings: Settings) -> int:
    """Validate a rules file, then count what it would offer from the current cache."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy.orm import Session

    from app.cache import repository as repo
    from app.runtime import get_engine
    from rules.check import format_report, summarise
    from rules.loader import RulesError, load_rules

    try:
        rules = load_rules(args.file)
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 1
    now = datetime.now(UTC)
    horizon = max(rules.effective(vt).max_horizon_days for vt in rules.visit_types)
    with Session(get_engine(settings)) as session:
        slots = repo.free_slots(
            session, now - timedelta(hours=12), now + timedelta(days=horizon + 1)
        )
        schedules = repo.schedules_by_id(session)
        actors = repo.actors_by_ref(session)
    print(format_report(rules, summarise(rules, slots, schedules, actors, now), source=args.file))
    print(f"(against {len(slots)} cached free slots in {len(schedules)} schedules)")
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from app.demo import run_demo

    return run_demo(settings, host=args.host, port=args.port, sandbox_port=args.sandbox_port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slotsync", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--access-log", action="store_true")
    serve.set_defaults(func=_cmd_serve)

    worker = sub.add_parser("worker", help="run a Celery worker (needs SLOTSYNC_REDIS_URL)")
    worker.add_argument("--concurrency", type=int, default=2)
    worker.add_argument("celery_args", nargs=argparse.REMAINDER)
    worker.set_defaults(func=_cmd_worker)

    beat = sub.add_parser("beat", help="run Celery beat: the daily load and periodic checks")
    beat.add_argument("celery_args", nargs=argparse.REMAINDER)
    beat.set_defaults(func=_cmd_beat)

    sandbox = sub.add_parser(
        "sandbox-ehr",
        help="run the sandbox EHR (see `slotsync sandbox-ehr --help`)",
        add_help=False,
    )
    sandbox.add_argument("sandbox_args", nargs=argparse.REMAINDER)
    sandbox.set_defaults(func=_cmd_sandbox)

    demo = sub.add_parser("demo", help="embedded demo: sandbox EHR, load, API on :8000")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--sandbox-port", type=int, default=8100)
    demo.set_defaults(func=_cmd_demo)

    resync = sub.add_parser("resync", help="reload the whole horizon from the EHR now")
    resync.add_argument("--horizon-days", type=int, default=None)
    resync.add_argument("--enqueue", action="store_true", help="queue it for the workers")
    resync.set_defaults(func=_cmd_resync)

    status = sub.add_parser("status", help="cache size and recent sync runs")
    status.add_argument("--limit", type=int, default=10)
    status.set_defaults(func=_cmd_status)

    rules = sub.add_parser("rules", help="business rules")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    rules_check = rules_sub.add_parser(
        "check", help="validate a rules file and summarise what it offers from the cache"
    )
    rules_check.add_argument("file")
    rules_check.set_defaults(func=_cmd_rules_check)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_upgrade = db_sub.add_parser("upgrade", help="apply Alembic migrations")
    db_upgrade.set_defaults(func=_cmd_db_upgrade)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # pass the sandbox its own arguments untouched (including --help)
    if argv[:1] == ["sandbox-ehr"]:
        from sandbox_ehr.cli import main as sandbox_main

        return sandbox_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    args.log_level = args.log_level.lower()
    return int(args.func(args, get_settings()) or 0)


if __name__ == "__main__":
    sys.exit(main())
