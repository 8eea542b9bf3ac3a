"""``slotsync serve``, ``worker``, ``beat`` and ``sandbox-ehr``: the long-running processes."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.exit_codes import DEPENDENCY_EXIT, OK_EXIT, USAGE_EXIT
from app.cli.help_text import Subcommands, add_command
from app.cli.output import console

if TYPE_CHECKING:
    from app.settings import Settings


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


def register(sub: Subcommands) -> None:
    """Add ``serve``, ``worker``, ``beat`` and ``sandbox-ehr`` to ``sub``."""
    serve = add_command(
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
    worker = add_command(
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

    beat = add_command(
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
