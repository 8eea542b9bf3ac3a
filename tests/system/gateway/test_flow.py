"""Use Case 3 end to end over HTTP, in both EHR flavours:
$find -> $hold -> Patient -> $book -> Coverage -> retrieve -> cancel -> slot back in $find."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import httpx
import msgspec

from app.core.domain import VISIT_TYPE_SYSTEM as VISIT_TYPES
from tests.booking_support import DERMATOLOGY, bookable_day, params, slot_ids, token_of
from tests.fhir_checks import assert_valid
from tests.system.gateway.support import Gateway, http


def _client_appointment(found: dict[str, Any]) -> dict[str, Any]:
    """What a Use Case 3 client builds from a $find entry: its own argo-appt, no server id."""
    return {
        "resourceType": "Appointment",
        "status": "proposed",
        "serviceType": [{"coding": [{"system": VISIT_TYPES, "code": "office-visit"}]}],
        "start": found["start"],
        "end": found["end"],
        "slot": found["slot"],
        "participant": [
            {"actor": {"reference": p["actor"]["reference"]}, "required": "required",
             "status": "needs-action"}
            for p in found["participant"] if p["actor"].get("reference")
        ],
        "requestedPeriod": found["requestedPeriod"],
    }  # fmt: skip


def _coverage(flavour: str, patient: str) -> dict[str, Any]:
    coverage: dict[str, Any] = {
        "resourceType": "Coverage",
        "status": "active",
        "beneficiary": {"reference": patient},
        "subscriber": {"reference": patient},
        "subscriberId": "DZW9200000000",
        "payor": [{"display": "Anthem Blue Cross of California"}],
        "period": {"start": "2026-01-01"},
    }
    if flavour == "stu3":
        coverage["grouping"] = {"plan": "1FZQ", "planDisplay": "Anthem Bronze 60 D HSA PPO"}
    return coverage


def _bundle_appointment(stack: Gateway, response: httpx.Response, status: str) -> dict[str, Any]:
    bundle = response.json()
    assert_valid(stack.flavour, bundle)
    assert bundle["type"] == "searchset" and bundle["total"] == 1
    appointment = bundle["entry"][0]["resource"]
    assert bundle["entry"][0]["search"]["mode"] == "match"
    assert appointment["resourceType"] == "Appointment" and appointment["status"] == status
    return appointment  # type: ignore[no-any-return]


def test_use_case_3_flow_with_a_client_built_appointment(stack: Gateway) -> None:
    day = bookable_day(stack.rules)
    offer = stack.offers(day, specialty=DERMATOLOGY)[0]
    practitioner = offer["participant"][0]["actor"]["reference"]
    [slot] = slot_ids(offer)
    start = f"{day}T00:00:00Z"
    end = f"{day + timedelta(days=1)}T00:00:00Z"

    # $find, as the consumer sees it
    found = http.get(f"{stack.api}/Appointment/$find",
                      params={"start": start, "end": end, "practitioner": practitioner,
                              "_count": "500"}).json()  # fmt: skip
    entry = next(e["resource"] for e in found["entry"] if slot_ids(e["resource"]) == [slot])

    # $hold with the client-built Argonaut Appointment (Use Case 3)
    hold = params(("appt-resource", "resource", _client_appointment(entry)))
    r = http.post(f"{stack.api}/Appointment/$hold", json=hold)
    assert r.status_code == 201, r.text
    held = _bundle_appointment(stack, r, "pending")
    assert r.headers["Location"].endswith(f"/Appointment/{held['id']}")
    assert r.headers["Expires"].endswith("GMT")
    assert slot not in stack.find_slot_ids(day), "a held slot must leave $find at once"
    [claim] = stack.claims()
    assert (claim.slot_id, claim.kind, claim.appointment_id) == (slot, "held", held["id"])

    # register the patient; the second registration returns the same record
    patient = {"resourceType": "Patient", "name": [{"family": "Tester", "given": ["Una"]}],
               "gender": "female", "birthDate": "1985-03-14"}  # fmt: skip
    r = http.post(f"{stack.api}/Patient", json=patient)
    assert r.status_code == 201, r.text
    patient_id = r.json()["id"]
    assert r.headers["Location"].endswith(f"/Patient/{patient_id}")
    # the STU3-era media type is FHIR JSON too (as on every route and the webhook)
    again = http.post(
        f"{stack.api}/Patient",
        content=msgspec.json.encode(patient),
        headers={"Content-Type": "application/json+fhir"},
    )
    assert again.status_code == 200 and again.json()["id"] == patient_id, again.text
    assert again.headers["Content-Type"].startswith("application/fhir+json")

    # $book the hold for that patient
    r = http.post(f"{stack.api}/Appointment/$book", json=params(
        ("appt-id", "valueUri", f"Appointment/{held['id']}"),
        ("patient-id", "valueUri", f"Patient/{patient_id}"),
        ("comment", "valueString", "rash on the left arm")))  # fmt: skip
    assert r.status_code == 200, r.text
    booked = _bundle_appointment(stack, r, "booked")
    assert booked["id"] == held["id"]
    assert f"Patient/{patient_id}" in [p["actor"].get("reference") for p in booked["participant"]]
    assert stack.ehr_slot_status(slot) == "busy"
    assert [(c.kind, c.appointment_id) for c in stack.claims()] == [("booked", held["id"])]

    # coverage: create, then update
    r = http.post(f"{stack.api}/Coverage", json=_coverage(stack.flavour, f"Patient/{patient_id}"))
    assert r.status_code == 201, r.text
    coverage = r.json()
    assert_valid(stack.flavour, coverage)
    coverage["period"] = {"start": "2026-02-01"}
    r = http.put(f"{stack.api}/Coverage/{coverage['id']}", json=coverage)
    assert r.status_code == 200 and r.json()["period"]["start"] == "2026-02-01"

    # retrieve the patient's appointments
    r = http.get(f"{stack.api}/Appointment", params=[
        ("patient", patient_id), ("status", "booked"), ("date", f"ge{day}"),
        ("date", f"lt{day + timedelta(days=1)}"), ("practitioner", practitioner)])  # fmt: skip
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert_valid(stack.flavour, bundle)
    assert [e["resource"]["id"] for e in bundle["entry"]] == [held["id"]]
    after = ("date", f"gt{day + timedelta(days=1)}")
    later = http.get(f"{stack.api}/Appointment", params=[("patient", patient_id), after])
    assert later.status_code == 200 and later.json()["total"] == 0

    # cancel, with a reason; the slot comes back to $find
    cancel = [{"op": "replace", "path": "/status", "value": "cancelled"},
              {"op": "add", "path": "/comment", "value": "patient feels better"}]  # fmt: skip
    r = http.patch(f"{stack.api}/Appointment/{held['id']}", json=cancel,
                    headers={"Content-Type": "application/json-patch+json"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert stack.ehr_slot_status(slot) == "free"
    assert stack.claims() == []
    assert slot in stack.find_slot_ids(day)


def test_offer_id_from_find_is_booked_directly_and_released_by_fhirpath_patch(
    stack: Gateway,
) -> None:
    day = bookable_day(stack.rules)
    offer = stack.offers(day, specialty=DERMATOLOGY)[1]
    slots = slot_ids(offer)
    r = http.post(f"{stack.api}/Appointment/$book", json=params(
        ("appt-id", "valueUri", f"Appointment/{token_of(offer)}"),
        ("patient-id", "valueUri", "Patient/pat-2")))  # fmt: skip
    assert r.status_code == 201, r.text
    booked = _bundle_appointment(stack, r, "booked")
    assert slot_ids(booked) == slots
    assert {"reference": "Patient/pat-2"} in [p["actor"] for p in booked["participant"]]
    assert not set(slots) & stack.find_slot_ids(day)

    reason = {"coding": [{"system": "http://fhir.org/guides/argonaut-scheduling/CodeSystem/"
                          "status-reason", "code": "patient-cancel"}]}  # fmt: skip
    patch = {"resourceType": "Parameters", "parameter": [
        {"name": "operation", "part": [{"name": "type", "valueCode": "replace"},
                                       {"name": "path", "valueString": "Appointment.status"},
                                       {"name": "value", "valueCode": "cancelled"}]},
        {"name": "operation", "part": [{"name": "type", "valueCode": "add"},
                                       {"name": "path", "valueString": "Appointment"},
                                       {"name": "name", "valueString": "extension"},
                                       {"name": "value", "part": [
                                           {"name": "url", "valueUri": "http://fhir.org/guides/"
                                            "argonaut-scheduling/StructureDefinition/"
                                            "extension-status-reason"},
                                           {"name": "valueCodeableConcept",
                                            "valueCodeableConcept": reason}]}]}]}  # fmt: skip
    r = http.patch(f"{stack.api}/Appointment/{booked['id']}", json=patch,
                    headers={"Content-Type": "application/fhir+json"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert set(slots) <= stack.find_slot_ids(day)
    assert stack.claims() == []


def test_book_with_an_appointment_resource_keeps_its_patient(stack: Gateway) -> None:
    """A client that books by sending back the offer from $find (its identifier is the
    proposal) names the Patient among its participants, not in patient-id."""
    day = bookable_day(stack.rules)
    resource = copy.deepcopy(stack.offers(day, specialty=DERMATOLOGY)[2])
    resource["participant"].append(
        {"actor": {"reference": "Patient/pat-2"}, "required": "required", "status": "accepted"}
    )
    r = http.post(
        f"{stack.api}/Appointment/$book", json=params(("appt-resource", "resource", resource))
    )
    assert r.status_code == 201, r.text
    booked = _bundle_appointment(stack, r, "booked")
    assert "Patient/pat-2" in [p["actor"].get("reference") for p in booked["participant"]]
    at_ehr = http.get(f"{stack.ehr}/Appointment/{booked['id']}").json()
    assert "Patient/pat-2" in [p["actor"].get("reference") for p in at_ehr["participant"]]
