"""Booking against a generic FHIR R4 server (the sandbox's plain-r4 profile), embedded mode.

The server has no ``$prefetch``/``$hold``/``$book``, takes bookings as ``POST
Appointment`` and leaves every Slot ``free``. The API runs in process with its
LocalDispatcher (periodic jobs included) over real HTTP to the sandbox; the cache is
a throwaway PostgreSQL database.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.api.main import create_app
from app.cache.db import make_engine
from app.cache.migrate import upgrade
from app.ehr.client import EhrClient
from app.settings import Settings
from app.sync.chunk import Chunk, sync_chunk
from app.sync.load import load_window
from app.sync.windows import day_start
from benchmarks.databases import throwaway_postgres
from benchmarks.processes import wait_until
from sandbox_ehr.process import SandboxProcess, start_sandbox
from tests.booking_support import (
    OFFICE_VISIT,
    RULES_PATH,
    bookable_day,
    load_test_rules,
    params,
    slot_ids,
    token_of,
)
from tests.fhir_checks import assert_outcome, assert_valid

HORIZON_DAYS = 10
PAGE_SIZE = 100  # the plain profile refuses _count above 100
KEY = "plain-r4-test-key-0123456789"
AUTH = {"X-API-Key": KEY}
PATIENT = "Patient/pat-1"
CYCLES = 200


def plain_settings(db_url: str, sandbox: SandboxProcess, tmp: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp,
        "database_url": db_url,
        "ehr_base_url": sandbox.base_url,
        "ehr_fhir_version": "r4",
        "ehr_page_size": PAGE_SIZE,
        "ehr_timeout_seconds": 5,
        "ehr_subscriptions": False,
        "horizon_days": HORIZON_DAYS,
        "rules_path": RULES_PATH,
        "api_keys": {KEY: ["system/*.*", "slotsync/admin", "slotsync/metrics"]},
        "hold_expiry_seconds": 1,
        # the tests poll themselves (and count the EHR's requests): the app's own watchdog
        # polls once at start-up only
        "watchdog_seconds": 3600,
    }
    values.update(extra)
    return Settings(**values)


@dataclass
class Plain:
    """The plain-R4 sandbox, the in-process API and its cache."""

    sandbox: SandboxProcess
    api: TestClient
    app: Any
    engine: Engine

    def ehr_client(self) -> EhrClient:
        return EhrClient(self.sandbox.base_url, fhir_version="r4", page_size=PAGE_SIZE)

    def control(self, method: str, path: str, **kw: Any) -> Any:
        r = httpx.request(method, f"{self.sandbox.control_url}{path}", timeout=30, **kw)
        r.raise_for_status()
        return r.json() if r.content else None

    def load(self) -> None:
        with self.ehr_client() as client:
            start = day_start(datetime.now(UTC))
            load_window(self.engine, client, start, start + timedelta(days=HORIZON_DAYS))

    def reset(self) -> None:
        self.control("POST", "/reset")
        with self.engine.begin() as conn:
            for table in ("slot_claims", "appointment_holds", "slots"):
                conn.execute(text(f"DELETE FROM {table}"))
        self.load()
        self.control("DELETE", "/stats")

    def offers(self, day: date) -> list[dict[str, Any]]:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        r = self.api.get(
            "/fhir/Appointment/$find",
            params={
                "start": start.isoformat(),
                "end": (start + timedelta(days=1)).isoformat(),
                "visit-type": OFFICE_VISIT,
                "_count": "1000",
            },
            headers=AUTH,
        )
        assert r.status_code == 200, r.text
        return [e["resource"] for e in r.json().get("entry", ()) if e["search"]["mode"] == "match"]

    def offered_slots(self, day: date) -> set[str]:
        return {sid for offer in self.offers(day) for sid in slot_ids(offer)}

    def book(self, offer: dict[str, Any]) -> httpx.Response:
        body = params(("appt-id", "valueUri", token_of(offer)), ("patient-id", "valueUri", PATIENT))
        return self.api.post("/fhir/Appointment/$book", json=body, headers=AUTH)

    def hold(self, offer: dict[str, Any]) -> httpx.Response:
        body = params(("appt-id", "valueUri", token_of(offer)))
        return self.api.post("/fhir/Appointment/$hold", json=body, headers=AUTH)

    def sync_day(self, day: date) -> None:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        with self.ehr_client() as client:
            sync_chunk(self.engine, client, Chunk(None, start, start + timedelta(days=1)))

    def slot_appointments(self) -> dict[str, Any]:
        return self.control("GET", "/slot-appointments")  # type: ignore[no-any-return]

    def ehr_requests(self, route: str) -> int:
        """Requests the sandbox served on one route (its template, e.g. a read by id)."""
        return int(self.control("GET", "/stats")["requests"].get(route, 0))

    def book_as_another_client(self, slot_id: str, start: str, end: str) -> dict[str, Any]:
        """A booked Appointment on the slot, written at the EHR by someone else (a plain
        server leaves the Slot free)."""
        other = {
            "resourceType": "Appointment",
            "status": "booked",
            "start": start,
            "end": end,
            "slot": [{"reference": f"Slot/{slot_id}"}],
            "participant": [{"actor": {"reference": "Patient/pat-2"}, "status": "accepted"}],
        }
        r = httpx.post(f"{self.sandbox.base_url}/Appointment", json=other, timeout=30)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def ehr_appointment(self, appointment_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.sandbox.base_url}/Appointment/{appointment_id}", timeout=30)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]


P = TypeVar("P", bound=Plain)


@contextmanager
def running_plain(tmp: Path, *, size: int, harness: type[P], **settings: Any) -> Iterator[P]:
    """A throwaway cache database, the plain-r4 sandbox and the API in process."""
    with (
        throwaway_postgres() as db_url,
        start_sandbox(
            profile="plain-r4", size=size, extra_args=("--horizon-days", str(HORIZON_DAYS))
        ) as sandbox,
    ):
        upgrade(db_url)
        app = create_app(plain_settings(db_url, sandbox, tmp, **settings))
        engine = make_engine(db_url)
        with TestClient(app, raise_server_exceptions=False) as api:
            yield harness(sandbox, api, app, engine)
        engine.dispose()


@pytest.fixture(scope="module")
def _plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plain]:
    with running_plain(tmp_path_factory.mktemp("plain"), size=4000, harness=Plain) as plain:
        yield plain


@pytest.fixture
def plain(_plain: Plain) -> Plain:
    _plain.reset()
    return _plain


def _days() -> list[date]:
    first = bookable_day(load_test_rules())
    last = datetime.now(UTC).date() + timedelta(days=HORIZON_DAYS - 1)
    days = []
    while first < last:
        if first.weekday() < 5:
            days.append(first)
        first += timedelta(days=1)
    return days


class Churn:
    """Polls and refreshes through the app's own dispatcher, all the while."""

    def __init__(self, plain: Plain, days: list[date]) -> None:
        self.dispatcher = plain.app.state.dispatcher
        self.days = days
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0

    def _run(self) -> None:
        rng = random.Random(7)
        while not self.stop.is_set():
            day = rng.choice(self.days)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            self.dispatcher.refresh(f"sch-pr-{rng.randint(1, 6)}", start, start + timedelta(days=1))
            if self.sent % 10 == 0:
                self.dispatcher.poll("test churn")
            self.sent += 1
            self.stop.wait(0.1)

    def __enter__(self) -> Churn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def test_a_booked_slot_is_never_offered_or_booked_again(plain: Plain) -> None:
    """find -> book -> sync -> find -> book the same slot, 200 times, while polls and
    refreshes run: the EHR never gets a second active Appointment on any slot."""
    days = _days()
    booked: set[str] = set()
    conflicts = 0
    with Churn(plain, days) as churn:
        for n in range(CYCLES):
            day = days[n % len(days)]
            offer = next(o for o in plain.offers(day) if not set(slot_ids(o)) & booked)
            first = plain.book(offer)
            assert first.status_code == 201, first.text
            appointment = first.json()["entry"][0]["resource"]
            assert appointment["status"] == "booked"
            if n % 50 == 0:
                assert_valid("r4", first.json())
            booked.update(slot_ids(offer))
            plain.sync_day(day)  # sees the Slot free: a generic server never marks it busy
            assert not set(slot_ids(offer)) & plain.offered_slots(day), f"cycle {n}"
            second = plain.book(offer)
            assert_outcome(second, 409, "conflict")
            conflicts += 1
    assert churn.sent > 0
    counts = plain.slot_appointments()
    assert counts["doubleBooked"] == []
    active = {
        a["id"]
        for s in counts["slots"]
        for a in s["appointments"]
        if a["status"] not in ("cancelled", "noshow", "entered-in-error", "fulfilled")
    }
    assert len(active) == CYCLES, "one Appointment per cycle, none from the second $book"
    assert {s["slot"] for s in counts["slots"]} == booked
    assert conflicts == CYCLES


