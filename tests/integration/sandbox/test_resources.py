"""Every response type validates against fhir.resources (STU3 or R4B) in both flavours."""

from __future__ import annotations

from typing import Any

import httpx

from sandbox_ehr.process import SandboxProcess
from tests.integration.sandbox.conftest import flavour_of


def _model(flavour: str, rtype: str) -> Any:
    if flavour == "stu3":
        from fhir.resources.STU3 import get_fhir_model_class
    else:
        from fhir.resources.R4B import get_fhir_model_class
    return get_fhir_model_class(rtype)


def _valid(flavour: str, resource: dict[str, Any]) -> dict[str, Any]:
    _model(flavour, resource["resourceType"]).model_validate(resource)
    return resource


SLOT_STATUSES = {
    "stu3": {"free", "busy", "busy-unavailable"},
    "r4": {"free", "busy", "busy-tentative", "busy-unavailable"},
}


def test_every_resource_type_is_valid(ehr: SandboxProcess, http: httpx.Client) -> None:
    flavour = flavour_of(ehr)
    base = ehr.base_url
    cap = _valid(flavour, http.get(f"{base}/metadata").json())
    assert cap["fhirVersion"] == ("3.0.1" if flavour == "stu3" else "4.0.1")
    assert "application/json-patch+json" in cap["patchFormat"]
    ops = {o["name"] for o in cap["rest"][0]["operation"]}
    assert ops == ({"prefetch", "hold", "book"} if flavour == "stu3" else {"hold", "book"})

    for path in (
        "Practitioner/pr-1",
        "Location/clinic-1",
        "Location/room-1",
        "Device/dev-1",
        "Organization/org-1",
        "Schedule/sch-pr-1",
        "Schedule/sch-room-1",
        "Schedule/sch-dev-1",
        "Slot/sl-00000001",
    ):
        r = http.get(f"{base}/{path}")
        assert r.status_code == 200, path
        _valid(flavour, r.json())
    room = http.get(f"{base}/Location/room-1").json()
    room_type = room["type"] if flavour == "stu3" else room["type"][0]
    assert room_type["coding"][0]["system"] == "http://slotsync.example/fhir/CodeSystem/room-kind"
    assert room["partOf"]["reference"].startswith("Location/clinic-")

    slots = http.get(f"{base}/Slot", params={"_count": 200, "_include": "*"}).json()
    _valid(flavour, slots)
    assert {
        e["resource"]["status"] for e in slots["entry"] if e["search"]["mode"] == "match"
    } <= SLOT_STATUSES[flavour]
    assert {e["resource"]["resourceType"] for e in slots["entry"]} >= {
        "Slot",
        "Schedule",
        "Practitioner",
    }
    _valid(flavour, http.get(f"{base}/Schedule", params={"_include": "Schedule:actor"}).json())
    for rtype in ("Practitioner", "Location", "Device", "Organization", "Patient"):
        _valid(flavour, http.get(f"{base}/{rtype}").json())

    outcome = http.get(f"{base}/Slot/nope").json()
    assert _valid(flavour, outcome)["issue"][0]["code"] == "not-found"

    truth = http.get(f"{ehr.control_url}/truth", params={"schedule": "sch-pr-1"}).json()["slots"][0]
    appt = {
        "resourceType": "Appointment",
        "status": "proposed",
        "start": truth["start"],
        "end": truth["end"],
        "slot": [{"reference": f"Slot/{truth['id']}"}],
        "participant": [{"actor": {"reference": "Practitioner/pr-1"}, "status": "needs-action"}],
    }
    held = http.post(f"{base}/Appointment/$hold", json=appt).json()
    _valid(flavour, held)
    appt_id = held["entry"][0]["resource"]["id"]
    _valid(flavour, http.get(f"{base}/Appointment/{appt_id}").json())
    _valid(
        flavour,
        http.get(f"{base}/Appointment", params={"practitioner": "Practitioner/pr-1"}).json(),
    )
    _valid(flavour, http.get(f"{base}/Patient/pat-1").json())

    sub = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "r",
        "criteria": "Slot",
        "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"},
    }
    created = http.post(f"{base}/Subscription", json=sub)
    assert created.status_code == 201
    _valid(flavour, created.json())
    _valid(flavour, http.get(f"{base}/Subscription").json())
    if flavour == "r4":
        _valid(flavour, http.get(f"{base}/Subscription/{created.json()['id']}/$status").json())
    assert http.delete(f"{base}/Subscription/{created.json()['id']}").status_code == 204


def test_write_responses_are_valid(ehr: SandboxProcess, http: httpx.Client) -> None:
    flavour = flavour_of(ehr)
    base = ehr.base_url
    patient = http.post(
        f"{base}/Patient",
        json={
            "resourceType": "Patient",
            "name": [{"family": "Valid", "given": ["Val"]}],
            "birthDate": "2000-01-01",
            "gender": "other",
        },
    )
    assert patient.status_code == 201
    _valid(flavour, patient.json())
    coverage: dict[str, Any] = {
        "resourceType": "Coverage",
        "status": "active",
        "beneficiary": {"reference": f"Patient/{patient.json()['id']}"},
        "payor": [{"display": "Acme Insurance"}],
    }
    if flavour == "stu3":
        coverage["grouping"] = {"plan": "P1", "planDisplay": "Plan one"}
    _valid(flavour, http.post(f"{base}/Coverage", json=coverage).json())
    truth = http.get(f"{ehr.control_url}/truth", params={"schedule": "sch-room-1"}).json()["slots"][
        0
    ]
    appt = {
        "resourceType": "Appointment",
        "status": "proposed",
        "start": truth["start"],
        "end": truth["end"],
        "participant": [{"actor": {"reference": "Location/room-1"}, "status": "needs-action"}],
    }
    booked = http.post(
        f"{base}/Appointment/$book",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "appt-resource", "resource": appt},
                {"name": "patient-id", "valueUri": f"Patient/{patient.json()['id']}"},
            ],
        },
    )
    assert booked.status_code == 201, booked.text
    _valid(flavour, booked.json())
    appt_id = booked.json()["entry"][0]["resource"]["id"]
    patched = http.patch(
        f"{base}/Appointment/{appt_id}",
        json=[{"op": "replace", "path": "/status", "value": "cancelled"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 200
    _valid(flavour, patched.json())
    conflict = http.post(
        f"{base}/Appointment/$hold", json=appt | {"slot": [{"reference": "Slot/nope"}]}
    )
    assert conflict.status_code == 422
    _valid(flavour, conflict.json())
