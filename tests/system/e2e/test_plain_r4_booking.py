"""No double booking against a generic R4 server with real processes: the API, a Celery
worker and beat on Redis and PostgreSQL, the sandbox's plain-r4 profile over HTTP (no
``$hold``/``$book``; a booking is ``POST Appointment`` and leaves its Slot free)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from benchmarks.databases import throwaway_postgres, throwaway_redis_db
from tests.booking_support import (
    OFFICE_VISIT,
    bookable_day,
    load_test_rules,
    params,
    slot_ids,
    token_of,
)
from tests.fhir_checks import assert_outcome, assert_valid
from tests.system.e2e.pipeline import ADMIN, HORIZON_DAYS, Pipeline, running_pipeline

CYCLES = 200
PATIENT = "Patient/pat-1"
PLAIN_R4 = {
    "SLOTSYNC_EHR_FHIR_VERSION": "r4",
    "SLOTSYNC_EHR_PAGE_SIZE": "100",
    "SLOTSYNC_EHR_SUBSCRIPTIONS": "false",
    "SLOTSYNC_HOLD_EXPIRY_SECONDS": "1",
    "SLOTSYNC_POLL_NEAR_DAYS": "3",
}


@pytest.fixture(scope="module")
def pipeline() -> Iterator[Pipeline]:
    with (
        throwaway_postgres() as db_url,
        throwaway_redis_db() as redis_url,
        running_pipeline(
            db_url=db_url, redis_url=redis_url, extra_env=PLAIN_R4, profile="plain-r4"
        ) as p,
    ):
        yield p


def _days() -> list[date]:
    day = bookable_day(load_test_rules())
    last = datetime.now(UTC).date() + timedelta(days=HORIZON_DAYS - 1)
    days = []
    while day < last:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def _window(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


class Api:
    def __init__(self, p: Pipeline) -> None:
        self.p = p
        self.http = httpx.Client(base_url=f"{p.api_url}/fhir", headers=ADMIN, timeout=60)

    def offers(self, day: date) -> list[dict[str, Any]]:
        start, end = _window(day)
        r = self.http.get(
            "/Appointment/$find",
            params={"start": start.isoformat(), "end": end.isoformat(),
                    "visit-type": OFFICE_VISIT, "_count": "1000"},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        return [e["resource"] for e in r.json().get("entry", ()) if e["search"]["mode"] == "match"]

    def offered_slots(self, day: date) -> set[str]:
        return {sid for offer in self.offers(day) for sid in slot_ids(offer)}

    def book(self, offer: dict[str, Any]) -> httpx.Response:
        body = params(("appt-id", "valueUri", token_of(offer)), ("patient-id", "valueUri", PATIENT))
        return self.http.post("/Appointment/$book", json=body)


def _refresh(p: Pipeline, schedule_ids: set[str], day: date) -> None:
    """The worker re-reads the day of these schedules (Slots and Appointments)."""
    start, end = _window(day)
    results = [
        p.celery.send_task(
            "slotsync.refresh", (sid, start.isoformat(), end.isoformat()), ignore_result=False
        )
        for sid in sorted(schedule_ids)
    ]
    for result in results:
        result.get(timeout=60)


def _schedules_of(p: Pipeline, slots: list[str]) -> set[str]:
    with p.engine.connect() as conn:
        rows = conn.execute(text("SELECT schedule_id FROM slots WHERE id = ANY(:ids)"),
                            {"ids": slots})  # fmt: skip
        return {r[0] for r in rows}


def test_a_booked_slot_is_never_offered_or_booked_again_with_a_celery_worker(
    pipeline: Pipeline,
) -> None:
    run = pipeline.load(timeout=180)
    assert run.status == "ok", pipeline.log("worker")
    api = Api(pipeline)
    days = _days()
    stop = threading.Event()

    def churn() -> None:  # refreshes and polls on the worker besides beat's own
        rng = random.Random(3)
        n = 0
        while not stop.is_set():
            start, end = _window(rng.choice(days))
            pipeline.celery.send_task(
                "slotsync.refresh", (f"sch-pr-{rng.randint(1, 6)}", start.isoformat(),
                                     end.isoformat()),
            )  # fmt: skip
            if n % 10 == 0:
                pipeline.celery.send_task("slotsync.poll", ("test churn",))
            n += 1
            stop.wait(0.5)

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    booked: set[str] = set()
    try:
        for n in range(CYCLES):
            day = days[n % len(days)]
            offer = next(o for o in api.offers(day) if not set(slot_ids(o)) & booked)
            schedules = _schedules_of(pipeline, slot_ids(offer))
            first = api.book(offer)
            assert first.status_code == 201, first.text
            if n % 50 == 0:
                assert_valid("r4", first.json())
            booked.update(slot_ids(offer))
            _refresh(pipeline, schedules, day)  # the EHR still says free
            assert not set(slot_ids(offer)) & api.offered_slots(day), f"cycle {n}"
            assert_outcome(api.book(offer), 409, "conflict")
    finally:
        stop.set()
        thread.join(timeout=10)
    counts = pipeline.control("GET", "/slot-appointments")
    assert counts["doubleBooked"] == []
    active = {
        a["id"]
        for s in counts["slots"]
        for a in s["appointments"]
        if a["status"] not in ("cancelled", "noshow", "entered-in-error", "fulfilled")
    }
    assert len(active) == CYCLES
    assert {s["slot"] for s in counts["slots"]} == booked
