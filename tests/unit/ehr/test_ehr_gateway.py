"""The write gateway's retry rule and answer handling, against a scripted EHR transport."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest

from app.ehr.booking_path import booking_path
from app.ehr.client import EhrClient
from app.ehr.errors import (
    EhrConflict,
    EhrNotProcessed,
    EhrOutcomeUnknown,
    EhrRejected,
    EhrUnavailable,
    EhrWriteTimeout,
)
from app.ehr.gateway import EhrGateway
from app.ehr.transport import RetryPolicy
from app.fhir.ehr_capabilities import EhrCapabilities
from app.fhir.versions import R4

APPOINTMENT = {
    "resourceType": "Appointment",
    "status": "proposed",
    "start": "2030-01-07T14:00:00Z",
    "end": "2030-01-07T14:15:00Z",
    "participant": [{"actor": {"reference": "Practitioner/p1"}, "status": "needs-action"}],
}
Answer = httpx.Response | Exception


def _gateway(
    flavour: str, *answers: Answer, booking: Any = None, stop: threading.Event | None = None
) -> tuple[EhrGateway, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = EhrClient(
        "http://ehr.test/fhir",
        fhir_version=flavour,
        retry=RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0),
        transport=httpx.MockTransport(handle),
        stop=stop,
    )
    return EhrGateway(client, booking=booking), seen


def _json(status: int, body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=msgspec.json.encode(body), headers=headers)


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": 1,
            "entry": [{"resource": r} for r in resources]}  # fmt: skip


def _outcome(code: str, text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}]}  # fmt: skip


HELD = {**APPOINTMENT, "id": "a1", "status": "pending"}


def test_a_hold_answers_the_ehrs_appointment_with_its_expiry() -> None:
    gateway, seen = _gateway(
        "stu3", _json(201, _bundle(HELD), Expires="Wed, 07 Jan 2030 14:05:00 GMT")
    )
    answer = gateway.hold(APPOINTMENT)
    assert answer.appointment["id"] == "a1" and answer.created
    assert answer.expires is not None and answer.expires.isoformat() == "2030-01-07T14:05:00+00:00"
    [request] = seen
    assert (request.method, request.url.path) == ("POST", "/fhir/Appointment/$hold")
    body = msgspec.json.decode(request.content)
    assert body["parameter"] == [{"name": "appt-resource", "resource": APPOINTMENT}]


def test_r4_holds_and_books_are_appointment_creates() -> None:
    gateway, seen = _gateway("r4", _json(201, HELD), _json(201, {**HELD, "status": "booked"}))
    gateway.hold(APPOINTMENT)
    gateway.book(APPOINTMENT, ["Patient/x"], "note")
    held, booked = (msgspec.json.decode(r.content) for r in seen)
    assert [r.url.path for r in seen] == ["/fhir/Appointment", "/fhir/Appointment"]
    assert held["status"] == "pending" and held["participant"][0]["status"] == "tentative"
    assert booked["status"] == "booked" and booked["comment"] == "note"
    assert {"actor": {"reference": "Patient/x"}, "required": "required",
            "status": "accepted"} in booked["participant"]  # fmt: skip


def test_r4_booking_a_hold_reads_it_and_puts_it_back_booked_with_the_patient() -> None:
    gateway, seen = _gateway("r4", _json(200, HELD), _json(200, {**HELD, "status": "booked"}))
    answer = gateway.book_existing("a1", ["Patient/x"], None)
    assert answer.appointment["status"] == "booked" and not answer.created
    assert [(r.method, r.url.path) for r in seen] == [
        ("GET", "/fhir/Appointment/a1"),
        ("PUT", "/fhir/Appointment/a1"),
    ]
    put = msgspec.json.decode(seen[1].content)
    assert put["status"] == "booked"
    assert "Patient/x" in [p["actor"]["reference"] for p in put["participant"]]


@pytest.mark.parametrize(
    ("answers", "error"),
    [
        ([httpx.Response(503)], EhrOutcomeUnknown),
        ([httpx.Response(500)], EhrOutcomeUnknown),
        ([httpx.ReadTimeout("slow")], EhrWriteTimeout),
        ([httpx.RemoteProtocolError("reset")], EhrOutcomeUnknown),
        ([httpx.Response(200, content=b'{"resourceType": "Bun')], EhrOutcomeUnknown),
    ],
)
def test_a_sent_booking_without_a_definite_answer_is_never_repeated(
    answers: list[Answer], error: type[Exception]
) -> None:
    gateway, seen = _gateway("stu3", *answers)
    with pytest.raises(error):
        gateway.book(APPOINTMENT, [], None)
    assert len(seen) == 1


@pytest.mark.parametrize(
    "first",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("no route"),
        httpx.Response(429, headers={"Retry-After": "0"}),
    ],
)
def test_a_booking_that_never_reached_the_ehr_is_repeated(first: Answer) -> None:
    gateway, seen = _gateway("stu3", first, _json(201, _bundle({**HELD, "status": "booked"})))
    assert gateway.book(APPOINTMENT, [], None).appointment["status"] == "booked"
    assert len(seen) == 2


def test_never_reaching_the_ehr_at_all_is_reported_as_not_processed() -> None:
    refused = [httpx.ConnectError("refused")] * 3
    gateway, seen = _gateway("stu3", *refused)
    with pytest.raises(EhrNotProcessed):
        gateway.hold(APPOINTMENT)
    assert len(seen) == 3


def test_repeatable_writes_are_retried_through_transient_failures() -> None:
    cancelled = {**HELD, "status": "cancelled"}
    gateway, seen = _gateway(
        "stu3", httpx.Response(503), httpx.ReadTimeout("slow"), _json(200, cancelled)
    )
    patch = b'[{"op": "replace", "path": "/status", "value": "cancelled"}]'
    result = gateway.patch_appointment("a1", patch, "application/json-patch+json")
    assert result["status"] == "cancelled" and len(seen) == 3
    assert seen[-1].headers["Content-Type"] == "application/json-patch+json"
    assert seen[-1].content == patch


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (_json(409, _outcome("conflict", "slot taken")), EhrConflict),
        (_json(412, _outcome("processing", "version moved")), EhrConflict),
        (_json(422, _outcome("conflict", "slot busy")), EhrConflict),
        (_json(422, _outcome("business-rule", "unknown patient")), EhrRejected),
        (
            _json(200, _bundle({**HELD, "status": "cancelled"}, _outcome("conflict", "gone"))),
            EhrConflict,
        ),
    ],
)
def test_refusals_are_typed_and_keep_the_ehrs_reason(answer: httpx.Response, error: type) -> None:
    gateway, seen = _gateway("stu3", answer)
    with pytest.raises(error) as caught:
        gateway.hold(APPOINTMENT)
    assert isinstance(caught.value, error) and len(seen) == 1
    if error is EhrConflict:
        issues = (caught.value.outcome or {}).get("issue", [])  # type: ignore[attr-defined]
        assert issues and issues[0]["diagnostics"]


def test_search_follows_pages_and_stops_at_the_limit() -> None:
    def page(ids: list[str], next_url: str | None) -> httpx.Response:
        body: dict[str, Any] = _bundle(*({"resourceType": "Appointment", "id": i} for i in ids))
        if next_url:
            body["link"] = [{"relation": "next", "url": next_url}]
        return _json(200, body)

    gateway, seen = _gateway(
        "stu3", page(["a", "b"], "http://ehr.test/fhir/Appointment?page=2"), page(["c"], None)
    )
    found, truncated = gateway.search("Appointment", [("patient", "Patient/p")], limit=10)
    assert [a["id"] for a in found] == ["a", "b", "c"] and not truncated
    assert seen[0].url.params["patient"] == "Patient/p" and seen[1].url.params["page"] == "2"
    gateway, _ = _gateway("stu3", page(["a", "b"], "http://ehr.test/fhir/Appointment?page=2"))
    found, truncated = gateway.search("Appointment", [], limit=1)
    assert [a["id"] for a in found] == ["a"] and truncated


def test_patient_registration_tells_created_from_existing() -> None:
    patient: Callable[[str], dict[str, Any]] = lambda pid: {"resourceType": "Patient", "id": pid}  # noqa: E731
    gateway, seen = _gateway("stu3", _json(201, patient("p1")), _json(200, patient("p1")))
    assert gateway.register_patient({"resourceType": "Patient"}) == (patient("p1"), True)
    assert gateway.register_patient({"resourceType": "Patient"}) == (patient("p1"), False)
    assert all("If-None-Exist" not in r.headers for r in seen)


# -- plain Appointment writes: the re-check reads and the cancel of a lapsed hold -------


def test_the_booking_path_is_the_gateways_not_the_fhir_versions() -> None:
    pending = APPOINTMENT | {"id": "a1", "status": "pending"}
    gateway, seen = _gateway("stu3", _json(201, pending), booking="appointment")
    answer = gateway.hold(APPOINTMENT)
    assert (seen[0].method, seen[0].url.path) == ("POST", "/fhir/Appointment")
    assert answer.appointment["id"] == "a1"
    gateway, seen = _gateway(
        "r4", _json(200, _bundle(APPOINTMENT | {"status": "pending"})), booking="operations"
    )
    gateway.hold(APPOINTMENT)
    assert seen[0].url.path == "/fhir/Appointment/$hold"


def test_the_booking_path_follows_the_capabilities_as_they_are_read() -> None:
    """An R4 server that declares $hold and $book is booked through them, from the
    moment its CapabilityStatement is known; before that, the version's default."""
    declared: list[EhrCapabilities | None] = [None]
    pending = APPOINTMENT | {"id": "a1", "status": "pending"}
    gateway, seen = _gateway(
        "r4",
        _json(201, pending),
        _json(200, _bundle(APPOINTMENT | {"status": "pending"})),
        booking=lambda: booking_path(R4, "auto", declared[0]),
    )
    gateway.hold(APPOINTMENT)
    assert seen[-1].url.path == "/fhir/Appointment"
    declared[0] = EhrCapabilities(fhir_version="4.0.1", operations=frozenset({"hold", "book"}))
    gateway.hold(APPOINTMENT)
    assert seen[-1].url.path == "/fhir/Appointment/$hold"


