"""``slotsync demo``: the embedded default, end to end, with nothing but Python.

Starts the sandbox EHR as a child process, migrates the SQLite cache, runs the
initial load in process, prints a working ``curl`` and serves the API until
Ctrl-C, which stops the sandbox too.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.console import Console

from app.cli.exit_codes import DEPENDENCY_EXIT, OK_EXIT
from app.cli.help_text import Subcommands, add_command
from app.settings import DEMO_API_KEY, DEV_WEBHOOK_SECRET, Settings

console = Console(stderr=True)

DEMO_SIZE = 20_000
OFFICE_VISIT = "http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type%7Coffice-visit"


def demo_api_key(settings: Settings) -> str | None:
    """The first configured API key that may call ``$find`` (the demo key by default)."""
    from app.api.auth import APPOINTMENT_READ, scope_grants

    for key, scopes in settings.api_keys.items():
        if scope_grants(scopes, APPOINTMENT_READ):
            return key
    return None


def slotsync_command() -> str:
    """How to run this installation's ``slotsync`` from here: plain when the shell finds it,
    else by its path, e.g. ``.venv/bin/slotsync`` after ``make demo`` (which does not
    activate the virtualenv, and another ``slotsync`` may come first on PATH)."""
    script = Path(sys.prefix) / "bin" / "slotsync"
    if not script.exists():
        return "slotsync"  # not installed as a script here: the PATH's is the best guess
    found = shutil.which("slotsync")
    if found and Path(found).resolve() == script.resolve():
        return "slotsync"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def demo_banner(settings: Settings, *, host: str, port: int, start: date, end: date) -> str:
    """What to type next: the credentials in use and curls that pass them.

    Only development defaults are printed; a key or secret the operator configured
    is never echoed.
    """
    base = f"http://{host}:{port}"
    key = demo_api_key(settings)
    if key == DEMO_API_KEY:
        header = f"-H 'X-API-Key: {key}' "
        creds = (
            f"Demo credentials (development defaults, never expose them): API key "
            f"[bold]{key}[/bold] with scopes {' '.join(settings.api_keys[key])}"
        )
    elif key:
        header = '-H "X-API-Key: $SLOTSYNC_KEY" '
        creds = "Credentials: an API key from SLOTSYNC_API_KEYS (not shown; export SLOTSYNC_KEY)"
    else:
        header = ""
        creds = "[red]No API key may read appointments: set SLOTSYNC_API_KEYS[/red]"
    secret = settings.webhook_secret.get_secret_value()
    webhook = (
        f"Webhook secret (development default): {secret}\n" if secret == DEV_WEBHOOK_SECRET else ""
    )
    find = f"{base}/fhir/Appointment/$find?start={start}&end={end}"
    return (
        f"\n[bold]slotsync is ready.[/bold] {creds}\n{webhook}"
        "Ask for appointments with:\n\n"
        f"  curl -s {header}'{find}&_count=5'\n\n"
        f"  curl -s {header}'{find}&visit-type={OFFICE_VISIT}&practitioner=Practitioner/pr-1"
        "&_count=5'\n\n"
        f"Operations: curl -s {header}{base}/metrics · {base}/readyz ·"
        f" {slotsync_command()} status\n\n"
        "Press Ctrl-C to stop (the sandbox EHR stops with it).\n"
    )


PLAIN_R4_MAX_COUNT = 100


def run_demo(
    settings: Settings, *, host: str, port: int, sandbox_port: int, ehr_profile: str = "sandbox"
) -> int:
    import uvicorn

    from app.api.main import create_app
    from app.cache.migrate import upgrade
    from app.cli.progress import run_with_progress
    from app.runtime import sync_context
    from app.sync.messages import ResyncRequest
    from sandbox_ehr.process import start_sandbox

    reach = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    plain = ehr_profile == "plain-r4"
    settings = settings.model_copy(
        update={
            "ehr_base_url": f"http://127.0.0.1:{sandbox_port}/fhir",
            "ehr_fhir_version": "r4" if plain else "stu3",
            # where the sandbox sends its notifications: this very API
            "public_base_url": f"http://{reach}:{port}",
            # a generic server: no notifications (slotsync polls), a capped page size
            **({"ehr_subscriptions": False, "ehr_page_size": PLAIN_R4_MAX_COUNT} if plain else {}),
        }
    )
    console.print(f"cache: {settings.effective_database_url}")
    upgrade(settings.effective_database_url)
    console.print(f"starting the sandbox EHR on 127.0.0.1:{sandbox_port} ...")
    with start_sandbox(
        port=sandbox_port,
        size=DEMO_SIZE,
        profile=ehr_profile,
        max_count=PLAIN_R4_MAX_COUNT if plain else None,
        extra_args=("--horizon-days", str(settings.horizon_days)),
    ) as sandbox:
        console.print(f"sandbox EHR ready at {sandbox.base_url}")
        run_with_progress(sync_context(settings), ResyncRequest(kind="initial-load"))
        start = datetime.now(UTC).date() + timedelta(days=1)
        end = start + timedelta(days=7)
        banner = demo_banner(settings, host=host, port=port, start=start, end=end)
        console.print(banner, soft_wrap=True)  # long curls must stay copy-pasteable
        # uvicorn re-raises SIGTERM after its graceful shutdown; turning it into SystemExit
        # lets this `with` block stop the sandbox instead of orphaning it.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        uvicorn.run(
            create_app(settings), host=host, port=port, log_level="warning", access_log=False
        )
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    return run_demo(
        settings,
        host=args.host,
        port=args.port,
        sandbox_port=args.sandbox_port,
        ehr_profile=args.ehr_profile,
    )


def register(sub: Subcommands) -> None:
    """Add ``demo`` to ``sub``."""
    demo = add_command(
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
