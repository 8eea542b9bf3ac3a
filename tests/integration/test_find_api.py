"""$find through the FastAPI app over a cache loaded from a scripted EHR, on both backends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.settings import Settings
from app.sync.load import load_window
from tests.factories import T0, slot
from tests.fhir_checks import assert_avail_bundle, assert_operation_outcome
from tests.integration.test_load_window import WINDOW, ScriptedEhr, client_for


@pytest.fixture
def api(engine):
    slots = [slot(i) for i in range(6)] + [slot(i, schedule="sch-2", minutes=30) for i in range(3)]
    load_window(engine, client_for(ScriptedEhr(slots)), *WINDOW)
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False))
    with TestClient(create_app(settings)) as client:
        yield client, slots


def find(client, **params):
    return client.get("/fhir/Appointment/$find", params=params)


def iso(t):
    return t.isoformat()


def test_find_answers_valid_avail_bundle_one_per_free_slot(api):
    client, slots = api
    resp = find(client, start=iso(T0 - timedelta(hours=1)), end=iso(T0 + timedelta(days=1)))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/fhir+json")
    bundle = resp.json()
    assert_avail_bundle(bundle)
    assert bundle["total"] == len(slots)
    got = [(e["resource"]["start"], e["resource"]["end"]) for e in bundle["entry"]]
    want = sorted(
        (iso(s.start).replace("+00:00", "Z"), iso(s.end).replace("+00:00", "Z")) for s in slots
    )
    assert sorted(got) == want
    assert [g[0] for g in got] == sorted(g[0] for g in got)  # ordered by start
    assert "lastUpdated" in bundle["meta"]


def test_find_filters_by_practitioner_alias_and_count(api):
    client, _ = api
    window = {"start": iso(T0 - timedelta(hours=1)), "end": iso(T0 + timedelta(days=1))}
    resp = find(client, provider="Practitioner/sch-2", **window)
    bundle = resp.json()
    assert bundle["total"] == 3
    for entry in bundle["entry"]:
        refs = [p["actor"].get("reference") for p in entry["resource"]["participant"]]
        assert "Practitioner/sch-2" in refs
    limited = find(client, _count="2", **window).json()
    assert limited["total"] == 9 and len(limited["entry"]) == 2


def test_unknown_practitioner_gives_empty_bundle(api):
    client, _ = api
    resp = find(client, start="2030-01-01", end="2030-02-01", practitioner="Practitioner/nobody")
    assert resp.status_code == 200
    assert resp.json()["total"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"start": "2030-01-02"},
        {"start": "yesterday", "end": "2030-01-02"},
        {"start": "2030-01-03", "end": "2030-01-02"},
        {"start": "2030-01-01", "end": "2030-01-02", "_count": "-1"},
        {"start": "2030-01-01", "end": "2030-01-02", "practitioner": "Patient/1"},
        {"start": "2030-01-01T10:00:00", "end": "2030-01-02"},
    ],
)
def test_bad_parameters_get_400_operation_outcome(api, params):
    client, _ = api
    resp = find(client, **params)
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/fhir+json")
    assert_operation_outcome(resp.json(), code="invalid")
