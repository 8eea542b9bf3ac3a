"""Hold / book / cancel with real slot state, conflicts, expiry, Patient and Coverage."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from benchmarks.processes import wait_until
from sandbox_ehr.process import SandboxProcess
from tests.integration.sandbox.conftest import flavour_of


def _free(http: httpx.Client, sp: SandboxProcess, schedule: str) -> list[dict[str, Any]]:
    return http.get(f"{sp.control_url}/truth", params={"schedule": schedule}).json()["slots"]


def _appointment(slot: dict[str, Any], by_reference: bool = True) -> dict[str, Any]:
    appt: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "proposed",
        "start": slot["start"],
        "end": slot["end"],
        "participant": [
            {
                "actor": {"reference": "Practitioner/pr-1"},
                "required": "required",
                "status": "needs-action",
            }
        ],
    }
    if by_reference:
        appt["slot"] = [{"reference": f"Slot/{slot['id']}"}]
    return appt


def _params(*params: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(params)}


def _slot_status(http: httpx.Client, sp: SandboxProcess, slot_id: str) -> str:
    return http.get(f"{sp.base_url}/Slot/{slot_id}").json()["status"]


def test_hold_then_book_then_cancel_moves_slot_state(
    ehr: SandboxProcess, http: httpx.Client
) -> None:
    r4 = flavour_of(ehr) == "r4"
    slot = _free(http, ehr, "sch-pr-1")[0]
    r = http.post(
        f"{ehr.base_url}/Appointment/$hold",
        json=_params({"name": "appt-resource", "resource": _appointment(slot)}),
    )
    assert r.status_code == 201, r.text
    assert r.headers["Expires"].endswith("GMT") and "/Appointment/" in r.headers["Location"]
    held = r.json()["entry"][0]["resource"]
    assert held["status"] == "pending"
    assert {p["status"] for p in held["participant"]} == {"tentative"}
    assert _slot_status(http, ehr, slot["id"]) == ("busy-tentative" if r4 else "busy")
    assert slot["id"] not in {s["id"] for s in _free(http, ehr, "sch-pr-1")}

    second = http.post(f"{ehr.base_url}/Appointment/$hold", json=_appointment(slot))
    assert second.status_code == 409 and second.json()["issue"][0]["code"] == "conflict"

    r = http.post(
        f"{ehr.base_url}/Appointment/$book",
        json=_params(
            {"name": "appt-id", "valueUri": f"Appointment/{held['id']}"},
            {"name": "patient-id", "valueUri": "Patient/pat-2"},
        ),
    )
    assert r.status_code == 200, r.text
    booked = r.json()["entry"][0]["resource"]
    assert booked["status"] == "booked" and booked["id"] == held["id"]
    assert {"reference": "Patient/pat-2"} in [p["actor"] for p in booked["participant"]]
    assert _slot_status(http, ehr, slot["id"]) == "busy"

    found = http.get(
        f"{ehr.base_url}/Appointment",
        params={
            "patient": "Patient/pat-2",
            "status": "booked",
            "date": "ge2026-11-26",
            "practitioner": "Practitioner/pr-1",
        },
    ).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [held["id"]]

    r = http.patch(
        f"{ehr.base_url}/Appointment/{held['id']}",
        content=b'[{"op": "replace", "path": "/status", "value": "cancelled"}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert slot["id"] in {s["id"] for s in _free(http, ehr, "sch-pr-1")}
    other = http.post(f"{ehr.base_url}/Appointment/$hold", json=_appointment(slot))
    assert other.status_code == 201
    again = http.patch(
        f"{ehr.base_url}/Appointment/{held['id']}",
        content=b'[{"op": "replace", "path": "/status", "value": "cancelled"}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert _slot_status(http, ehr, slot["id"]) != "free", "the old appointment freed a slot it lost"


def test_fhirpath_patch_releases_a_hold(stu3: SandboxProcess, http: httpx.Client) -> None:
    slot = _free(http, stu3, "sch-pr-1")[1]
    held = http.post(f"{stu3.base_url}/Appointment/$hold", json=_appointment(slot)).json()["entry"][
        0
    ]["resource"]
    patch = _params(
        {
            "name": "operation",
            "part": [
                {"name": "type", "valueCode": "replace"},
                {"name": "path", "valueString": "Appointment.status"},
                {"name": "value", "valueCode": "cancelled"},
            ],
        }
    )
    r = http.patch(
        f"{stu3.base_url}/Appointment/{held['id']}",
        json=patch,
        headers={"Content-Type": "application/fhir+json"},
    )
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert _slot_status(http, stu3, slot["id"]) == "free"
    bad = http.patch(
        f"{stu3.base_url}/Appointment/{held['id']}",
        content=b'[{"op": "replace", "path": "/start", "value": "2027-01-01T00:00:00Z"}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert bad.status_code == 422


def test_slots_matched_by_time_and_actors_when_not_referenced(
    stu3: SandboxProcess, http: httpx.Client
) -> None:
    slots = _free(http, stu3, "sch-pr-1")
    pair = next((a, b) for a, b in itertools.pairwise(slots) if a["end"] == b["start"])
    appt = _appointment(pair[0], by_reference=False)
    appt["end"] = pair[1]["end"]
    r = http.post(
        f"{stu3.base_url}/Appointment/$book",
        json=_params(
            {"name": "appt-resource", "resource": appt},
            {"name": "patient-id", "valueUri": "Patient/pat-1"},
        ),
    )
    assert r.status_code == 201, r.text
    refs = [s["reference"] for s in r.json()["entry"][0]["resource"]["slot"]]
    assert refs == [f"Slot/{pair[0]['id']}", f"Slot/{pair[1]['id']}"]
    lunch = _appointment(pair[0], by_reference=False)
    lunch["start"], lunch["end"] = "2026-11-30T17:00:00Z", "2026-11-30T17:30:00Z"  # 12:00 New York
    assert http.post(f"{stu3.base_url}/Appointment/$hold", json=lunch).status_code == 409
    unknown = _params(
        {"name": "appt-resource", "resource": _appointment(slots[5])},
        {"name": "patient-id", "valueUri": "Patient/nobody"},
    )
    assert http.post(f"{stu3.base_url}/Appointment/$book", json=unknown).status_code == 422


def test_hold_expires_and_frees_the_slot(stu3: SandboxProcess, http: httpx.Client) -> None:
    http.post(f"{stu3.control_url}/config", json={"hold_seconds": 1})
    slot = _free(http, stu3, "sch-pr-2")[0]
    r = http.post(
        f"{stu3.base_url}/Appointment/$hold",
        json=_appointment(slot)
        | {
            "participant": [{"actor": {"reference": "Practitioner/pr-2"}, "status": "needs-action"}]
        },
    )
    assert r.status_code == 201
    appt_id = r.json()["entry"][0]["resource"]["id"]
    wait_until(
        lambda: _slot_status(http, stu3, slot["id"]) == "free", 5, "the hold expired", interval=0.2
    )
    assert http.get(f"{stu3.base_url}/Appointment/{appt_id}").json()["status"] == "cancelled"


def test_r4_create_and_update_appointments(r4: SandboxProcess, http: httpx.Client) -> None:
    slot = _free(http, r4, "sch-pr-1")[0]
    appt = _appointment(slot) | {"status": "booked"}
    appt["participant"].append({"actor": {"reference": "Patient/pat-3"}, "status": "needs-action"})
    r = http.post(f"{r4.base_url}/Appointment", json=appt)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "booked" and _slot_status(http, r4, slot["id"]) == "busy"
    assert http.post(f"{r4.base_url}/Appointment", json=appt).status_code == 409
    created["status"] = "cancelled"
    r = http.put(f"{r4.base_url}/Appointment/{created['id']}", json=created)
    assert r.status_code == 200 and _slot_status(http, r4, slot["id"]) == "free"


def test_stu3_has_no_plain_appointment_create(stu3: SandboxProcess, http: httpx.Client) -> None:
    slot = _free(http, stu3, "sch-pr-1")[0]
    r = http.post(f"{stu3.base_url}/Appointment", json=_appointment(slot) | {"status": "booked"})
    assert r.status_code == 405 and r.json()["resourceType"] == "OperationOutcome"


def test_patient_registration_returns_existing_patient(
    ehr: SandboxProcess, http: httpx.Client
) -> None:
    bruce = {
        "resourceType": "Patient",
        "name": [{"family": "Banner", "given": ["Bruce"]}],
        "gender": "male",
        "birthDate": "1980-12-18",
    }
    first = http.post(f"{ehr.base_url}/Patient", json=bruce)
    assert first.status_code == 201
    again = http.post(f"{ehr.base_url}/Patient", json=bruce)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    mrn = first.json()["identifier"][0]
    by_id = {"resourceType": "Patient", "identifier": [mrn], "name": [{"family": "Other"}]}
    assert http.post(f"{ehr.base_url}/Patient", json=by_id).json()["id"] == first.json()["id"]
    found = http.get(
        f"{ehr.base_url}/Patient", params={"family": "ban", "birthdate": "1980-12-18"}
    ).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [first.json()["id"]]
    assert (
        http.post(
            f"{ehr.base_url}/Patient", json={"resourceType": "Patient", "gender": 7}
        ).status_code
        == 400
    )


def test_coverage_type_change_is_rejected(ehr: SandboxProcess, http: httpx.Client) -> None:
    r4 = flavour_of(ehr) == "r4"
    coverage: dict[str, Any] = {
        "resourceType": "Coverage",
        "status": "active",
        "type": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HIP"}
            ]
        },
        "beneficiary": {"reference": "Patient/pat-1"},
        "payor": [{"display": "Anthem"}],
    }
    if not r4:
        coverage["grouping"] = {"plan": "1FZQ", "planDisplay": "Anthem Bronze"}
    r = http.post(f"{ehr.base_url}/Coverage", json=coverage)
    assert r.status_code == 201, r.text
    cov = r.json()
    cov["status"] = "cancelled"
    updated = http.put(f"{ehr.base_url}/Coverage/{cov['id']}", json=cov)
    assert updated.status_code == 200 and updated.json()["meta"]["versionId"] == "2"
    cov["type"]["coding"][0]["code"] = "AUTOPOL"
    rejected = http.put(f"{ehr.base_url}/Coverage/{cov['id']}", json=cov)
    assert rejected.status_code == 422
    assert "type" in rejected.json()["issue"][0]["diagnostics"]
    stranger = dict(coverage, beneficiary={"reference": "Patient/nobody"})
    assert http.post(f"{ehr.base_url}/Coverage", json=stranger).status_code == 422


def test_concurrent_holds_of_one_slot_have_exactly_one_winner(stu3: SandboxProcess) -> None:
    from concurrent.futures import ThreadPoolExecutor

    slot = _free(httpx.Client(), stu3, "sch-pr-4")[0]
    appt = _appointment(slot) | {
        "participant": [{"actor": {"reference": "Practitioner/pr-4"}, "status": "needs-action"}]
    }

    def attempt(_: int) -> int:
        return httpx.post(f"{stu3.base_url}/Appointment/$hold", json=appt, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(attempt, range(8)))
    assert statuses == [201] + [409] * 7
    read = httpx.get(f"{stu3.base_url}/Slot/{slot['id']}")
    assert read.json()["status"] == "busy" and read.headers["etag"] == 'W/"2"'


def test_reschedule_cancels_the_old_booking(stu3: SandboxProcess, http: httpx.Client) -> None:
    first, second = _free(http, stu3, "sch-pr-1")[:2]
    patient = {"name": "patient-id", "valueUri": "Patient/pat-1"}
    old = http.post(
        f"{stu3.base_url}/Appointment/$book",
        json=_params({"name": "appt-resource", "resource": _appointment(first)}, patient),
    )
    old_id = old.json()["entry"][0]["resource"]["id"]
    moved = http.post(
        f"{stu3.base_url}/Appointment/$book",
        json=_params(
            {"name": "appt-resource", "resource": _appointment(second)},
            patient,
            {"name": "cancelled-appt-id", "valueUri": f"Appointment/{old_id}"},
        ),
    )
    assert moved.status_code == 201, moved.text
    assert http.get(f"{stu3.base_url}/Appointment/{old_id}").json()["status"] == "cancelled"
    assert _slot_status(http, stu3, first["id"]) == "free"
    assert _slot_status(http, stu3, second["id"]) == "busy"
    new_id = moved.json()["entry"][0]["resource"]["id"]
    same = http.post(
        f"{stu3.base_url}/Appointment/$book",
        json=_params(
            {"name": "appt-resource", "resource": _appointment(second)},
            patient,
            {"name": "cancelled-appt-id", "valueUri": f"Appointment/{new_id}"},
        ),
    )
    assert same.status_code == 201, "a reschedule may reuse the slots it gives up"
    assert _slot_status(http, stu3, second["id"]) == "busy"