def test_booking_a_slot_busy_taken_or_deleted_at_the_ehr_is_409_and_corrects_the_cache(
    plain: Plain,
) -> None:
    day = _days()[0]
    offers = [o for o in plain.offers(day) if len(slot_ids(o)) == 1]
    busy, taken, deleted = offers[0], offers[3], offers[6]

    def make_busy() -> None:
        plain.control("POST", "/mutate", json={"op": "book", "slot": slot_ids(busy)[0]})

    def make_taken() -> None:
        plain.book_as_another_client(slot_ids(taken)[0], taken["start"], taken["end"])

    def make_deleted() -> None:
        r = httpx.delete(f"{plain.sandbox.base_url}/Slot/{slot_ids(deleted)[0]}", timeout=30)
        assert r.status_code == 204

    cases = ((busy, make_busy, "is busy at the EHR"),
             (taken, make_taken, "is taken by another appointment"),
             (deleted, make_deleted, "no longer exists at the EHR"))  # fmt: skip
    for offer, change, said in cases:
        assert set(slot_ids(offer)) <= plain.offered_slots(day), "the cache does not know yet"
        change()
        before = plain.slot_appointments()
        outcome = assert_outcome(plain.book(offer), 409, "conflict")
        assert said in outcome["issue"][0]["diagnostics"]
        assert not set(slot_ids(offer)) & plain.offered_slots(day), "the cache was corrected"
        assert plain.slot_appointments() == before, "nothing was written at the EHR"
    with plain.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM slot_claims")).scalar() == 0

    # The cache now knows the slots are gone: 409 again, without asking the EHR (reads
    # by id are the booking's re-check; searches and history are the poller's).
    read_by_id = "GET /fhir/{rtype}/{rid}"
    asked = plain.ehr_requests(read_by_id)
    assert asked >= len(cases), "the first bookings re-checked their slots at the EHR"
    for offer, _, _ in cases:
        outcome = assert_outcome(plain.book(offer), 409, "conflict")
        assert "no longer free" in outcome["issue"][0]["diagnostics"]
    assert plain.ehr_requests(read_by_id) == asked
    assert plain.ehr_requests("POST /fhir/Appointment") == 1  # ours above, none from slotsync


