"""``Slot/$prefetch`` (STU3) and ``GET Slot`` (R4): filters, paging, includes, validity."""

from __future__ import annotations

from datetime import datetime

import httpx
from fhir.resources.STU3 import get_fhir_model_class as stu3_model

from sandbox_ehr.process import SandboxProcess
from tests.sandbox.conftest import follow

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
