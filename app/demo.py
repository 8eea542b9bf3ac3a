"""``slotsync demo``: the embedded default, end to end, with nothing but Python.

Starts the sandbox EHR as a child process, migrates the SQLite cache, runs the
initial load in process, prints a working ``curl`` and serves the API until
Ctrl-C, which stops the sandbox too.
"""

from __future__ import annotations

import signal
import sys
from datetime import UTC, datetime, timedelta

from rich.console import Console

from app.settings import Settings

console = Console(stderr=True)

DEMO_SIZE = 20_000


def run_demo(settings: Settings, *, host: str, port: int, sandbox_port: int) -> int:
    import uvicorn

    from app.api.main import create_app
    from app.cache.migrate import upgrade
    from app.progress import run_with_progress
    from app.runtime import sync_context
    from app.sync.runs import ResyncRequest
    from sandbox_ehr.process import start_sandbox

    settings = settings.model_copy(
        update={"ehr_base_url": f"http://127.0.0.1:{sandbox_port}/fhir", "ehr_fhir_version": "stu3"}
    )
    console.print(f"cache: {settings.effective_database_url}")
    upgrade(settings.effective_database_url)
    console.print(f"starting the sandbox EHR on 127.0.0.1:{sandbox_port} ...")
    with start_sandbox(
        port=sandbox_port,
        size=DEMO_SIZE,
        extra_args=("--horizon-days", str(settings.horizon_days)),
    ) as sandbox:
        console.print(f"sandbox EHR ready at {sandbox.base_url}")
        run_with_progress(sync_context(settings), ResyncRequest(kind="initial-load"))
        start = datetime.now(UTC).date() + timedelta(days=1)
        end = start + timedelta(days=7)
        base = f"http://{host}:{port}/fhir"
        visit = "http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type%7Coffice-visit"
        console.print(
            "\n[bold]slotsync is ready.[/bold] Ask for appointments with:\n\n"
            f"  curl -s '{base}/Appointment/$find?start={start}&end={end}&_count=5'\n\n"
            f"  curl -s '{base}/Appointment/$find?start={start}&end={end}"
            f"&visit-type={visit}&practitioner=Practitioner/pr-1&_count=5'\n\n"
            "Press Ctrl-C to stop (the sandbox EHR stops with it).\n"
        )
        # uvicorn re-raises SIGTERM after its graceful shutdown; turning it into SystemExit
        # lets this `with` block stop the sandbox instead of orphaning it.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
    return 0
