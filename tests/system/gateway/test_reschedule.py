"""Rescheduling = cancel + book; a booking that fails after the cancel says so plainly."""

from __future__ import annotations

from typing import Any

import httpx

from tests.booking_support import DERMATOLOGY, bookable_day, params, slot_ids, token_of
from tests.fhir_checks import assert_outcome
from tests.system.gateway.support import Gateway, http


def _book(stack: Gateway, offer: dict[str, Any], *extra: tuple[str, str, Any]) -> httpx.Response:
    body = params(
        ("appt-id", "valueUri", token_of(offer)),
        ("patient-id", "valueUri", "Patient/pat-3"),
        *extra,
    )
    return http.post(f"{stack.api}/Appointment/$book", json=body)


def _status(stack: Gateway, appointment_id: str) -> str:
    return str(http.get(f"{stack.api}/Appointment/{appointment_id}").json()["status"])


def test_reschedule_cancels_the_old_appointment_and_books_the_new(stack: Gateway) -> None:
    day = bookable_day(stack.rules)
    first, second = stack.offers(day, specialty=DERMATOLOGY)[:2]
    old = _book(stack, first).json()["entry"][0]["resource"]
    r = _book(stack, second, ("cancelled-appt-id", "valueUri", f"Appointment/{old['id']}"))
    assert r.status_code == 201, r.text
    bundle = r.json()
    new = bundle["entry"][0]["resource"]
    assert new["status"] == "booked" and slot_ids(new) == slot_ids(second)
    note = bundle["entry"][1]["resource"]["issue"][0]["diagnostics"]
    assert f"Appointment/{old['id']} was cancelled" in note
    assert _status(stack, old["id"]) == "cancelled"
    offered = stack.find_slot_ids(day)
    assert set(slot_ids(first)) <= offered and not set(slot_ids(second)) & offered


def test_reschedule_whose_booking_fails_after_the_cancel_says_so(stack: Gateway) -> None:
    day = bookable_day(stack.rules)
    first, second = stack.offers(day, specialty=DERMATOLOGY)[:2]
    old = _book(stack, first).json()["entry"][0]["resource"]
    http.post(f"{stack.control}/mutate", json={"op": "book", "slots": slot_ids(second)})
    r = _book(stack, second, ("cancelled-appt-id", "valueUri", old["id"]))
    outcome = assert_outcome(r, 409, "conflict")
    if stack.flavour == "r4":
        # No $book at the EHR: slotsync re-checks the new slots before anything is
        # written, so the old appointment is never touched.
        assert "is busy at the EHR" in outcome["issue"][0]["diagnostics"]
        assert _status(stack, old["id"]) == "booked"
        assert not set(slot_ids(second)) & stack.find_slot_ids(day), "the cache was corrected"
        return
    incomplete = [i for i in outcome["issue"] if i["code"] == "incomplete"]
    assert len(incomplete) == 1 and incomplete[0]["severity"] == "error"
    assert f"Appointment/{old['id']} WAS cancelled" in incomplete[0]["diagnostics"]
    assert _status(stack, old["id"]) == "cancelled"
    assert stack.claims() == []


def test_reschedule_whose_cancel_fails_books_nothing(stack: Gateway) -> None:
    day = bookable_day(stack.rules)
    offer = stack.offers(day, specialty=DERMATOLOGY)[0]
    r = _book(stack, offer, ("cancelled-appt-id", "valueUri", "Appointment/appt-404"))
    outcome = assert_outcome(r, 404, "not-found")
    assert "nothing was booked" in outcome["issue"][-1]["diagnostics"]
    assert stack.claims() == []
    assert set(slot_ids(offer)) <= stack.find_slot_ids(day)
