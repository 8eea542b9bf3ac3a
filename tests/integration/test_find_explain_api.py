"""``$find?_explain=true`` through the FastAPI app, on both backends and FHIR versions:
the normal Bundle plus an OperationOutcome saying why cached slots were not offered."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import yaml
from fastapi.testclient import TestClient
from msgspec import structs
from sqlalchemy.orm import Session

from app.api.main import create_app
from app.cache import repository as repo
from app.settings import DEMO_API_KEY, Settings
from app.sync.load import load_window
from rules.explain import CODES, NOT_OFFERED_SYSTEM
from tests.booking_support import claim_slots
from tests.fhir_checks import assert_outcome, fhir_model
from tests.integration.test_find_api import BASE, OFFICE, RULES, WINDOW, slot
from tests.integration.test_load_window import ScriptedEhr, client_for

READER_KEY = "reader-" + "r" * 30
FIND = "/fhir/Appointment/$find"


@pytest.fixture(params=["stu3", "r4"])
def api(request, engine, tmp_path):
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(RULES))
    slots = [slot(i) for i in range(6)]
    slots[2] = structs.replace(slots[2], status="busy")
    window = (BASE - timedelta(hours=1), BASE + timedelta(days=1))
    load_window(engine, client_for(ScriptedEhr(slots)), *window)
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        rules_path=rules_path,
        ehr_fhir_version=request.param,
        api_keys={DEMO_API_KEY: Settings().api_keys[DEMO_API_KEY], READER_KEY: [
            "system/Appointment.read"
        ]},
    )  # fmt: skip
    with TestClient(create_app(settings), headers={"X-API-Key": DEMO_API_KEY}) as client:
        yield client, slots, request.param


def _explained(bundle: dict) -> dict:
    outcomes = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "OperationOutcome"]
    explained = [
        o["resource"]
        for o in outcomes
        if any("details" in i for i in o["resource"]["issue"])
        or "every cached slot" in str(o["resource"])
    ]
    assert len(explained) == 1, bundle
    return explained[0]


def _codes(outcome: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for issue in outcome["issue"]:
        (coding,) = issue["details"]["coding"]
        assert coding["system"] == NOT_OFFERED_SYSTEM
        assert coding["display"] == CODES[coding["code"]]
        out.setdefault(coding["code"], []).append(issue)
    return out


def _slot_refs(issue: dict) -> list[str]:
    return [
        e["valueReference"]["reference"]
        for e in issue["extension"]
        if e["url"].endswith("not-offered-slot")
    ]


def _period(issue: dict) -> tuple[datetime, datetime]:
    (period,) = [e["valuePeriod"] for e in issue["extension"] if "valuePeriod" in e]
    return datetime.fromisoformat(period["start"]), datetime.fromisoformat(period["end"])


def test_get_explains_the_busy_slot_and_the_count_cap(api):
    client, slots, version = api
    resp = client.get(
        FIND, params={**WINDOW, "visit-type": OFFICE, "_count": "2", "_explain": "true"}
    )
    assert resp.status_code == 200, resp.text
    bundle = resp.json()
    fhir_model(version, "Bundle").model_validate(bundle)
    outcome = _explained(bundle)
    fhir_model(version, "OperationOutcome").model_validate(outcome)
    entry = next(e for e in bundle["entry"] if e["resource"] is outcome)
    assert entry["search"] == {"mode": "outcome"}
    codes = _codes(outcome)
    assert set(codes) == {"busy", "count-cap"}
    # the cache holds free slots only: the busy one is a gap in the schedule's time
    periods = [_period(i) for i in codes["busy"]]
    assert (slots[2].start, slots[2].end) in periods
    assert all(not _slot_refs(i) for i in codes["busy"])
    capped = codes["count-cap"]
    assert sum(len(_slot_refs(i)) for i in capped) == 3  # 5 free, 2 offered
    assert all(
        {"url": e["url"], "valueString": "_count"} in i["extension"]
        for i in capped
        for e in i["extension"]
        if e["url"].endswith("not-offered-rule")
    )
    assert "Schedule/sch-1" in capped[0]["diagnostics"]


def test_post_takes_explain_as_a_boolean_parameter_or_in_the_query(api):
    client, _, version = api
    window = [
        {"name": "start", "valueDateTime": WINDOW["start"]},
        {"name": "end", "valueDateTime": WINDOW["end"]},
    ]
    body = {
        "resourceType": "Parameters",
        "parameter": [*window, {"name": "_explain", "valueBoolean": True}],
    }
    resp = client.post(FIND, json=body)
    assert resp.status_code == 200, resp.text
    outcome = _explained(resp.json())
    fhir_model(version, "OperationOutcome").model_validate(outcome)
    assert set(_codes(outcome)) == {"busy"}
    query = client.post(FIND, params={"_explain": "true"}, json={**body, "parameter": window})
    assert _codes(_explained(query.json())) == _codes(outcome)


def test_explain_is_for_the_admin_scope_only(api):
    client, _, _ = api
    reader = {"X-API-Key": READER_KEY}
    assert client.get(FIND, params=WINDOW, headers=reader).status_code == 200
    refused = client.get(FIND, params={**WINDOW, "_explain": "true"}, headers=reader)
    body = assert_outcome(refused, 403)
    assert "slotsync/admin" in str(body)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDateTime": WINDOW["start"]},
            {"name": "end", "valueDateTime": WINDOW["end"]},
            {"name": "_explain", "valueBoolean": True},
        ],
    }
    assert_outcome(client.post(FIND, json=body, headers=reader), 403)


def test_explain_false_or_absent_leaves_the_bundle_as_it_was(api):
    client, _, _ = api
    params = {**WINDOW, "visit-type": OFFICE, "_count": "2"}
    plain = client.get(FIND, params=params)
    off = client.get(FIND, params={**params, "_explain": "false"})
    on = client.get(FIND, params={**params, "_explain": "true"})
    again = client.get(FIND, params=params)

    def without_links(content: bytes) -> dict:
        bundle = json.loads(content)
        bundle.pop("link")  # the self link echoes the query
        return bundle

    assert plain.content == again.content  # byte for byte, before and after an explain
    assert without_links(off.content) == without_links(plain.content)
    on_bundle = on.json()
    on_bundle["entry"] = [
        e for e in on_bundle["entry"] if e["resource"] is not _explained(on_bundle)
    ]
    on_bundle.pop("link")
    assert on_bundle == without_links(plain.content)


def test_explain_must_be_true_or_false(api):
    client, _, _ = api
    assert_outcome(client.get(FIND, params={**WINDOW, "_explain": "yes"}), 400)


def test_a_slot_held_through_us_is_explained_as_claimed(api, engine):
    client, slots, version = api
    claim_slots(engine, [slots[4]], "hold-1", kind="hold", ttl=timedelta(minutes=10))
    bundle = client.get(FIND, params={**WINDOW, "_explain": "true"}).json()
    offered = {
        ref["reference"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Appointment"
        for ref in e["resource"]["slot"]
    }
    assert f"Slot/{slots[4].id}" not in offered
    outcome = _explained(bundle)
    fhir_model(version, "OperationOutcome").model_validate(outcome)
    (held,) = _codes(outcome)["claimed"]
    assert _slot_refs(held) == [f"Slot/{slots[4].id}"]


def test_a_schedule_whose_last_sync_failed_is_explained_as_stale(api, engine):
    client, slots, version = api
    with Session(engine) as session, session.begin():
        repo.record_schedule_error(session, ["sch-1"], "EHR answered 503")
    bundle = client.get(
        FIND, params={**WINDOW, "visit-type": OFFICE, "_count": "1", "_explain": "true"}
    ).json()
    outcome = _explained(bundle)
    fhir_model(version, "OperationOutcome").model_validate(outcome)
    (stale,) = _codes(outcome)["stale"]
    assert "EHR answered 503" in stale["details"]["text"]
    assert _period(stale) == (slots[1].start, slots[5].end)  # every slot but the one offered
