"""``slotsync sandbox-ehr`` / ``python -m sandbox_ehr``: run the sandbox EHR with uvicorn."""

from __future__ import annotations

import argparse
from datetime import date
from typing import Literal

from sandbox_ehr.config import PROFILES, SandboxConfig

EPILOG = """\
examples:
  slotsync sandbox-ehr                                   # Argonaut STU3 on 127.0.0.1:8100
  slotsync sandbox-ehr --profile plain-r4 --size 20000   # a generic R4 server, more slots
  slotsync sandbox-ehr --seed 7 --start-date 2025-03-03  # the same data every run

exit status:
  0     stopped (Ctrl-C or SIGTERM)
  2     bad arguments
  3     could not start (e.g. the port is in use)
  130   interrupted (Ctrl-C)"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="slotsync sandbox-ehr",
        description="A synthetic FHIR scheduling EHR (Argonaut STU3, R4, or a generic R4\n"
        "server) for demos, tests and benchmarks. FHIR base: http://HOST:PORT/fhir;\n"
        "control API: http://HOST:PORT/_sandbox",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument(
        "--fhir-version",
        choices=("stu3", "r4"),
        default=None,
        help="default: stu3, or r4 with --profile plain-r4",
    )
    p.add_argument(
        "--profile",
        choices=PROFILES,
        default="sandbox",
        help="sandbox: Argonaut operations, slots follow appointments, subscriptions; "
        "plain-r4: a generic FHIR R4 server (implies --fhir-version r4)",
    )
    p.add_argument(
        "--max-count",
        type=int,
        default=None,
        help="refuse searches whose _count exceeds this (400); default: 100 with "
        "--profile plain-r4, otherwise _count is capped silently",
    )
    p.add_argument("--size", type=int, default=5000, help="approximate total number of slots")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--horizon-days", type=int, default=90)
    p.add_argument(
        "--start-date",
        type=date.fromisoformat,
        default=None,
        help="first day of slots, YYYY-MM-DD (default: today, UTC)",
    )
    p.add_argument("--page-size", type=int, default=500, help="default _count of searches")
    p.add_argument("--hold-seconds", type=int, default=300, help="how long a $hold lasts")
    p.add_argument(
        "--callback-secret",
        default=None,
        help="bearer token sent to subscribers whose Subscription lists no header",
    )
    p.add_argument(
        "--heartbeat-seconds",
        type=int,
        default=60,
        help="heartbeat period for subscriptions that do not state one",
    )
    p.add_argument("--log-level", default="warning")
    return p


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    kwargs = {}
    if args.start_date is not None:
        kwargs["start_date"] = args.start_date
    fhir_version: Literal["stu3", "r4"] = args.fhir_version or (
        "r4" if args.profile == "plain-r4" else "stu3"
    )
    return SandboxConfig(
        host=args.host,
        port=args.port,
        fhir_version=fhir_version,
        profile=args.profile,
        max_count=args.max_count,
        size=args.size,
        seed=args.seed,
        horizon_days=args.horizon_days,
        page_size=args.page_size,
        hold_seconds=args.hold_seconds,
        callback_secret=args.callback_secret,
        heartbeat_seconds=args.heartbeat_seconds,
        **kwargs,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    import uvicorn

    from sandbox_ehr.app import create_app

    app = create_app(config)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    return 0
