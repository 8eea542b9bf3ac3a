"""No double booking: many clients, two API processes, one PostgreSQL; exactly one wins."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.domain import VISIT_TYPE_SYSTEM
from benchmarks.stacks import start_api
from tests.booking_support import DERMATOLOGY, bookable_day, params, slot_ids, token_of
from tests.fhir_checks import assert_outcome
from tests.system.gateway.support import AUTH, Gateway, http

CLIENTS = 20


@pytest.fixture
def two_apis(stu3: Gateway, tmp_path: Path) -> Iterator[list[str]]:
    second = start_api(stu3.env, log=tmp_path / "api-2.log")
    try:
        yield [stu3.api, f"{second.url}/fhir"]
    finally:
        second.stop(timeout=20)


def _race(bodies: list[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    """POST every (url, body) at the same moment, each from its own client thread."""
    barrier = threading.Barrier(len(bodies))
    results: list[httpx.Response | BaseException] = [RuntimeError("not run")] * len(bodies)

    def run(n: int, url: str, body: dict[str, Any]) -> None:
        with httpx.Client(timeout=30, headers=AUTH) as client:
            barrier.wait()
            try:
                results[n] = client.post(url, json=body)
            except BaseException as exc:  # reported below, with the others
                results[n] = exc

    threads = [
        threading.Thread(target=run, args=(n, url, body)) for n, (url, body) in enumerate(bodies)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures
    return results  # type: ignore[return-value]


def _client_built(offer: dict[str, Any]) -> dict[str, Any]:
    appointment = {k: v for k, v in offer.items() if k not in ("id", "identifier", "meta")}
    return appointment


def test_parallel_bookings_of_one_offer_through_two_processes_book_it_once(
    stu3: Gateway, two_apis: list[str]
) -> None:
    day = bookable_day(stu3.rules)
    offer = stu3.offers(day, specialty=DERMATOLOGY)[0]
    bodies = []
    for n in range(CLIENTS):
        api = two_apis[n % 2]
        if n % 4 < 2:  # half send the $find id, half a client-built appointment of the same slots
            target = ("appt-id", "valueUri", token_of(offer))
        else:
            target = ("appt-resource", "resource", _client_built(offer))
        body = params(target, ("patient-id", "valueUri", f"Patient/pat-{n % 5 + 1}"))
        bodies.append((f"{api}/Appointment/$book", body))

    responses = _race(bodies)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (CLIENTS - 1), [r.text for r in responses]
    for r in responses:
        if r.status_code == 409:
            assert_outcome(r, 409, "conflict")
    assert stu3.requests("POST", "/fhir/Appointment/$book") == 1, "the EHR saw one attempt"
    booked = [
        e["resource"]
        for e in http.get(f"{stu3.ehr}/Appointment", params={"status": "booked"}).json()["entry"]
    ]
    assert [slot_ids(a) for a in booked] == [slot_ids(offer)]
    assert not set(slot_ids(offer)) & stu3.find_slot_ids(day)


def _overlapping_offers(stack: Gateway) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two different offers that share a slot (joined slots of one practitioner)."""
    day = bookable_day(stack.rules)
    for code in ("consult", "office-visit", "physical", "follow-up"):
        offers = stack.offers(day, visit_type=f"{VISIT_TYPE_SYSTEM}|{code}")
        for a in offers:
            for b in offers:
                shared = set(slot_ids(a)) & set(slot_ids(b))
                if shared and slot_ids(a) != slot_ids(b):
                    return a, b
    raise AssertionError("the sandbox organisation should offer overlapping joined appointments")


def test_offers_sharing_a_slot_cannot_both_be_booked(stu3: Gateway, two_apis: list[str]) -> None:
    first, second = _overlapping_offers(stu3)
    bodies = [
        (
            f"{two_apis[n % 2]}/Appointment/$book",
            params(
                ("appt-id", "valueUri", token_of(first if n % 2 else second)),
                ("patient-id", "valueUri", "Patient/pat-3"),
            ),
        )
        for n in range(CLIENTS)
    ]
    responses = _race(bodies)
    assert sorted(r.status_code for r in responses) == [201] + [409] * (CLIENTS - 1)
    assert stu3.requests("POST", "/fhir/Appointment/$book") == 1
