"""``Slot/$prefetch`` (STU3) and ``GET Slot`` (R4): filters, paging, includes, validity."""

from __future__ import annotations

from datetime import datetime

import httpx
from fhir.resources.STU3 import get_fhir_model_class as stu3_model

from sandbox_ehr.process import SandboxProcess
from tests.integration.sandbox.conftest import follow

WINDOW = {"start": "2026-11-26T00:00:00Z", "end": "2026-12-10T00:00:00Z"}


def _slots(entries: list[dict]) -> list[dict]:
    return [e["resource"] for e in entries if e["search"]["mode"] == "match"]


def test_prefetch_pages_cover_every_free_slot_once_in_order(
    stu3: SandboxProcess, http: httpx.Client
) -> None:
    pages, entries = follow(http, f"{stu3.base_url}/Slot/$prefetch", {**WINDOW, "_count": 37})
    slots = _slots(entries)
    ids = [s["id"] for s in slots]
    assert len(pages) > 2
    assert len(ids) == len(set(ids)) == pages[0]["total"]
    keys = [(datetime.fromisoformat(s["start"]), s["id"]) for s in slots]
    assert keys == sorted(keys)
    assert all(s["status"] == "free" for s in slots)
    lo, hi = (datetime.fromisoformat(WINDOW[k]) for k in ("start", "end"))
    assert all(lo <= datetime.fromisoformat(s["start"]) < hi for s in slots)
    assert all(len(p["entry"]) <= 37 for p in pages)


def test_prefetch_bundle_is_valid_stu3_with_includes(
    stu3: SandboxProcess, http: httpx.Client
) -> None:
    r = http.get(
        f"{stu3.base_url}/Slot/$prefetch",
        params={**WINDOW, "_count": 20, "_include": ["Slot:schedule", "Schedule:actor"]},
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+json")
    body = r.json()
    stu3_model("Bundle").model_validate(body)
    modes = {e["resource"]["resourceType"]: e["search"]["mode"] for e in body["entry"]}
    assert modes["Slot"] == "match"
    assert modes["Schedule"] == modes["Practitioner"] == modes["Location"] == "include"
    refs = {
        e["resource"]["schedule"]["reference"]
        for e in body["entry"]
        if e["search"]["mode"] == "match"
    }
    included = {
        f"Schedule/{e['resource']['id']}"
        for e in body["entry"]
        if e["resource"]["resourceType"] == "Schedule"
    }
    assert refs == included


def test_prefetch_practitioner_filter_returns_only_that_schedule(
    stu3: SandboxProcess, http: httpx.Client
) -> None:
    _, entries = follow(
        http, f"{stu3.base_url}/Slot/$prefetch", {**WINDOW, "practitioner": "Practitioner/pr-2"}
    )
    slots = _slots(entries)
    assert slots
    assert {s["schedule"]["reference"] for s in slots} == {"Schedule/sch-pr-2"}


def test_prefetch_post_parameters_equals_get_and_truth(
    stu3: SandboxProcess, http: httpx.Client
) -> None:
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDateTime": WINDOW["start"]},
            {"name": "end", "valueDateTime": WINDOW["end"]},
            {"name": "location-reference", "valueUri": "Location/room-1"},
        ],
    }
    r = http.post(f"{stu3.base_url}/Slot/$prefetch", json=params)
    assert r.status_code == 200
    posted = [e["resource"]["id"] for e in r.json()["entry"]]
    _, entries = follow(
        http, f"{stu3.base_url}/Slot/$prefetch", {**WINDOW, "location-reference": "Location/room-1"}
    )
    assert posted == [s["id"] for s in _slots(entries)]
    truth = http.get(
        f"{stu3.control_url}/truth", params={"schedule": "sch-room-1", **WINDOW}
    ).json()
    assert [s["id"] for s in truth["slots"]] == posted and truth["count"] == len(posted) > 0


def test_prefetch_filters_are_anded_across_kinds_and_ored_within(
    stu3: SandboxProcess, http: httpx.Client
) -> None:
    url = f"{stu3.base_url}/Slot/$prefetch"
    derm = "http://snomed.info/sct|394582007"
    _, entries = follow(http, url, {**WINDOW, "specialty": derm, "_include": "Slot:schedule"})
    schedules = {
        e["resource"]["id"]: e["resource"] for e in entries if e["search"]["mode"] == "include"
    }
    assert schedules and all(
        s["specialty"][0]["coding"][0]["code"] == "394582007" for s in schedules.values()
    )
    _, both = follow(
        http, url, {**WINDOW, "practitioner": ["Practitioner/pr-1", "Practitioner/pr-2"]}
    )
    assert {s["schedule"]["reference"] for s in _slots(both)} == {
        "Schedule/sch-pr-1",
        "Schedule/sch-pr-2",
    }
    _, none = follow(
        http,
        url,
        {**WINDOW, "practitioner": "Practitioner/pr-1", "location-reference": "Location/room-1"},
    )
    assert _slots(none) == []
    _, ekg = follow(http, url, {**WINDOW, "visit-type": "ekg", "location-string": "New York"})
    assert ekg and all(s["serviceType"] for s in _slots(ekg))
    _, device = follow(http, url, {**WINDOW, "actor": "Device/dev-1"})
    assert {s["schedule"]["reference"] for s in _slots(device)} == {"Schedule/sch-dev-1"}
    assert any(
        c["code"] == "ekg" for s in _slots(ekg) for st in s["serviceType"] for c in st["coding"]
    )


