"""EHR faults during every write: definite answers, read-back of lost answers, correlation ids,
and an overlay that is never left wrong."""

from __future__ import annotations

from typing import Any

import httpx

from benchmarks.processes import wait_until
from tests.booking_support import DERMATOLOGY, bookable_day, params, slot_ids, token_of
from tests.fhir_checks import assert_outcome
from tests.system.gateway.support import Gateway, http


def _write_path(stack: Gateway, operation: str) -> dict[str, str]:
    """Fault-rule matcher for a new hold/book in this flavour."""
    if stack.flavour == "r4":
        return {"method": "POST", "path": "/fhir/Appointment"}
    return {"method": "POST", "path": f"/fhir/Appointment/${operation}"}


def _offer(stack: Gateway, n: int = 0) -> tuple[Any, dict[str, Any]]:
    day = bookable_day(stack.rules)
    return day, stack.offers(day, specialty=DERMATOLOGY)[n]


def _booked_at_ehr(stack: Gateway) -> list[dict[str, Any]]:
    bundle = http.get(f"{stack.ehr}/Appointment", params={"status": "booked"}).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def _book(stack: Gateway, offer: dict[str, Any], **headers: str) -> httpx.Response:
    body = params(
        ("appt-id", "valueUri", token_of(offer)), ("patient-id", "valueUri", "Patient/pat-1")
    )
    return http.post(f"{stack.api}/Appointment/$book", json=body, headers=headers, timeout=60)


def test_book_that_timed_out_before_the_ehr_acted_is_read_back_then_retried(stack: Gateway) -> None:
    day, offer = _offer(stack)
    stack.fault(kind="timeout", hang_seconds=3, times=1, **_write_path(stack, "book"))
    r = _book(stack, offer)
    assert r.status_code == 201, r.text
    assert r.json()["entry"][0]["resource"]["status"] == "booked"
    assert [slot_ids(a) for a in _booked_at_ehr(stack)] == [slot_ids(offer)]
    assert [c.kind for c in stack.claims()] == ["booked"] * len(slot_ids(offer))
    assert not set(slot_ids(offer)) & stack.find_slot_ids(day)


def test_book_whose_answer_was_lost_is_found_by_reading_back(stack: Gateway) -> None:
    _, offer = _offer(stack)
    stack.fault(kind="truncate", times=1, **_write_path(stack, "book"))
    r = _book(stack, offer)
    assert r.status_code == 201, r.text
    bundle = r.json()
    assert bundle["entry"][0]["resource"]["status"] == "booked"
    note = bundle["entry"][1]["resource"]
    assert note["resourceType"] == "OperationOutcome"
    assert "read back" in note["issue"][0]["diagnostics"]
    booked = _booked_at_ehr(stack)
    assert len(booked) == 1 and booked[0]["id"] == bundle["entry"][0]["resource"]["id"]
    write = _write_path(stack, "book")
    assert stack.requests(write["method"], write["path"]) == 1, "never sent twice"


def test_hold_the_ehr_keeps_failing_is_a_verified_502_and_changes_nothing(stack: Gateway) -> None:
    day, offer = _offer(stack)
    stack.fault(kind="error", status=500, **_write_path(stack, "hold"))
    r = http.post(
        f"{stack.api}/Appointment/$hold",
        json=params(("appt-id", "valueUri", token_of(offer))),
        headers={"X-Request-ID": "trace-hold-500"},
        timeout=60,
    )
    body = assert_outcome(r, 502)
    assert "did not hold the appointment (verified)" in body["issue"][0]["diagnostics"]
    assert r.headers["X-Request-ID"] == "trace-hold-500"
    assert body["extension"][0]["valueString"] == "trace-hold-500"
    assert stack.claims() == []
    assert set(slot_ids(offer)) <= stack.find_slot_ids(day)
    assert all(stack.ehr_slot_status(s) == "free" for s in slot_ids(offer))


def test_unknown_outcome_keeps_the_slots_reserved_and_says_so(stu3: Gateway) -> None:
    day, offer = _offer(stu3)
    stu3.fault(kind="error", status=503, path="/fhir/Appointment*")
    r = http.post(
        f"{stu3.api}/Appointment/$hold",
        json=params(("appt-id", "valueUri", token_of(offer))),
        timeout=60,
    )
    body = assert_outcome(r, 504, "timeout")
    assert "unknown" in body["issue"][0]["diagnostics"]
    assert body["extension"][0]["valueString"] == r.headers["X-Request-ID"]
    assert {c.kind for c in stu3.claims()} == {"pending"}
    assert not set(slot_ids(offer)) & stu3.find_slot_ids(day), "maybe held: keep it hidden"


def test_ehr_conflict_is_409_with_its_reason_and_the_schedule_is_reread(stu3: Gateway) -> None:
    day, offer = _offer(stu3)
    [slot] = slot_ids(offer)
    taken = http.post(f"{stu3.control}/mutate", json={"op": "book", "slot": slot})
    assert taken.status_code == 200
    assert slot in stu3.find_slot_ids(day), "the cache has not heard of it yet"
    r = http.post(
        f"{stu3.api}/Appointment/$hold", json=params(("appt-id", "valueUri", token_of(offer)))
    )
    body = assert_outcome(r, 409, "conflict")
    assert slot in body["issue"][0]["diagnostics"], "the EHR's reason is passed on"
    assert stu3.claims() == []
    # the refresh is queued on the sync pipeline at once and lands within moments
    wait_until(
        lambda: slot not in stu3.find_slot_ids(day), 15, "the schedule refreshed", interval=0.2
    )


