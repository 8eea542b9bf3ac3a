"""Bad requests get a clear 4xx OperationOutcome, and change nothing anywhere."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from tests.booking_support import DERMATOLOGY, bookable_day, params, slot_ids, token_of
from tests.fhir_checks import assert_outcome
from tests.system.gateway.support import AUTH, READ_ONLY_KEY, Gateway, http


def _tampered(token: str) -> str:
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


def _without(resource: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != key}


def _ehr_writes(stack: Gateway) -> int:
    return sum(
        n
        for key, n in stack.stats()["requests"].items()
        if key.split(" ")[0] in ("POST", "PUT", "PATCH") and "/Appointment" in key
    )


def test_bad_hold_and_book_bodies_are_400_with_the_reason(stack: Gateway) -> None:
    day = bookable_day(stack.rules)
    offer = stack.offers(day, specialty=DERMATOLOGY)[0]
    token = token_of(offer)
    resource = {k: v for k, v in offer.items() if k not in ("id", "identifier")}
    before = stack.find_slot_ids(day)
    cases: list[tuple[str, Any, str]] = [
        ("$hold", {"resourceType": "Patient", "id": "x"}, "got Patient"),
        ("$hold", [1, 2], "expects a Parameters resource"),
        ("$hold", params(("appt-ids", "valueUri", token)), "no input parameter 'appt-ids'"),
        ("$hold", params(("patient-id", "valueUri", "Patient/pat-1")), "no input parameter"),
        (
            "$book",
            params(("appt-id", "valueUri", token), ("appt-resource", "resource", resource)),
            "exactly one of appt-id",
        ),
        ("$book", params(("patient-id", "valueUri", "Patient/pat-1")), "exactly one of appt-id"),
        (
            "$hold",
            params(("appt-resource", "resource", _without(resource, "start"))),
            "missing required element(s) Appointment.start",
        ),
        (
            "$hold",
            params(("appt-resource", "resource", dict(resource, participant="pr-1"))),
            "is not a valid FHIR",
        ),
        (
            "$hold",
            params(("appt-resource", "resource", dict(resource, slot=[{"reference": "x"}]))),
            "is not a Slot reference",
        ),
        (
            "$hold",
            params(("appt-id", "valueUri", _tampered(token))),
            "not an appointment id issued by this server",
        ),
        (
            "$hold",
            params(("appt-id", "valueUri", f"Appointment/{offer['id']}")),
            "send its identifier value",
        ),
        (
            "$book",
            params(("appt-id", "valueUri", token), ("patient-id", "valueUri", "Patient/a b")),
            "is not a Patient reference",
        ),
        (
            "$book",
            params(("appt-id", "valueUri", token), ("comment", "valueString", "")),
            "needs one non-empty value",
        ),
        ("$hold", {"resourceType": "Parameters", "parameter": []}, "needs exactly one of appt-id"),
        ("$hold", {"resourceType": "Parameters", "parameter": {}}, "must be a list"),
    ]
    for operation, body, fragment in cases:
        r = http.post(f"{stack.api}/Appointment/{operation}", json=body)
        outcome = assert_outcome(r, 400, "invalid")
        assert fragment in outcome["issue"][0]["diagnostics"], (body, outcome)
    assert_outcome(
        http.post(f"{stack.api}/Appointment/$hold", content=b"{not json",
                   headers={"Content-Type": "application/fhir+json"}), 400)  # fmt: skip
    assert_outcome(
        http.post(f"{stack.api}/Appointment/$hold", content=b"appt-id=x",
                   headers={"Content-Type": "text/plain"}), 415, "not-supported")  # fmt: skip
    assert stack.claims() == []
    assert _ehr_writes(stack) == 0
    assert stack.find_slot_ids(day) == before


def test_unknown_ids_and_refused_business_rules_change_nothing(stack: Gateway) -> None:
    day = bookable_day(stack.rules)
    offer = stack.offers(day, specialty=DERMATOLOGY)[0]
    before = stack.find_slot_ids(day)

    unknown = http.post(
        f"{stack.api}/Appointment/appt-999/$book",
        json=params(("patient-id", "valueUri", "Patient/pat-1")),
    )
    assert_outcome(unknown, 404, "not-found")
    # $hold of an appointment id: 404 if the EHR does not know it, as for $book
    unknown_hold = http.post(
        f"{stack.api}/Appointment/$hold",
        json=params(("appt-id", "valueUri", "Appointment/appt-999")),
    )
    assert_outcome(unknown_hold, 404, "not-found")

    stranger = http.post(f"{stack.api}/Appointment/$book", json=params(
        ("appt-id", "valueUri", token_of(offer)),
        ("patient-id", "valueUri", "Patient/nobody")))  # fmt: skip
    outcome = assert_outcome(stranger, 422)
    assert "Patient/nobody" in outcome["issue"][0]["diagnostics"], "the EHR's reason"

    ten_minutes = {k: v for k, v in offer.items() if k not in ("id", "identifier", "slot")}
    ten_minutes["end"] = _plus_minutes(offer["start"], 10)
    refused = http.post(f"{stack.api}/Appointment/$hold",
                         json=params(("appt-resource", "resource", ten_minutes)))  # fmt: skip
    assert_outcome(refused, 422, "business-rule")
    longer = {k: v for k, v in offer.items() if k not in ("id", "identifier")}
    longer["end"] = _plus_minutes(offer["end"], 15)  # its slots do not cover that
    stretched = http.post(f"{stack.api}/Appointment/$hold",
                          json=params(("appt-resource", "resource", longer)))  # fmt: skip
    assert_outcome(stretched, 422, "business-rule")

    assert stack.claims() == []
    assert stack.find_slot_ids(day) == before
    booked = http.get(f"{stack.ehr}/Appointment", params={"status": "booked,pending"}).json()
    assert booked.get("total", 0) == 0


def _plus_minutes(instant: str, minutes: int) -> str:
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00")) + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_holding_a_held_offer_again_is_409_without_asking_the_ehr(stu3: Gateway) -> None:
    day = bookable_day(stu3.rules)
    offer = stu3.offers(day, specialty=DERMATOLOGY)[0]
    body = params(("appt-id", "valueUri", token_of(offer)))
    held = http.post(f"{stu3.api}/Appointment/$hold", json=body)
    assert held.status_code == 201
    again = http.post(f"{stu3.api}/Appointment/$hold", json=body)
    assert_outcome(again, 409, "conflict")
    held_id = held.json()["entry"][0]["resource"]["id"]
    by_id = params(("appt-id", "valueUri", f"Appointment/{held_id}"))
    outcome = assert_outcome(
        http.post(f"{stu3.api}/Appointment/$hold", json=by_id), 409, "conflict"
    )
    assert "already exists" in outcome["issue"][0]["diagnostics"]
    assert stu3.requests("POST", "/fhir/Appointment/$hold") == 1


def test_booking_an_expired_hold_is_409_and_changes_nothing(stack: Gateway) -> None:
    http.post(f"{stack.control}/config", json={"hold_seconds": 1}).raise_for_status()
    day = bookable_day(stack.rules)
    offer = stack.offers(day, specialty=DERMATOLOGY)[0]
    r = http.post(f"{stack.api}/Appointment/$hold",
                   json=params(("appt-id", "valueUri", token_of(offer))))  # fmt: skip
    assert r.status_code == 201, r.text
    held = r.json()["entry"][0]["resource"]
    if stack.flavour == "stu3":  # the Argonaut EHR says how long it holds
        assert r.headers["Expires"]
    writes = _ehr_writes(stack)
    time.sleep(2.1 if stack.flavour == "stu3" else 0)
    if stack.flavour == "r4":  # no Expires from a plain R4 server: our overlay default applies
        _expire_claims(stack)
    late = http.post(f"{stack.api}/Appointment/$book", json=params(
        ("appt-id", "valueUri", f"Appointment/{held['id']}"),
        ("patient-id", "valueUri", "Patient/pat-1")))  # fmt: skip
    outcome = assert_outcome(late, 409, "conflict")
    assert "expired" in outcome["issue"][0]["diagnostics"]
    assert _ehr_writes(stack) == writes, "nothing was sent to the EHR"
    assert [c.kind for c in stack.claims()] == ["held"] * len(slot_ids(offer))


def _expire_claims(stack: Gateway) -> None:
    with stack.engine.begin() as conn:
        conn.execute(text("UPDATE slot_claims SET expires_at = now() - interval '1 second'"))


def test_bad_patches_searches_and_registrations_are_4xx(stack: Gateway) -> None:
    day = bookable_day(stack.rules)
    offer = stack.offers(day, specialty=DERMATOLOGY)[0]
    book = params(
        ("appt-id", "valueUri", token_of(offer)), ("patient-id", "valueUri", "Patient/pat-1")
    )
    booked = http.post(f"{stack.api}/Appointment/$book", json=book)
    appointment = booked.json()["entry"][0]["resource"]
    url = f"{stack.api}/Appointment/{appointment['id']}"
    json_patch = {"Content-Type": "application/json-patch+json"}
    writes = _ehr_writes(stack)

    move = [{"op": "replace", "path": "/start", "value": "2027-01-01T09:00:00Z"}]
    assert_outcome(http.patch(url, json=move, headers=json_patch), 422, "business-rule")
    rebook = [{"op": "replace", "path": "/status", "value": "booked"}]
    assert_outcome(http.patch(url, json=rebook, headers=json_patch), 422, "business-rule")
    assert_outcome(http.patch(url, json=[{"path": "/status"}], headers=json_patch), 400)
    assert_outcome(http.patch(url, json={"resourceType": "Patient"}), 400)
    assert_outcome(
        http.patch(url, content=b"status=cancelled", headers={"Content-Type": "text/plain"}), 415
    )
    assert _ehr_writes(stack) == writes
    assert stack.ehr_slot_status(slot_ids(offer)[0]) == "busy"

    search = f"{stack.api}/Appointment"
    outcome = assert_outcome(http.get(search, params={"status": "booked"}), 400)
    assert "patient parameter is required" in outcome["issue"][0]["diagnostics"]
    assert_outcome(http.get(search, params={"patient": "pat-1", "date": "xx2026-01-01"}), 400)
    assert_outcome(http.get(search, params={"patient": "pat-1", "date": "ge2026-13-45"}), 400)
    assert_outcome(http.get(search, params={"patient": "pat-1", "status": "sleeping"}), 400)
    assert_outcome(http.get(search, params={"patient": "pat-1", "patinet": "x"}), 400)

    patients = f"{stack.api}/Patient"
    assert_outcome(http.post(patients, json={"resourceType": "Patient", "gender": "male",
                                              "birthDate": "1990-01-01"}), 400)  # fmt: skip
    assert_outcome(http.post(patients, json={"resourceType": "Coverage"}), 400)
    bad_gender = {"resourceType": "Patient", "name": [{"family": "X"}], "gender": "often",
                  "birthDate": "1990-01-01"}  # fmt: skip
    assert_outcome(http.post(patients, json=bad_gender), 400)
    coverage = {
        "resourceType": "Coverage",
        "id": "cov-a",
        "status": "active",
        "beneficiary": {"reference": "Patient/pat-1"},
        "payor": [{"display": "X"}],
    }
    assert_outcome(http.put(f"{stack.api}/Coverage/cov-b", json=coverage), 400)


def _local_port(response: httpx.Response) -> int:
    """The client side of the connection that carried ``response``."""
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]  # type: ignore[no-any-return]


def test_wrongly_typed_patches_are_400_and_the_connection_stays_open(stu3: Gateway) -> None:
    """Refused while parsing, not a 500 (after which the server drops the connection)."""
    url = f"{stu3.api}/Appointment/appt-1"
    json_patch = {"Content-Type": "application/json-patch+json"}
    fhirpath = {"Content-Type": "application/fhir+json"}
    cancel = {"op": "replace", "path": "/status", "value": "cancelled"}
    add_comment = [
        {"name": "type", "valueCode": "add"},
        {"name": "path", "valueString": "Appointment"},
        {"name": "name", "valueString": ["comment"]},
        {"name": "value", "valueString": "ill"},
    ]
    cases: list[tuple[dict[str, str], Any, str]] = [
        (json_patch, [{**cancel, "op": ["replace"]}], "'op' must be one of"),
        (json_patch, [{**cancel, "op": {"replace": 1}}], "not a JSON object"),
        (json_patch, [{**cancel, "op": 5}], "not a JSON number"),
        (json_patch, [{**cancel, "path": ["status"]}], "'path' must be a JSON pointer"),
        (json_patch, [{**cancel, "value": 5}], "/status must be a JSON string"),
        (json_patch, ["replace", cancel], "operation 0 must be a JSON object, not 'replace'"),
        (json_patch, [[cancel]], "operation 0 must be a JSON object, not a JSON array"),
        (json_patch, [{"op": "replace", "path": "/status"}], "replace needs a value"),
        (fhirpath, params(("operation", "part", add_comment)), "name must be a string"),
    ]
    writes = _ehr_writes(stu3)
    with httpx.Client(headers=AUTH, timeout=60, limits=httpx.Limits(max_connections=1)) as client:
        first = client.get(f"{stu3.api}/metadata")
        assert first.status_code == 200
        port = _local_port(first)
        for headers, body, message in cases:
            response = client.patch(url, json=body, headers=headers)
            outcome = assert_outcome(response, 400, "invalid")
            assert message in outcome["issue"][0]["diagnostics"], outcome
            assert _local_port(response) == port  # the same keep-alive connection
        again = client.get(f"{stu3.api}/metadata")
        assert again.status_code == 200 and _local_port(again) == port
    assert _ehr_writes(stu3) == writes


def test_writes_need_the_write_scope(stu3: Gateway) -> None:
    day = bookable_day(stu3.rules)
    offer = stu3.offers(day, specialty=DERMATOLOGY)[0]
    book = params(("appt-id", "valueUri", token_of(offer)))
    read_only = {"X-API-Key": READ_ONLY_KEY}
    assert_outcome(httpx.post(f"{stu3.api}/Appointment/$book", json=book), 401, "login")
    assert_outcome(
        httpx.post(f"{stu3.api}/Appointment/$book", json=book, headers=read_only), 403, "forbidden"
    )
    assert_outcome(
        httpx.post(f"{stu3.api}/Patient", json={"resourceType": "Patient"}, headers=read_only),
        403,
    )
    search = httpx.get(f"{stu3.api}/Appointment", params={"patient": "pat-1"}, headers=read_only)
    assert search.status_code == 200
    assert httpx.get(f"{stu3.api}/metadata").status_code == 200, "metadata is open"
    assert stu3.claims() == [] and _ehr_writes(stu3) == 0