def test_slot_times_carry_the_clinic_offset(stu3: SandboxProcess, http: httpx.Client) -> None:
    clinics = {
        e["resource"]["id"]: e["resource"] for e in follow(http, f"{stu3.base_url}/Location")[1]
    }
    offsets = {
        "America/New_York": "-05:00",
        "America/Los_Angeles": "-08:00",
        "America/Chicago": "-06:00",
        "America/Denver": "-07:00",
    }
    for cid in ("clinic-1", "clinic-2"):
        tz = clinics[cid]["extension"][0]["valueCode"]
        _, entries = follow(
            http,
            f"{stu3.base_url}/Slot/$prefetch",
            {**WINDOW, "location-reference": f"Location/{cid}", "_count": 5},
        )
        assert entries and all(s["start"].endswith(offsets[tz]) for s in _slots(entries))


def test_bad_parameters_get_an_operation_outcome(stu3: SandboxProcess, http: httpx.Client) -> None:
    for params in (
        {"start": "yesterday"},
        {**WINDOW, "_count": "many"},
        {"_cursor": "garbage!"},
        {"start": WINDOW["end"], "end": WINDOW["start"]},
    ):
        r = http.get(f"{stu3.base_url}/Slot/$prefetch", params=params)
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", params


def test_r4_slot_search_pages_and_validates(r4: SandboxProcess, http: httpx.Client) -> None:
    from fhir.resources.R4B import get_fhir_model_class as r4_model

    r = http.get(f"{r4.base_url}/Slot/$prefetch", params=WINDOW)
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    params = {
        "schedule": "sch-pr-1,sch-pr-3",
        "start": ["ge2026-11-26", "lt2026-12-10"],
        "_count": 11,
        "_include": "Slot:schedule",
    }
    pages, entries = follow(http, f"{r4.base_url}/Slot", params)
    for page in pages:
        r4_model("Bundle").model_validate(page)
    slots = _slots(entries)
    statuses = {s["status"] for s in slots}
    assert {"free", "busy"} <= statuses and len(slots) == pages[0]["total"]
    _, free = follow(http, f"{r4.base_url}/Slot", {**params, "status": "free"})
    assert len(_slots(free)) == sum(1 for s in slots if s["status"] == "free")


def test_r4_last_updated_returns_slots_that_stopped_being_free(
    r4: SandboxProcess, http: httpx.Client
) -> None:
    truth = http.get(f"{r4.control_url}/truth", params={"schedule": "sch-pr-2"}).json()["slots"]
    since = http.get(f"{r4.base_url}/Slot/{truth[0]['id']}").json()["meta"]["lastUpdated"]
    changed = http.post(
        f"{r4.control_url}/mutate", json={"op": "book", "slots": [truth[0]["id"], truth[1]["id"]]}
    )
    assert changed.status_code == 200
    _, entries = follow(http, f"{r4.base_url}/Slot", {"_lastUpdated": f"gt{since}"})
    got = {s["id"]: s for s in _slots(entries)}
    assert set(got) == {truth[0]["id"], truth[1]["id"]}
    assert {s["status"] for s in got.values()} == {"busy"}
    assert all(s["meta"]["versionId"] == "2" for s in got.values())


def test_schedule_and_actor_discovery(ehr: SandboxProcess, http: httpx.Client) -> None:
    pages, entries = follow(http, f"{ehr.base_url}/Schedule", {"_count": 7})
    config = http.get(f"{ehr.control_url}/config").json()
    assert len(entries) == config["schedules"] == pages[0]["total"] and len(pages) > 1
    _, mine = follow(
        http,
        f"{ehr.base_url}/Schedule",
        {"actor": "Practitioner/pr-4", "_include": "Schedule:actor"},
    )
    kinds = sorted(e["resource"]["resourceType"] for e in mine)
    assert kinds == ["Location", "Practitioner", "Schedule"]
    for rtype in ("Practitioner", "Location", "Device", "Organization"):
        _, found = follow(http, f"{ehr.base_url}/{rtype}", {"_count": 5})
        assert found
        first_id = found[0]["resource"]["id"]
        assert http.get(f"{ehr.base_url}/{rtype}/{first_id}").json()["id"] == first_id
    assert http.get(f"{ehr.base_url}/Practitioner/nobody").status_code == 404


def test_r4_slot_search_by_id_and_chained_actor(r4: SandboxProcess, http: httpx.Client) -> None:
    truth = http.get(f"{r4.control_url}/truth", params={"schedule": "sch-pr-2"}).json()["slots"]
    ids = [truth[0]["id"], truth[3]["id"]]
    found = http.get(f"{r4.base_url}/Slot", params={"_id": ",".join(ids)}).json()
    assert sorted(e["resource"]["id"] for e in found["entry"]) == sorted(ids)
    _, chained = follow(
        http, f"{r4.base_url}/Slot", {"schedule.actor": "Practitioner/pr-2", "status": "free"}
    )
    assert [s["id"] for s in _slots(chained)] == [s["id"] for s in truth]


def test_organization_filter_uses_the_managing_organisation(
    stu3: SandboxProcess, http: httpx.Client
) -> None:
    _, east = follow(
        http,
        f"{stu3.base_url}/Slot/$prefetch",
        {**WINDOW, "organization": "Organization/org-1", "_include": "Schedule:actor"},
    )
    clinics = {
        e["resource"]["id"]: e["resource"]
        for e in east
        if e["resource"]["resourceType"] == "Location" and e["resource"]["id"].startswith("clinic-")
    }
    assert clinics and {c["managingOrganization"]["reference"] for c in clinics.values()} == {
        "Organization/org-1"
    }