def test_slot_states_read_each_slot_once_and_name_the_gone_ones() -> None:
    gateway, seen = _gateway(
        "r4",
        _json(200, {"resourceType": "Slot", "id": "s1", "status": "free"}),
        _json(404, {"resourceType": "OperationOutcome", "issue": []}),
        _json(410, {"resourceType": "OperationOutcome", "issue": []}),
        _json(200, {"resourceType": "Slot", "id": "s4", "status": "busy-tentative"}),
    )
    states = gateway.slot_states(["s1", "s2", "s3", "s4", "s1"])
    assert states == {"s1": "free", "s2": None, "s3": None, "s4": "busy-tentative"}
    assert [r.url.path for r in seen] == [f"/fhir/Slot/s{n}" for n in (1, 2, 3, 4)]
    gateway, _ = _gateway("r4", _json(403, {"resourceType": "OperationOutcome", "issue": []}))
    with pytest.raises(EhrRejected):
        gateway.slot_states(["s1"])


def test_active_appointments_search_by_slot_and_active_status_following_pages() -> None:
    first = _bundle({"resourceType": "Appointment", "id": "a1", "status": "booked"})
    first["link"] = [{"relation": "next", "url": "http://ehr.test/fhir/Appointment?page=2"}]
    second = _bundle({"resourceType": "Appointment", "id": "a2", "status": "pending"})
    gateway, seen = _gateway("r4", _json(200, first), _json(200, second))
    found = gateway.active_appointments(["s1", "s2"])
    assert [a["id"] for a in found] == ["a1", "a2"]
    assert seen[0].url.params["slot"] == "Slot/s1,Slot/s2"
    assert seen[0].url.params["status"] == "proposed,pending,booked,arrived,checked-in,waitlist"
    assert seen[1].url.params["page"] == "2"


