"""Embedded mode against a generic R4 server keeps itself fresh by polling.

The API runs in process with every periodic job of its LocalDispatcher (the same list
as beat), over real HTTP to the sandbox's plain-r4 profile (no notifications). Changes
made at the EHR (a slot booked there, a slot that becomes free, an Appointment written
by another client) must reach ``$find`` within one poll interval and a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.ehr.client import EhrClient
from tests.integration.test_plain_r4_booking import (
    PAGE_SIZE,
    Plain,
    _days,
    running_plain,
)

POLL_SECONDS = 5  # the setting's floor
BOUND = POLL_SECONDS + 1.0


class Embedded(Plain):
    """The plain-R4 API of the booking tests, here with its own polling left running."""

    @property
    def base_url(self) -> str:
        return self.sandbox.base_url

    def offered(self, day: date) -> set[str]:
        return self.offered_slots(day)

    def busy_slot(self, day: date, beside: str) -> str:
        """A slot of ``day`` the EHR has busy (so the cache does not hold it), on the
        schedule of the offered slot ``beside`` and starting after it (so that the
        rules would offer it: one before it may fall inside a lead time, depending on
        the hour the test runs at)."""
        offered = self.slot(beside)
        schedule = offered["schedule"]["reference"].removeprefix("Schedule/")
        after = datetime.fromisoformat(offered["start"])
        with EhrClient(self.base_url, fhir_version="r4", page_size=PAGE_SIZE) as client:
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            for bundle in client.slot_search_pages(
                start,
                start + timedelta(days=1),
                schedule_ids=[schedule],
                statuses=("busy",),
                include_schedule=False,
            ):
                for entry in bundle.get("entry") or ():
                    resource = entry["resource"]
                    if (
                        resource["resourceType"] == "Slot"
                        and datetime.fromisoformat(resource["start"]) > after
                    ):
                        return str(resource["id"])
        raise AssertionError(f"no busy slot on {day}")

    def slot(self, slot_id: str) -> dict[str, Any]:
        return httpx.get(f"{self.base_url}/Slot/{slot_id}", timeout=10).json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    with running_plain(
        tmp_path_factory.mktemp("fresh"),
        size=3000,
        harness=Embedded,
        poll_interval_seconds=POLL_SECONDS,
        watchdog_seconds=1,
    ) as embedded:
        embedded.load()
        yield embedded


def _seconds_until(condition: Callable[[], bool], limit: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    return float("inf")


def test_changes_at_the_ehr_reach_find_within_a_poll_interval(embedded: Embedded) -> None:
    day = _days()[1]
    # the first polls (start-up, then a full read of the near days) are behind us
    assert _seconds_until(lambda: bool(embedded.offered(day)), 30) < 30
    time.sleep(POLL_SECONDS + 1)
    lags: dict[str, float] = {}

    booked = sorted(embedded.offered(day))[0]
    embedded.control("POST", "/mutate", json={"op": "book", "slot": booked})
    lags["slot booked at the EHR"] = _seconds_until(
        lambda: booked not in embedded.offered(day), 3 * BOUND
    )

    freed = embedded.busy_slot(day, beside=sorted(embedded.offered(day))[0])
    embedded.control("POST", "/mutate", json={"op": "free", "slot": freed})
    lags["slot freed at the EHR (new to the cache)"] = _seconds_until(
        lambda: freed in embedded.offered(day), 3 * BOUND
    )

    taken = sorted(embedded.offered(day) - {freed})[0]
    slot = embedded.slot(taken)
    embedded.book_as_another_client(taken, slot["start"], slot["end"])
    lags["slot booked by another client (Slot left free)"] = _seconds_until(
        lambda: taken not in embedded.offered(day), 3 * BOUND
    )
    assert all(lag <= BOUND for lag in lags.values()), lags
