"""End to end with real processes: sandbox EHR -> `slotsync resync` -> PostgreSQL -> API $find.

Every appointment $find offers must be backed by slots the sandbox reports free,
with exactly their times, and every free slot of the window must be offered.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sandbox_ehr.process import start_sandbox
from tests.fhir_checks import assert_avail_bundle
from tests.support import free_port, throwaway_postgres, wait_for_http

pytestmark = pytest.mark.integration

HORIZON_DAYS = 7


def slotsync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[str, str]]:
    with (
        throwaway_postgres() as db_url,
        start_sandbox(size=3000, extra_args=("--horizon-days", str(HORIZON_DAYS))) as sandbox,
    ):
        env = {
            **os.environ,
            "SLOTSYNC_DATABASE_URL": db_url,
            "SLOTSYNC_EHR_BASE_URL": sandbox.base_url,
            "SLOTSYNC_HORIZON_DAYS": str(HORIZON_DAYS),
            "SLOTSYNC_LOAD_WINDOW_DAYS": "2",
        }
        env.pop("SLOTSYNC_REDIS_URL", None)
        slotsync("db", "upgrade", env=env)
        slotsync("resync", env=env)
        port = free_port()
        api = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz")
            yield f"http://127.0.0.1:{port}/fhir", sandbox.control_url
        finally:
            api.terminate()
            api.wait(timeout=20)


def test_find_matches_sandbox_free_slots_exactly(stack):
    api, control = stack
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    end = start + timedelta(days=3)
    window = {"start": start.isoformat(), "end": end.isoformat()}
    truth = httpx.get(f"{control}/truth", params=window, timeout=30).json()["slots"]
    assert 0 < len(truth) <= 1000, "the window must fit in one $find answer"

    resp = httpx.get(f"{api}/Appointment/$find", params={**window, "_count": "1000"}, timeout=30)
    assert resp.status_code == 200
    bundle = resp.json()
    assert_avail_bundle(bundle)
    free = {s["id"]: (s["start"], s["end"]) for s in truth}
    offered = set()
    for entry in bundle["entry"]:
        appt = entry["resource"]
        for ref in appt["slot"]:
            slot_id = ref["reference"].split("/", 1)[1]
            assert slot_id in free, f"{slot_id} offered but not free in the EHR"
        starts = [free[r["reference"].split("/", 1)[1]][0] for r in appt["slot"]]
        ends = [free[r["reference"].split("/", 1)[1]][1] for r in appt["slot"]]
        assert appt["start"] == min(starts) and appt["end"] == max(ends)
        offered.update(r["reference"].split("/", 1)[1] for r in appt["slot"])
    assert bundle["total"] == len(truth)
    assert offered == set(free)


def test_find_by_practitioner_only_returns_that_practitioner(stack):
    api, control = stack
    start = datetime.now(UTC).date() + timedelta(days=1)
    params = {"start": str(start), "end": str(start + timedelta(days=5))}
    resp = httpx.get(
        f"{api}/Appointment/$find", params={**params, "practitioner": "Practitioner/pr-1"}
    )
    assert resp.status_code == 200
    bundle = resp.json()
    truth = httpx.get(f"{control}/truth", params={**params, "schedule": "sch-pr-1"}).json()
    assert bundle["total"] == truth["count"]
    for entry in bundle["entry"]:
        refs = [p["actor"].get("reference") for p in entry["resource"]["participant"]]
        assert "Practitioner/pr-1" in refs
