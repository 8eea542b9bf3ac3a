"""Fixtures: per EHR flavour, a sandbox EHR process, a throwaway PostgreSQL cache and a
``slotsync serve`` process, started once per session and reset before every test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.databases import throwaway_postgres
from benchmarks.stacks import start_api
from sandbox_ehr.process import start_sandbox

from .support import HORIZON_DAYS, Gateway, api_env


def _gateway(flavour: str, logs: Path) -> Iterator[Gateway]:
    with (
        throwaway_postgres(migrated=True) as db_url,
        start_sandbox(
            fhir_version=flavour, size=1500, extra_args=("--horizon-days", str(HORIZON_DAYS))
        ) as sandbox,
    ):
        gateway = Gateway(flavour, sandbox, db_url, api_env(db_url, sandbox, flavour))
        try:
            gateway.apis.append(start_api(gateway.env, log=logs / "api.log", log_level="WARNING"))
            yield gateway
        finally:
            for api in gateway.apis:
                api.stop(timeout=20)
            gateway.engine.dispose()


@pytest.fixture(scope="session")
def _stu3_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from _gateway("stu3", tmp_path_factory.mktemp("stu3"))


@pytest.fixture(scope="session")
def _r4_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from _gateway("r4", tmp_path_factory.mktemp("r4"))


@pytest.fixture
def stu3(_stu3_gateway: Gateway) -> Gateway:
    _stu3_gateway.reset()
    return _stu3_gateway


@pytest.fixture
def r4(_r4_gateway: Gateway) -> Gateway:
    _r4_gateway.reset()
    return _r4_gateway


@pytest.fixture(params=["stu3", "r4"])
def stack(request: pytest.FixtureRequest) -> Gateway:
    """Tests using this run against both EHR flavours."""
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]
