"""The embedded default keeps itself fresh: `slotsync serve` with no broker, against the
sandbox EHR over real HTTP, subscribes, listens, polls and reaps in process.

An EHR-side booking must leave `$find` within 1 s by notification, or within the poll
interval + 1 s with subscriptions off; the status report names the feed's real state.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from app.cache.migrate import upgrade
from benchmarks.processes import Child, free_port, process_env, wait_until
from benchmarks.stacks import start_api
from sandbox_ehr.process import start_sandbox

pytestmark = pytest.mark.timeout(180)

ADMIN = {"X-API-Key": "slotsync-demo-key"}
HORIZON_DAYS = 10
POLL_SECONDS = 5


@dataclass
class Embedded:
    api: Child
    control_url: str

    @property
    def url(self) -> str:
        return self.api.url

    def log(self) -> str:
        return self.api.tail(3000)

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, headers=ADMIN, timeout=10)

    def status(self) -> dict:
        return self.get("/admin/sync-status", limit="1").json()["overall"]

    def offered_slots(self) -> dict[str, str]:
        """slot id -> start of every offer in days 2..5 (office visits, one slot each)."""
        today = datetime.now(UTC).date()
        bundle = self.get(
            "/fhir/Appointment/$find",
            start=str(today + timedelta(days=2)),
            end=str(today + timedelta(days=5)),
            _count="1000",
        ).json()
        offered: dict[str, str] = {}
        for entry in bundle.get("entry", []):
            resource = entry["resource"]
            if resource["resourceType"] != "Appointment":
                continue
            for ref in resource.get("slot", []):
                offered[ref["reference"].removeprefix("Slot/")] = resource["start"]
        return offered


@contextmanager
def embedded(tmp_path: Path, **extra: str) -> Iterator[Embedded]:
    port = free_port()
    with start_sandbox(
        size=1500, page_size=200, extra_args=("--horizon-days", str(HORIZON_DAYS))
    ) as sandbox:
        data = tmp_path / "data"
        data.mkdir()
        env = process_env(
            {
                "SLOTSYNC_DATA_DIR": str(data),
                "SLOTSYNC_EHR_BASE_URL": sandbox.base_url,
                "SLOTSYNC_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
                "SLOTSYNC_HORIZON_DAYS": str(HORIZON_DAYS),
                "SLOTSYNC_POLL_INTERVAL_SECONDS": str(POLL_SECONDS),
                "SLOTSYNC_POLL_NEAR_DAYS": str(HORIZON_DAYS),
                "SLOTSYNC_WATCHDOG_SECONDS": "1",
                "SLOTSYNC_HEARTBEAT_SECONDS": "5",
                "SLOTSYNC_STALE_WARNING_SECONDS": "86400",
                **extra,
            }
        )
        upgrade(f"sqlite:///{(data / 'cache.sqlite3').resolve()}")
        api = start_api(env, port=port, log=tmp_path / "api.log", timeout=60)
        app = Embedded(api, sandbox.control_url)
        try:
            resync = httpx.post(f"{app.url}/admin/resync", headers=ADMIN, json={}, timeout=10)
            assert resync.status_code == 202
            wait_until(
                lambda: app.status()["last_complete_load_at"],
                90,
                "the initial load",
                context=app.log,
            )
            yield app
        finally:
            api.stop(timeout=20, group=True)


def book_at_the_ehr(app: Embedded, slot_id: str) -> None:
    answer = httpx.post(
        f"{app.control_url}/mutate", json={"op": "book", "slot": slot_id}, timeout=10
    )
    answer.raise_for_status()


def test_embedded_mode_sees_an_ehr_booking_by_notification_within_a_second(tmp_path):
    with embedded(tmp_path) as app:
        feed = wait_until(
            lambda: next((f for f in app.status()["feeds"] if f["status"] == "active"), None),
            30,
            "an active Subscription",
            context=app.log,
        )
        assert feed["endpoint"].endswith("/webhook/subscription")
        offered = app.offered_slots()
        assert offered, "the demo organisation offers office visits"
        slot_id = sorted(offered)[len(offered) // 2]
        booked_at = time.monotonic()
        book_at_the_ehr(app, slot_id)
        wait_until(lambda: slot_id not in app.offered_slots(), 1.0, "the booking in $find")
        assert time.monotonic() - booked_at <= 1.0


def test_embedded_mode_without_notifications_polls_within_the_interval(tmp_path):
    with embedded(tmp_path, SLOTSYNC_EHR_SUBSCRIPTIONS="false") as app:
        overall = app.status()
        assert overall["feed_state"] == "polling"
        feeds = wait_until(lambda: app.status()["feeds"], 10, "the feed in status")
        assert feeds[0]["next_poll_at"] is not None  # the poll that is really coming
        offered = app.offered_slots()
        slot_id = sorted(offered)[len(offered) // 3]
        booked_at = time.monotonic()
        book_at_the_ehr(app, slot_id)
        wait_until(
            lambda: slot_id not in app.offered_slots(),
            POLL_SECONDS + 1.0,
            "the booking in $find",
            context=app.log,
        )
        assert time.monotonic() - booked_at <= POLL_SECONDS + 1.0
        polled = app.status()["feeds"][0]
        assert polled["last_polled_at"] is not None and polled["last_error"] is None
