"""Fixtures: per EHR flavour, a sandbox EHR process, a throwaway PostgreSQL cache and a
``slotsync serve`` process, started once per session and reset before every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.cache.migrate import upgrade
from sandbox_ehr.process import start_sandbox
from tests.support import throwaway_postgres

from .support import HORIZON_DAYS, Stack, api_env, start_api


def _stack(flavour: str) -> Iterator[Stack]:
    with (
        throwaway_postgres() as db_url,
        start_sandbox(
            fhir_version=flavour, size=1500, extra_args=("--horizon-days", str(HORIZON_DAYS))
        ) as sandbox,
    ):
        upgrade(db_url)
        stack = Stack(flavour, sandbox, db_url, api_env(db_url, sandbox, flavour))
        stack.apis.append(start_api(stack.env))
        try:
            yield stack
        finally:
            for api in stack.apis:
                api.stop()
            stack.engine.dispose()


@pytest.fixture(scope="session")
def _stu3_stack() -> Iterator[Stack]:
    yield from _stack("stu3")


@pytest.fixture(scope="session")
def _r4_stack() -> Iterator[Stack]:
    yield from _stack("r4")


@pytest.fixture
def stu3(_stu3_stack: Stack) -> Stack:
    _stu3_stack.reset()
    return _stu3_stack


@pytest.fixture
def r4(_r4_stack: Stack) -> Stack:
    _r4_stack.reset()
    return _r4_stack


@pytest.fixture(params=["stu3", "r4"])
def stack(request: pytest.FixtureRequest) -> Stack:
    """Tests using this run against both EHR flavours."""
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]
