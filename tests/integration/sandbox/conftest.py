"""Fixtures: real sandbox child processes (one per flavour per test session, reset before
each test) and a real local HTTP receiver for notifications."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox_ehr.process import SandboxProcess, start_sandbox
from tests.receiver import Receiver, receiving

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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as rec:
        yield rec
