"""Fixtures: real sandbox child processes (one per flavour per test session, reset before
each test) and a real local HTTP receiver for notifications."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from sandbox_ehr.process import SandboxProcess, start_sandbox

START_DATE = "2026-11-26"  # a Thursday; the 30-day horizon crosses no DST change
SECRET = "s3cret"


def _start(flavour: str) -> SandboxProcess:
    return start_sandbox(
        fhir_version=flavour,
        size=3000,
        seed=7,
        start_date=START_DATE,
        page_size=100,
        callback_secret=SECRET,
        extra_args=["--horizon-days", "30", "--heartbeat-seconds", "30"],
    )


@pytest.fixture(scope="session")
def _stu3_process() -> Iterator[SandboxProcess]:
    with _start("stu3") as sp:
        yield sp


@pytest.fixture(scope="session")
def _r4_process() -> Iterator[SandboxProcess]:
    with _start("r4") as sp:
        yield sp


def _fresh(sp: SandboxProcess) -> SandboxProcess:
    for sub in httpx.get(f"{sp.base_url}/Subscription").json().get("entry", []):
        httpx.delete(f"{sp.base_url}/Subscription/{sub['resource']['id']}")
    httpx.post(f"{sp.control_url}/config", json={"hold_seconds": 300, "page_size": 100})
    assert httpx.post(f"{sp.control_url}/reset").status_code == 200
    return sp


@pytest.fixture
def stu3(_stu3_process: SandboxProcess) -> SandboxProcess:
    return _fresh(_stu3_process)


@pytest.fixture
def r4(_r4_process: SandboxProcess) -> SandboxProcess:
    return _fresh(_r4_process)


@pytest.fixture(params=["stu3", "r4"])
def ehr(request: pytest.FixtureRequest) -> SandboxProcess:
    """Each test using this runs against both flavours."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client


def follow(http: httpx.Client, url: str, params: Any = None) -> tuple[list[dict], list[dict]]:
    """Every page of a search: (pages, all entries)."""
    pages, entries = [], []
    response = http.get(url, params=params)
    while True:
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        entries.extend(page.get("entry", []))
        nxt = [link["url"] for link in page.get("link", []) if link["relation"] == "next"]
        if not nxt:
            return pages, entries
        response = http.get(nxt[0])


def flavour_of(sp: SandboxProcess) -> str:
    return httpx.get(f"{sp.control_url}/config").json()["fhirVersion"]


@dataclass
class Receiver:
    """A real HTTP server recording POSTs; answers ``fail_next`` requests with 503 first."""

    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_next: int = 0
    event: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[tuple[dict[str, str], bytes]]:
        with self.event:
            assert self.event.wait_for(lambda: predicate(self.received), timeout), self.received
            return list(self.received)

    def of_type(self, kind: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in self.received if h.get("x-notification-type") == kind]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            rec = box[0]
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with rec.event:
                if rec.fail_next > 0:
                    rec.fail_next -= 1
                    self.send_response(503)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                rec.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                rec.event.notify_all()
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box[0]
    server.shutdown()
    server.server_close()
    thread.join(5)
