"""End to end with real processes: sandbox EHR -> `slotsync resync` -> PostgreSQL -> the
SMART Scheduling Links feed, read over HTTP as an aggregator reads it.

The sandbox's organisation (clinics in several time zones, rooms, devices) under the
bundled multi-clinic rules (per-day caps, joined slots, several assets): the free Slots
of the feed are exactly the offers `$find` makes over the same days, and every
resource is valid R4 whose references resolve within the feed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class as r4_model

from app.settings import DEMO_API_KEY
from benchmarks.databases import throwaway_postgres
from benchmarks.processes import free_port, wait_for_http
from sandbox_ehr.process import start_sandbox

pytestmark = pytest.mark.integration

HORIZON_DAYS = 10
LINK = "https://app.example.org/book?appointment={proposal_id}"


def slotsync(*args: str, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )


class Stack(NamedTuple):
    api: str  # slotsync's base URL
    ehr: str  # the sandbox's FHIR base URL


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with (
        throwaway_postgres() as db_url,
        start_sandbox(size=3000, extra_args=("--horizon-days", str(HORIZON_DAYS))) as sandbox,
    ):
        port = free_port()
        env = {
            **os.environ,
            "SLOTSYNC_DATABASE_URL": db_url,
            "SLOTSYNC_EHR_BASE_URL": sandbox.base_url,
            "SLOTSYNC_HORIZON_DAYS": str(HORIZON_DAYS),
            "SLOTSYNC_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "SLOTSYNC_SMART_BOOKING_LINK": LINK,
            "SLOTSYNC_SMART_SLOTS_PER_FILE": "400",
        }
        env.pop("SLOTSYNC_REDIS_URL", None)
        slotsync("db", "upgrade", env=env)
        slotsync("resync", env=env)
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for_http(f"{base}/healthz", timeout=60)
            yield Stack(base, sandbox.base_url)
        finally:
            server.terminate()
            server.wait(timeout=20)


def find_offers(base: str, start: datetime, end: datetime) -> dict[str, datetime]:
    """$find's offers (token -> start) over [start, end), read page by page."""
    offers: dict[str, datetime] = {}
    url: str | None = f"{base}/fhir/Appointment/$find"
    params: dict[str, str] | None = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "_count": "1000",
    }
    with httpx.Client(headers={"X-API-Key": DEMO_API_KEY}, timeout=60) as client:
        while url is not None:
            page = client.get(url, params=params)
            assert page.status_code == 200, page.text
            params = None  # the next link carries them
            body = page.json()
            for entry in body.get("entry", ()):
                resource = entry["resource"]
                if resource["resourceType"] == "Appointment":
                    token = resource["identifier"][0]["value"]
                    offers[token] = datetime.fromisoformat(resource["start"])
            url = next((x["url"] for x in body.get("link", ()) if x["relation"] == "next"), None)
    return offers


def test_an_aggregator_reads_what_find_offers(stack: Stack) -> None:
    api = stack.api
    with httpx.Client(timeout=120) as client:
        manifest = client.get(f"{api}/smart/$bulk-publish")
        for _ in range(60):  # the first refresh may still be working
            if manifest.status_code != 503:
                break
            manifest = client.get(f"{api}/smart/$bulk-publish")
        assert manifest.status_code == 200, manifest.text
        feed: dict[str, list[dict]] = {}
        slot_files = 0
        for item in manifest.json()["output"]:
            answer = client.get(item["url"], headers={"Accept": "application/fhir+ndjson"})
            assert answer.status_code == 200, answer.text
            resources = [json.loads(line) for line in answer.text.splitlines()]
            for resource in resources:
                assert resource["resourceType"] == item["type"]
                r4_model(item["type"]).model_validate(resource)
            feed.setdefault(item["type"], []).extend(resources)
            slot_files += item["type"] == "Slot"
    assert slot_files > 1

    ids = {(kind, r["id"]) for kind, rs in feed.items() for r in rs}
    for schedule in feed["Schedule"]:
        for actor in schedule["actor"]:
            assert tuple(actor["reference"].split("/")) in ids
    for role in feed.get("PractitionerRole", ()):
        for location in role.get("location", ()):
            assert tuple(location["reference"].split("/")) in ids
    published: dict[str, datetime] = {}
    for slot in feed["Slot"]:
        assert ("Schedule", slot["schedule"]["reference"].split("/")[1]) in ids
        if slot["status"] == "free":
            link = next(e["valueUrl"] for e in slot["extension"] if e["url"].endswith("link"))
            token = parse_qs(urlsplit(link).query)["appointment"][0]
            published[token] = datetime.fromisoformat(slot["start"])
    assert published

    # the feed was worked out a moment ago: compare the days both surely cover
    now = datetime.now(UTC)
    first, last = now + timedelta(hours=2), now + timedelta(days=HORIZON_DAYS - 1)
    offered = find_offers(api, now, now + timedelta(days=365))
    inside = lambda offers: {t for t, start in offers.items() if first <= start < last}  # noqa: E731
    assert len(inside(offered)) > 100, "the sandbox gives many offers"
    assert inside(published) == inside(offered)

    # every Location states the EHR's own address, phone, url and position
    assert feed["Location"]
    with httpx.Client(timeout=60) as client:
        for location in feed["Location"]:
            ehr_id = location["identifier"][0]["value"]
            truth = client.get(f"{stack.ehr}/Location/{ehr_id}").json()
            address = {k: v for k, v in truth["address"].items() if k != "use"}
            assert location["address"] == address
            assert location["telecom"] == [
                {"system": p["system"], "value": p["value"]}
                for p in truth["telecom"]
                if p["system"] in ("phone", "url")
            ]
            assert {p["system"] for p in location["telecom"]} == {"phone", "url"}
            assert location["position"] == truth["position"]
            assert location["name"] == truth["name"]
