"""End to end with real processes: sandbox EHR -> `slotsync resync` -> PostgreSQL -> API $find.

Every appointment $find offers must be backed by slots the sandbox reports free,
with exactly their times, and every free slot of the window must be offered.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import httpx
import pytest

from app.settings import DEMO_API_KEY
from benchmarks.databases import throwaway_postgres
from benchmarks.processes import process_env, run_slotsync
from benchmarks.stacks import start_api
from sandbox_ehr.process import start_sandbox
from tests.fhir_checks import assert_avail_bundle

HORIZON_DAYS = 7
AUTH = {"X-API-Key": DEMO_API_KEY}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with (
        throwaway_postgres() as db_url,
        start_sandbox(size=3000, extra_args=("--horizon-days", str(HORIZON_DAYS))) as sandbox,
    ):
        env = process_env(
            {
                "SLOTSYNC_DATABASE_URL": db_url,
                "SLOTSYNC_EHR_BASE_URL": sandbox.base_url,
                "SLOTSYNC_HORIZON_DAYS": str(HORIZON_DAYS),
                "SLOTSYNC_LOAD_WINDOW_DAYS": "2",
            }
        )
        run_slotsync("db", "upgrade", env=env, check=True)
        run_slotsync("resync", env=env, check=True)
        api = start_api(env, log=tmp_path_factory.mktemp("api") / "api.log")
        try:
            yield f"{api.url}/fhir", sandbox.control_url
        finally:
            api.stop(timeout=20)


def appointments(bundle):
    return [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]


def test_find_offers_only_what_the_ehr_has_free(stack):
    """Soundness end to end: each offer's slots are free in the EHR and cover its span."""
    api, control = stack
    start = datetime.now(UTC).date() + timedelta(days=1)
    window = {"start": str(start), "end": str(start + timedelta(days=HORIZON_DAYS - 2))}
    truth = httpx.get(f"{control}/truth", params=window, timeout=30).json()["slots"]
    free = {s["id"]: s for s in truth}
    resp = httpx.get(
        f"{api}/Appointment/$find", params={**window, "_count": "500"}, headers=AUTH, timeout=30
    )
    assert resp.status_code == 200
    bundle = resp.json()
    assert_avail_bundle(bundle)
    offers = appointments(bundle)
    assert offers, "the example rules should offer something in the sandbox organisation"
    visit_types = set()
    for appt in offers:
        slots = [free.get(r["reference"].split("/", 1)[1]) for r in appt["slot"]]
        assert all(slots), f"{appt['id']} uses a slot the EHR does not report free"
        practitioner = next(
            p["actor"]["reference"]
            for p in appt["participant"]
            if p["actor"].get("reference", "").startswith("Practitioner/")
        )
        own = sorted(
            (s for s in slots if s["schedule"] == f"sch-pr-{practitioner.split('-')[-1]}"),
            key=lambda s: s["start"],
        )
        assert own and own[0]["start"] <= appt["start"] and own[-1]["end"] >= appt["end"]
        assert all(a["end"] == b["start"] for a, b in pairwise(own))
        visit_types.add(appt["serviceType"][0]["coding"][0]["code"])
    assert len(visit_types) > 1


def test_find_by_practitioner_only_returns_that_practitioner(stack):
    api, _control = stack
    start = datetime.now(UTC).date() + timedelta(days=1)
    params = {"start": str(start), "end": str(start + timedelta(days=5))}
    resp = httpx.get(
        f"{api}/Appointment/$find",
        params={**params, "practitioner": "Practitioner/pr-1"},
        headers=AUTH,
    )
    assert resp.status_code == 200
    offers = appointments(resp.json())
    assert offers
    for appt in offers:
        refs = [p["actor"].get("reference") for p in appt["participant"]]
        assert "Practitioner/pr-1" in refs