def test_a_hold_says_when_it_expires_and_an_expired_hold_is_cancelled_at_the_ehr(
    plain: Plain,
) -> None:
    day = _days()[1]
    offer = plain.offers(day)[0]
    r = plain.hold(offer)
    assert r.status_code == 201, r.text
    assert_valid("r4", r.json())
    held = r.json()["entry"][0]["resource"]
    assert held["status"] == "pending"
    expires = datetime.strptime(r.headers["Expires"], "%a, %d %b %Y %H:%M:%S GMT")
    expires = expires.replace(tzinfo=UTC)
    assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 301
    assert not set(slot_ids(offer)) & plain.offered_slots(day)
    assert plain.ehr_appointment(held["id"])["status"] == "pending"

    with plain.engine.begin() as conn:  # the hold runs out
        conn.execute(text("UPDATE appointment_holds SET expires_at = now() - interval '1 second'"))
        conn.execute(text("UPDATE slot_claims SET expires_at = now() - interval '1 second'"))

    def cancelled() -> dict[str, Any] | None:
        found = plain.ehr_appointment(held["id"])
        return found if found["status"] == "cancelled" else None

    # the in-process periodic job, every second
    found = wait_until(cancelled, 15, "the expired hold cancelled at the EHR", interval=0.2)
    assert_valid("r4", found)
    assert found["cancelationReason"]["text"] == "hold expired without a booking"
    assert plain.slot_appointments()["slots"][0]["active"] == 0
    with plain.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM appointment_holds")).scalar() == 0
    assert set(slot_ids(offer)) <= plain.offered_slots(day), "the slots are offered again"
    late = params(("appt-id", "valueUri", f"Appointment/{held['id']}"),
                  ("patient-id", "valueUri", PATIENT))  # fmt: skip
    r = plain.api.post("/fhir/Appointment/$book", json=late, headers=AUTH)
    assert_outcome(r, 409, "conflict")
    assert plain.ehr_appointment(held["id"])["status"] == "cancelled"