def test_cancel_appointment_puts_it_cancelled_with_a_reason_once() -> None:
    held = APPOINTMENT | {"id": "a1", "status": "pending", "meta": {"versionId": "1"}}
    gateway, seen = _gateway(
        "r4", _json(200, held), _json(200, held | {"status": "cancelled"}),
    )  # fmt: skip
    gateway.cancel_appointment("a1", "hold expired without a booking")
    sent = msgspec.json.decode(seen[1].content)
    assert (seen[1].method, seen[1].url.path) == ("PUT", "/fhir/Appointment/a1")
    assert sent["status"] == "cancelled" and "meta" not in sent
    assert sent["cancelationReason"] == {"text": "hold expired without a booking"}
    gateway, seen = _gateway("r4", _json(200, held | {"status": "cancelled"}))
    gateway.cancel_appointment("a1", "again")
    assert len(seen) == 1, "already cancelled: nothing to write"


def test_booking_a_cancelled_hold_by_put_is_refused_not_revived() -> None:
    gateway, seen = _gateway("r4", _json(200, APPOINTMENT | {"id": "a1", "status": "cancelled"}))
    with pytest.raises(EhrConflict):
        gateway.book_existing("a1", ["Patient/p1"], None)
    assert [r.method for r in seen] == ["GET"]


def test_writes_stop_retrying_when_their_owner_shuts_down() -> None:
    """The gateway retries in the client's one loop, so a shutdown (the stop signal)
    ends a long backoff at once instead of sleeping it out."""
    stop = threading.Event()
    gateway, seen = _gateway("r4", *[_json(503, {}, **{"Retry-After": "30"})] * 3, stop=stop)
    gateway.retry = RetryPolicy(attempts=3, base_delay=30.0, max_delay=30.0)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(EhrUnavailable):
        gateway.read_appointment("a1")
    assert time.monotonic() - started < 5
    assert len(seen) == 1
