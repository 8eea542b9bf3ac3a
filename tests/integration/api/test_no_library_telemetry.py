"""FastAPI's own OpenTelemetry stays off, whatever the process's OpenTelemetry setup.

FastAPI (0.165 on) traces every request by default as soon as any global tracer
provider is set (an operator's auto-instrumentation sets one), with ``url.query`` as
a span attribute: a ``$find``'s patient and birthdate would leave in traces. Our
observability is explicit (:mod:`app.observability`); this checks the library's is
not on by default, and that ``FASTAPI_OTEL_AUTO_CONFIGURE`` does not turn it on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

PROGRAM = """
import json, sys
from opentelemetry import trace
from opentelemetry.trace import NoOpTracer, TracerProvider

started = []

class RecordingTracer(NoOpTracer):
    def start_span(self, name, *args, **kwargs):
        started.append(name)
        return super().start_span(name, *args, **kwargs)

    def start_as_current_span(self, name, *args, **kwargs):
        started.append(name)
        return super().start_as_current_span(name, *args, **kwargs)

class RecordingProvider(TracerProvider):
    def get_tracer(self, *args, **kwargs):
        return RecordingTracer()

trace.set_tracer_provider(RecordingProvider())

from fastapi.testclient import TestClient
from app.api.main import create_app
from app.settings import DEMO_API_KEY, Settings

app = create_app(Settings(database_url=sys.argv[1]))
with TestClient(app) as client:
    client.get("/healthz")
    client.get(
        "/fhir/Appointment/$find",
        params={"start": "2030-01-07", "end": "2030-01-08", "patient": "Patient/p-1"},
        headers={"X-API-Key": DEMO_API_KEY},
    )
print(json.dumps(started))
"""


def test_requests_start_no_library_spans_under_a_global_tracer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cache.sqlite3'}"
    env = {**os.environ, "FASTAPI_OTEL_AUTO_CONFIGURE": "true"}
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
