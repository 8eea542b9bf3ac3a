"""Fixtures: real sandbox child processes (one per flavour per test session) and helpers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox_ehr.process import SandboxProcess, start_sandbox

START_DATE = "2026-11-26"  # a Thursday; the horizon crosses no DST change until March


@pytest.fixture(scope="session")
def stu3() -> Iterator[SandboxProcess]:
    with start_sandbox(
        fhir_version="stu3",
        size=3000,
        seed=7,
        start_date=START_DATE,
        page_size=100,
        hold_seconds=2,
        callback_secret="s3cret",
        extra_args=["--horizon-days", "30"],
    ) as sp:
        yield sp


@pytest.fixture(scope="session")
def r4() -> Iterator[SandboxProcess]:
    with start_sandbox(
        fhir_version="r4",
        size=3000,
        seed=7,
        start_date=START_DATE,
        page_size=100,
        hold_seconds=2,
        extra_args=["--horizon-days", "30"],
    ) as sp:
        yield sp


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