def test_ehr_conflict_in_r4_is_409_and_leaves_no_claim(r4: Gateway) -> None:
    _, offer = _offer(r4)
    [slot] = slot_ids(offer)
    http.post(f"{r4.control}/mutate", json={"op": "book", "slot": slot}).raise_for_status()
    r = _book(r4, offer)
    body = assert_outcome(r, 409, "conflict")
    assert slot in body["issue"][0]["diagnostics"]
    assert r4.claims() == []


def test_cancel_is_retried_through_transient_errors(stack: Gateway) -> None:
    day, offer = _offer(stack)
    booked = _book(stack, offer).json()["entry"][0]["resource"]
    stack.fault(kind="error", status=503, times=2, method="PATCH", path="/fhir/Appointment/*")
    r = http.patch(
        f"{stack.api}/Appointment/{booked['id']}",
        json=[{"op": "replace", "path": "/status", "value": "cancelled"}],
        headers={"Content-Type": "application/json-patch+json"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    patches = [n for key, n in stack.stats()["requests"].items() if key.startswith("PATCH ")]
    assert sum(patches) == 3, "two 503s, then the cancel"
    assert set(slot_ids(offer)) <= stack.find_slot_ids(day)


def test_search_failing_at_the_ehr_is_502_with_a_correlation_id(stack: Gateway) -> None:
    stack.fault(kind="error", status=500, method="GET", path="/fhir/Appointment")
    r = http.get(f"{stack.api}/Appointment", params={"patient": "pat-1"}, timeout=60)
    body = assert_outcome(r, 502)
    assert body["extension"][0]["valueString"] == r.headers["X-Request-ID"]
    assert "Traceback" not in r.text and "127.0.0.1" not in r.text


def test_patient_registration_whose_answer_was_lost_returns_the_registered_patient(
    stack: Gateway,
) -> None:
    stack.fault(kind="truncate", times=1, method="POST", path="/fhir/Patient")
    patient = {"resourceType": "Patient", "name": [{"family": "Lost", "given": ["Answer"]}],
               "gender": "male", "birthDate": "1970-01-02"}  # fmt: skip
    r = http.post(f"{stack.api}/Patient", json=patient, timeout=60)
    assert r.status_code == 200, r.text
    registered = r.json()
    assert registered["name"][0]["family"] == "Lost"
    again = http.post(f"{stack.api}/Patient", json=patient)
    assert again.status_code == 200 and again.json()["id"] == registered["id"]


def test_coverage_refused_by_the_ehr_comes_back_with_its_reason(stack: Gateway) -> None:
    coverage = {
        "resourceType": "Coverage",
        "status": "active",
        "type": {"coding": [{"system": "http://hl7.org/fhir/v3/ActCode", "code": "HIP"}]},
        "beneficiary": {"reference": "Patient/pat-1"},
        "payor": [{"display": "Anthem"}],
    }
    created = http.put(f"{stack.api}/Coverage/cov-test", json=coverage)
    assert created.status_code == 201, created.text
    coverage["type"] = {"coding": [{"system": "http://hl7.org/fhir/v3/ActCode", "code": "DENTAL"}]}
    r = http.put(f"{stack.api}/Coverage/cov-test", json=coverage)
    body = assert_outcome(r, 422)
    assert "Coverage.type cannot be changed" in body["issue"][0]["diagnostics"]
    unknown = dict(coverage, beneficiary={"reference": "Patient/nobody"})
    assert_outcome(http.post(f"{stack.api}/Coverage", json=unknown), 422)


def _coverage() -> dict[str, Any]:
    return {
        "resourceType": "Coverage",
        "status": "active",
        "beneficiary": {"reference": "Patient/pat-2"},
        "payor": [{"display": "Anthem"}],
    }


def test_coverage_writes_through_ehr_failures(stack: Gateway) -> None:
    stack.fault(kind="error", status=503, times=2, method="PUT", path="/fhir/Coverage/*")
    r = http.put(f"{stack.api}/Coverage/cov-retry", json=_coverage())
    assert r.status_code == 201, r.text
    puts = [n for key, n in stack.stats()["requests"].items() if key.startswith("PUT ")]
    assert sum(puts) == 3, "an update is safe to repeat"

    stack.fault(kind="error", status=500, method="POST", path="/fhir/Coverage")
    r = http.post(f"{stack.api}/Coverage", json=_coverage())
    body = assert_outcome(r, 502)
    assert "PUT Coverage/[id] is safe to repeat" in body["issue"][0]["diagnostics"]
    posts = [n for key, n in stack.stats()["requests"].items() if key.startswith("POST /fhir/Cov")]
    assert sum(posts) == 1, "a create is never repeated blindly"


def test_booking_a_hold_whose_answer_was_lost_is_read_back(stack: Gateway) -> None:
    day, offer = _offer(stack)
    held = http.post(
        f"{stack.api}/Appointment/$hold", json=params(("appt-id", "valueUri", token_of(offer)))
    ).json()["entry"][0]["resource"]
    if stack.flavour == "r4":
        stack.fault(kind="truncate", times=1, method="PUT", path="/fhir/Appointment/*")
    else:
        stack.fault(kind="truncate", times=1, **_write_path(stack, "book"))
    r = http.post(f"{stack.api}/Appointment/$book", json=params(
        ("appt-id", "valueUri", f"Appointment/{held['id']}"),
        ("patient-id", "valueUri", "Patient/pat-4")))  # fmt: skip
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["entry"][0]["resource"]["status"] == "booked"
    assert "read back" in bundle["entry"][1]["resource"]["issue"][0]["diagnostics"]
    assert {c.kind for c in stack.claims()} == {"booked"}
    assert not set(slot_ids(offer)) & stack.find_slot_ids(day)
