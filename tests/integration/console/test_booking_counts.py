"""Holds, bookings and cancellations are counted as they happen, per hour and kind, on
both backends; and a real hold, booking and cancellation through the API against the
sandbox EHR shows on the console's Bookings page, with no patient data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.api.main import create_app
from app.cache import booking_counts
from app.cache.db import make_engine, transaction
from app.ehr.client import EhrClient
from app.settings import Settings
from app.sync.load import load_window
from app.sync.windows import day_start
from benchmarks.databases import throwaway_postgres
from sandbox_ehr.process import start_sandbox
from tests.booking_support import (
    DERMATOLOGY,
    OFFICE_VISIT,
    RULES_PATH,
    bookable_day,
    load_test_rules,
    params,
    token_of,
)

from .test_console import log_in

KEY = "booking-counts-key-0123456789"
HEADERS = {"X-API-Key": KEY}
HORIZON_DAYS = 10
T = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def test_events_are_counted_per_hour_and_kind(engine: Engine) -> None:
    with transaction(engine) as session:
        booking_counts.add(session, booking_counts.HOLD, T + timedelta(minutes=5))
        booking_counts.add(session, booking_counts.HOLD, T + timedelta(minutes=59, seconds=59))
        booking_counts.add(session, booking_counts.BOOK, T + timedelta(minutes=10))
        booking_counts.add(session, booking_counts.HOLD, T + timedelta(hours=2, minutes=1))
        booking_counts.add(session, booking_counts.CANCEL, T - timedelta(hours=30))  # too old
    with transaction(engine) as session:  # a later transaction adds to the same row
        booking_counts.add(session, booking_counts.EXPIRE, T + timedelta(hours=2))
        counts = booking_counts.hourly(session, T - timedelta(hours=1), T + timedelta(hours=2))
    assert counts.hours == [T + timedelta(hours=h) for h in (-1, 0, 1, 2)]
    assert counts.by_kind[booking_counts.HOLD] == [0, 2, 0, 1]
    assert counts.by_kind[booking_counts.BOOK] == [0, 1, 0, 0]
    assert counts.by_kind[booking_counts.EXPIRE] == [0, 0, 0, 1]
    assert counts.total(booking_counts.CANCEL) == 0
    with pytest.raises(ValueError), transaction(engine) as session:
        booking_counts.add(session, "reschedule", T)
    with transaction(engine) as session:
        assert booking_counts.prune(session, T - timedelta(hours=24)) == 1
        assert booking_counts.hourly(session, T - timedelta(days=2), T).total("cancel") == 0


@dataclass
class Stack:
    api: TestClient
    engine: Engine


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The sandbox EHR (STU3, $hold/$book) as a process, the API in process over a
    throwaway PostgreSQL cache loaded from it."""
    tmp: Path = tmp_path_factory.mktemp("booking-counts")
    with (
        throwaway_postgres(migrated=True) as db_url,
        start_sandbox(size=1500, extra_args=("--horizon-days", str(HORIZON_DAYS))) as ehr,
    ):
        settings = Settings(
            data_dir=tmp,
            database_url=db_url,
            ehr_base_url=ehr.base_url,
            ehr_booking="operations",
            ehr_subscriptions=False,
            horizon_days=HORIZON_DAYS,
            rules_path=RULES_PATH,
            find_warm_up=False,
            api_keys={KEY: ["system/*.*", "slotsync/admin"]},
        )
        engine = make_engine(db_url)
        with TestClient(create_app(settings), headers=HEADERS) as api:
            start = day_start(datetime.now(UTC))
            with EhrClient(ehr.base_url, fhir_version="stu3") as client:
                load_window(engine, client, start, start + timedelta(days=HORIZON_DAYS))
            yield Stack(api, engine)
        engine.dispose()


def _offers(api: TestClient) -> list[dict[str, Any]]:
    day = bookable_day(load_test_rules())
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    answer = api.get(
        "/fhir/Appointment/$find",
        params={
            "start": start.isoformat(),
            "end": (start + timedelta(days=1)).isoformat(),
            "visit-type": OFFICE_VISIT,
            "specialty": DERMATOLOGY,
            "_count": "100",
        },
    )
    assert answer.status_code == 200, answer.text
    return [e["resource"] for e in answer.json().get("entry", []) if e["search"]["mode"] == "match"]


def _appointment(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    resource: dict[str, Any] = answer.json()["entry"][0]["resource"]
    return resource


def _count(page: str, kind: str) -> int:
    found = re.search(rf'id="count-{kind}">(\d+)<', page)
    assert found, page
    return int(found.group(1))


def test_a_real_hold_booking_and_cancel_show_in_the_counts(stack: Stack) -> None:
    api = stack.api
    log_in(api, KEY)
    before = api.get("/console/bookings").text
    counted = {kind: _count(before, kind) for kind in booking_counts.KINDS}

    patient = {"resourceType": "Patient", "name": [{"family": "Counter", "given": ["Ada"]}],
               "gender": "female", "birthDate": "1980-01-02"}  # fmt: skip
    registered = api.post("/fhir/Patient", json=patient)
    assert registered.status_code in (200, 201), registered.text
    patient_ref = f"Patient/{registered.json()['id']}"

    first, second = _offers(api)[:2]
    held = _appointment(
        api.post("/fhir/Appointment/$hold", json=params(("appt-id", "valueUri", token_of(first)))),
        201,
    )
    booked_hold = _appointment(
        api.post(
            "/fhir/Appointment/$book",
            json=params(
                ("appt-id", "valueUri", f"Appointment/{held['id']}"),
                ("patient-id", "valueUri", patient_ref),
            ),
        ),
        200,
    )
    assert booked_hold["status"] == "booked"
    booked = api.post(
        "/fhir/Appointment/$book",
        json=params(
            ("appt-id", "valueUri", token_of(second)), ("patient-id", "valueUri", patient_ref)
        ),
    )
    assert booked.status_code in (200, 201), booked.text
    cancelled = api.patch(
        f"/fhir/Appointment/{held['id']}",
        json=[{"op": "replace", "path": "/status", "value": "cancelled"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"

    page = api.get("/console/bookings").text
    now = {kind: _count(page, kind) for kind in booking_counts.KINDS}
    assert {kind: now[kind] - counted[kind] for kind in now} == {
        "hold": 1, "book": 2, "cancel": 1, "expire": 0,
    }  # fmt: skip
    assert "Holds per hour" in page and "Cancellations per hour" in page
    assert page.count('<polyline class="series"') >= 3  # holds, bookings, cancellations drawn
    assert 'id="claims-booked">' in page  # the overlay's live claims beside the counts
    # resource ids only: the patient booked for appears nowhere on the page
    assert patient_ref not in page and "Counter" not in page