def test_a_hold_booked_in_time_is_never_cancelled(plain: Plain) -> None:
    day = _days()[2]
    offer = plain.offers(day)[0]
    held = plain.hold(offer).json()["entry"][0]["resource"]
    body = params(("appt-id", "valueUri", f"Appointment/{held['id']}"),
                  ("patient-id", "valueUri", PATIENT))  # fmt: skip
    r = plain.api.post("/fhir/Appointment/$book", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["resource"]["status"] == "booked"
    with plain.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM appointment_holds")).scalar() == 0
    time.sleep(1.5)  # a periodic run or two
    assert plain.ehr_appointment(held["id"])["status"] == "booked"
    plain.sync_day(day)
    assert not set(slot_ids(offer)) & plain.offered_slots(day)
    assert plain.slot_appointments()["doubleBooked"] == []


def test_a_slot_held_by_a_lapsed_hold_can_be_booked_and_the_hold_is_cancelled(
    plain: Plain,
) -> None:
    """Whoever ends the lapsed hold first (the booking's re-check or the periodic job),
    the booking goes through and the EHR keeps one active Appointment on the slot."""
    day = _days()[3]
    offer = plain.offers(day)[0]
    held = plain.hold(offer).json()["entry"][0]["resource"]
    with plain.engine.begin() as conn:
        conn.execute(text("UPDATE appointment_holds SET expires_at = now() - interval '1 second'"))
        conn.execute(text("UPDATE slot_claims SET expires_at = now() - interval '1 second'"))
    r = plain.book(offer)
    assert r.status_code == 201, r.text
    assert plain.ehr_appointment(held["id"])["status"] == "cancelled"
    counts = plain.slot_appointments()
    assert counts["doubleBooked"] == []
    assert [a["status"] for s in counts["slots"] for a in s["appointments"]].count("booked") == len(
        slot_ids(offer)
    )


def test_with_mark_slots_busy_a_booking_writes_its_slots_busy_and_a_cancel_frees_them(
    plain: Plain,
) -> None:
    """SLOTSYNC_EHR_MARK_SLOTS_BUSY: for servers whose other clients read only Slot.status."""
    booking = plain.app.state.booking
    marking = booking.settings.model_copy(update={"ehr_mark_slots_busy": True})
    plain.app.state.booking = replace(booking, settings=marking)
    try:
        day = _days()[2]
        offer = plain.offers(day)[0]
        answer = plain.book(offer)
        assert answer.status_code == 201, answer.text
        appointment = answer.json()["entry"][0]["resource"]

        def statuses() -> set[str]:
            return {
                httpx.get(f"{plain.sandbox.base_url}/Slot/{sid}", timeout=10).json()["status"]
                for sid in slot_ids(offer)
            }

        assert statuses() == {"busy"}
        cancel = [{"op": "replace", "path": "/status", "value": "cancelled"}]
        r = plain.api.patch(
            f"/fhir/Appointment/{appointment['id']}",
            json=cancel,
            headers=AUTH | {"Content-Type": "application/json-patch+json"},
        )
        assert r.status_code == 200, r.text
        assert statuses() == {"free"}
        assert set(slot_ids(offer)) <= plain.offered_slots(day)
    finally:
        plain.app.state.booking = booking
    # off (the default): the Slot stays as the server left it
    offer = plain.offers(_days()[2])[0]
    assert plain.book(offer).status_code == 201
    sid = slot_ids(offer)[0]
    assert httpx.get(f"{plain.sandbox.base_url}/Slot/{sid}", timeout=10).json()["status"] == "free"
