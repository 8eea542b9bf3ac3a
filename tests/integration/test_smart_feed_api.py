"""The SMART Scheduling Links feed through the FastAPI app, read as an aggregator would,
over a cache loaded from a scripted EHR, on both backends."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class as r4_model

from app.api.main import create_app
from app.cache import claims
from app.cache.db import transaction
from app.core.domain import VISIT_TYPE_SYSTEM, Slot
from app.ehr.client import EhrClient
from app.ehr.transport import RetryPolicy
from app.publish import service
from app.settings import DEMO_API_KEY, Settings
from app.sync.load import load_window
from tests.factories import T0, bundle, practitioner_json, schedule_json, slot_json
from tests.fhir_checks import assert_operation_outcome
from tests.paths import FIXTURES

EXAMPLES = FIXTURES / "smart-scheduling-links"
OFFICE = f"{VISIT_TYPE_SYSTEM}|office-visit"
CONSULT = f"{VISIT_TYPE_SYSTEM}|consult"
MANIFEST = "/smart/$bulk-publish"
BASE_URL = "https://slotsync.example.org"
LINK = "https://app.example.org/book?slot={slot_id}&appointment={proposal_id}"
WINDOW = (T0 - timedelta(days=1), T0 + timedelta(days=21))
RULES = {
    "version": 1,
    "organization": {
        "name": "Test clinics",
        "timezone": "America/New_York",
        "opening_hours": {d: ["08:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    },
    "defaults": {"min_lead_minutes": 0, "max_horizon_days": 60, "join_contiguous": False},
    "visit_types": [
        {
            "code": OFFICE,
            "display": "Office visit",
            "duration_minutes": 15,
            "assets": [{"kind": "practitioner"}],
        },
        {
            "code": CONSULT,
            "display": "Consultation",
            "duration_minutes": 30,
            "join_contiguous": True,
            "slot_service_types": [OFFICE],
            "max_offers_per_day_per_practitioner": 2,
            "assets": [{"kind": "practitioner"}],
        },
    ],
}
CLINICS = {
    "clinic-ma": ("Springfield Clinic", "1 Main St", "Springfield", "MA", "01101"),
    "clinic-ny": ("Albany Clinic", "2 State St", "Albany", "NY", "12207"),
}
SCHEDULES = {"sch-1": ("pr-1", "clinic-ma"), "sch-2": ("pr-2", "clinic-ny")}
# what the EHR says of clinic-ma beyond its name and address (clinic-ny: nothing)
MA_DETAILS = {
    "telecom": [
        {"system": "phone", "value": "413-555-0101", "use": "work"},
        {"system": "email", "value": "desk@springfield.example", "use": "work"},
        {"system": "url", "value": "https://springfield.example/clinic"},
    ],
    "position": {"latitude": 42.101483, "longitude": -72.589811},
}


def location_json(lid: str) -> dict:
    name, line, city, state, postal = CLINICS[lid]
    address = {"line": [line], "city": city, "state": state, "postalCode": postal}
    location = {"resourceType": "Location", "id": lid, "name": name, "address": address}
    if lid == "clinic-ma":
        address |= {"district": "Hampden County", "country": "US"}
        location |= MA_DETAILS
    return location


class ClinicEhr:
    """Serves $prefetch: the slots, their schedules, practitioners and clinics."""

    def __init__(self, slots: list[Slot]):
        self.slots = slots

    def __call__(self, request: httpx.Request) -> httpx.Response:
        resources = [slot_json(s) for s in self.slots]
        for sid, (pid, lid) in SCHEDULES.items():
            resources += [
                schedule_json(sid, [f"Practitioner/{pid}", f"Location/{lid}"]),
                practitioner_json(pid, f"Dr {pid}"),
                location_json(lid),
            ]
        return httpx.Response(200, json=bundle(resources))


def slots_of(schedule: str, days: list[int], count: int = 8) -> list[Slot]:
    out = []
    for day in days:
        for n in range(count):
            start = T0 + timedelta(days=day, minutes=15 * n)
            out.append(
                Slot(
                    id=f"{schedule}-d{day}-{n}",
                    schedule_id=schedule,
                    start=start,
                    end=start + timedelta(minutes=15),
                    service_types=(OFFICE,),
                )
            )
    return out


FIRST = slots_of("sch-1", [0, 1, 8]) + slots_of("sch-2", [0, 2, 9], count=5)


def load(engine, slots: list[Slot]) -> None:
    client = EhrClient(
        "http://ehr.test/fhir",
        transport=httpx.MockTransport(ClinicEhr(slots)),
        retry=RetryPolicy(attempts=2, base_delay=0.001),
    )
    load_window(engine, client, *WINDOW)


def make_client(engine, tmp_path, **settings) -> TestClient:
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(RULES))
    config = {
        "database_url": engine.url.render_as_string(hide_password=False),
        "rules_path": rules_path,
        "public_base_url": BASE_URL,
        "smart_booking_link": LINK,
        "smart_booking_phone": "555-000-0100",
        "find_warm_up": False,
        **settings,
    }
    return TestClient(create_app(Settings(**config)), base_url=BASE_URL)


@pytest.fixture
def api(engine, tmp_path):
    load(engine, FIRST)
    with make_client(engine, tmp_path) as client:
        yield client


def publisher(client: TestClient):
    return client.app.state.publisher


def settle(client: TestClient) -> None:
    """Let start-up work that moves the cache generation (the app's first sync attempt)
    end, and the feed catch up with it: two manifests in a row then agree."""
    previous = None
    for _ in range(50):
        if hasattr(client.app.state, "publisher"):
            publisher(client).wait()
        body = client.get(MANIFEST).content
        if body == previous:
            return
        previous = body
        time.sleep(0.1)
    raise AssertionError("the feed kept changing")


def local(url: str) -> str:
    """A URL of the manifest as a path the TestClient asks for."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == BASE_URL
    return parts.path + (f"?{parts.query}" if parts.query else "")


def ndjson(text: str) -> list[dict]:
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def download(client: TestClient, since: str | None = None) -> tuple[dict, dict[str, list[dict]]]:
    """Manifest and every resource of every output, by type, as an aggregator reads them."""
    params = {"_since": since} if since else {}
    manifest = client.get(MANIFEST, params=params)
    assert manifest.status_code == 200, manifest.text
    body = manifest.json()
    by_type: dict[str, list[dict]] = {}
    for item in body["output"]:
        answer = client.get(local(item["url"]), headers={"Accept": "application/fhir+ndjson"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/fhir+ndjson")
        lines = ndjson(answer.text)
        assert all(r["resourceType"] == item["type"] for r in lines)
        by_type.setdefault(item["type"], []).extend(lines)
    return body, by_type


def find_offers(client: TestClient) -> set[str]:
    """The token (the appt-id of $hold/$book) of every appointment $find offers over the
    feed's horizon, page by page."""
    now = datetime.now(UTC)
    params = {
        "start": now.isoformat(),
        "end": (now + timedelta(days=61)).isoformat(),
        "_count": "1000",
    }
    url: str | None = "/fhir/Appointment/$find"
    ids: set[str] = set()
    headers = {"X-API-Key": DEMO_API_KEY}
    while url is not None:
        answer = client.get(url, params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        params = {}
        page = answer.json()
        ids |= {
            e["resource"]["identifier"][0]["value"]
            for e in page.get("entry", ())
            if e["resource"]["resourceType"] == "Appointment"
        }
        nxt = [link["url"] for link in page.get("link", ()) if link["relation"] == "next"]
        url = local(nxt[0]) if nxt else None
    return ids


def example_keys(name: str) -> set[str]:
    """Top-level fields of the spec's example resources (one type per file)."""
    lines = (EXAMPLES / name).read_text().splitlines()
    return set().union(*(json.loads(line).keys() for line in lines))


def assert_shape(example: object, ours: object, where: str = "") -> None:
    """``ours`` has the JSON shape of the spec's ``example`` wherever both have a field:
    the same kinds of values (object, array, string, number), recursively; arrays of
    objects by the fields their items share (extensions by their ``url``)."""
    kinds = {dict: "object", list: "array", str: "string", int: "number", float: "number"}
    assert kinds[type(ours)] == kinds[type(example)], f"{where}: {ours!r} vs {example!r}"
    if isinstance(example, dict):
        assert isinstance(ours, dict)
        for key in example.keys() & ours.keys():
            assert_shape(example[key], ours[key], f"{where}.{key}")
    elif isinstance(example, list) and example and ours:
        assert isinstance(ours, list)
        if where.endswith(".extension") and all(isinstance(e, dict) for e in example):
            theirs = {e["url"]: e for e in example}
            for item in ours:
                if item["url"] in theirs:
                    assert_shape(theirs[item["url"]], item, f"{where}[{item['url']}]")
        else:
            for item in ours:
                assert_shape(example[0], item, f"{where}[]")


def proposal_of(slot: dict) -> str:
    links = [e["valueUrl"] for e in slot.get("extension", ()) if e["url"].endswith("deep-link")]
    assert len(links) == 1
    return parse_qs(urlsplit(links[0]).query)["appointment"][0]


def test_aggregator_rebuilds_exactly_the_find_offers(api):
    manifest, feed = download(api)
    spec_manifest = json.loads((EXAMPLES / "bulk-publish.json").read_text())
    assert set(manifest) == set(spec_manifest)
    assert_shape(spec_manifest, manifest, "manifest")
    assert manifest["request"] == f"{BASE_URL}{MANIFEST}"
    assert manifest["transactionTime"].endswith("Z")

    every = [r for resources in feed.values() for r in resources]
    ids = {(r["resourceType"], r["id"]) for r in every}
    assert len(ids) == len(every), "ids repeat"
    for resource in every:
        r4_model(resource["resourceType"]).model_validate(resource)
        assert resource["meta"]["lastUpdated"].endswith("Z")
    # the spec's example shapes: every field its examples use, where we know it
    assert example_keys("locations.ndjson") - set(feed["Location"][0]) <= set()
    assert example_keys("schedules.ndjson") - set(feed["Schedule"][0]) <= {"extension"}
    assert example_keys("slots-2021-W09.ndjson") <= set(feed["Slot"][0])
    for name, kind in (
        ("locations.ndjson", "Location"),
        ("schedules.ndjson", "Schedule"),
        ("slots-2021-W09.ndjson", "Slot"),
    ):
        example = json.loads((EXAMPLES / name).read_text().splitlines()[0])
        for resource in feed[kind]:
            assert_shape(example, resource, kind)
    # what the EHR says of a clinic, the settings where it says nothing
    ma = next(loc for loc in feed["Location"] if loc["id"] == "clinic-ma")
    assert ma["address"] == {
        "line": ["1 Main St"],
        "city": "Springfield",
        "district": "Hampden County",
        "state": "MA",
        "postalCode": "01101",
        "country": "US",
    }
    assert ma["telecom"] == [
        {"system": "phone", "value": "413-555-0101"},
        {"system": "url", "value": "https://springfield.example/clinic"},
    ]
    assert ma["position"] == MA_DETAILS["position"]
    ny = next(loc for loc in feed["Location"] if loc["id"] == "clinic-ny")
    assert ny["address"] == {
        "line": ["2 State St"],
        "city": "Albany",
        "state": "NY",
        "postalCode": "12207",
    }
    assert ny["telecom"] == [
        {"system": "phone", "value": "555-000-0100"},
        {"system": "url", "value": BASE_URL},
    ]
    assert "position" not in ny

    # references resolve within the feed
    for schedule in feed["Schedule"]:
        for actor in schedule["actor"]:
            assert tuple(actor["reference"].split("/")) in ids
    named = {slot["schedule"]["reference"].split("/")[1] for slot in feed["Slot"]}
    assert named == {schedule["id"] for schedule in feed["Schedule"]}, "none missing, none idle"
    for slot in feed["Slot"]:
        assert slot["status"] == "free"
        assert slot["start"].endswith("Z") and slot["end"].endswith("Z")

    offered = find_offers(api)
    assert offered, "the test data must give offers"
    assert {proposal_of(s) for s in feed["Slot"]} == offered

    # the Slot's schedule says what and where: visit type, clinic, practitioner
    schedules = {s["id"]: s for s in feed["Schedule"]}
    consult = [
        s
        for s in feed["Slot"]
        if schedules[s["schedule"]["reference"].split("/")[1]]["serviceType"][0]["coding"][0][
            "code"
        ]
        == "consult"
    ]
    assert consult and all(
        datetime.fromisoformat(s["end"]) - datetime.fromisoformat(s["start"])
        == timedelta(minutes=30)
        for s in consult
    )


def test_manifest_splits_slot_files_per_week_and_size_with_state_hints(engine, tmp_path):
    load(engine, FIRST)
    with make_client(engine, tmp_path, smart_slots_per_file=5) as client:
        manifest, feed = download(client)
        schedules = {s["id"]: s for s in feed["Schedule"]}
        state_of = {loc["id"]: loc["address"]["state"] for loc in feed["Location"]}
        slot_files = [o for o in manifest["output"] if o["type"] == "Slot"]
        names = [urlsplit(o["url"]).path.rsplit("/", 1)[1] for o in slot_files]
        assert any(n.endswith("-2.ndjson") for n in names), names
        for item in slot_files:
            lines = ndjson(client.get(local(item["url"])).text)
            assert 0 < len(lines) <= 5
            for slot in lines:
                schedule = schedules[slot["schedule"]["reference"].split("/")[1]]
                location = schedule["actor"][0]["reference"].split("/")[1]
                assert state_of[location] in item["extension"]["state"]
        assert {s for o in slot_files for s in o["extension"]["state"]} == {"MA", "NY"}
        assert {proposal_of(s) for s in feed["Slot"]} == find_offers(client)


def test_accept_headers_caching_and_304(api):
    settle(api)
    plain = api.get(MANIFEST)
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("application/json")
    for accept in ("application/json", "application/fhir+json", "*/*"):
        again = api.get(MANIFEST, headers={"Accept": accept})
        assert again.status_code == 200 and again.content == plain.content
    assert plain.headers["cache-control"] == "max-age=300"
    assert plain.headers["last-modified"].endswith("GMT")
    etag = plain.headers["etag"]
    assert api.get(MANIFEST, headers={"If-None-Match": etag}).status_code == 304
    file_url = local(plain.json()["output"][-1]["url"])
    bare = api.get(file_url)
    assert bare.status_code == 200 and bare.text
    for accept in ("application/fhir+ndjson", "application/ndjson"):
        assert api.get(file_url, headers={"Accept": accept}).content == bare.content
    cached = api.get(file_url, headers={"If-None-Match": bare.headers["etag"]})
    assert cached.status_code == 304
    since = {"If-Modified-Since": plain.headers["last-modified"]}
    assert api.get(MANIFEST, headers=since).status_code == 304
    assert api.get(file_url, headers=since).status_code == 304
    earlier = {"If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"}
    assert api.get(MANIFEST, headers=earlier).status_code == 200
    assert api.get(MANIFEST, headers={"If-Modified-Since": "garbage"}).status_code == 200
    # the ETag wins over the date
    both = {**since, "If-None-Match": '"other"'}
    assert api.get(MANIFEST, headers=both).status_code == 200


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        (MANIFEST + "?_since=yesterday", {}, 400),
        (MANIFEST + "?_since=2026-12-04T10:00:00", {}, 400),  # no offset
        (MANIFEST + "?_since=2026-12-04", {}, 400),
        (MANIFEST + "?_since=2026-12-04T10:00:00Z&_since=2026-12-04T11:00:00Z", {}, 400),
        (MANIFEST, {"Accept": "text/html"}, 406),
        ("/smart/files/locations.ndjson", {"Accept": "application/json"}, 406),
        ("/smart/files/slots.ndjson", {}, 404),
        ("/smart/files/slots-2026-W50-0.ndjson", {}, 404),
        ("/smart/files/slots-2026-W50-MA-1.ndjson", {}, 404),
        ("/smart/files/..%2F..%2Fetc%2Fpasswd", {}, 404),
        ("/smart/files/locations.ndjson?_since=nope", {}, 400),
    ],
)
def test_bad_input_is_a_4xx_operation_outcome(api, path, headers, status):
    answer = api.get(path, headers=headers)
    assert answer.status_code == status, answer.text
    assert_operation_outcome(answer.json())


def test_ids_stay_the_same_across_refreshes(api):
    _, before = download(api)
    publisher(api).refresh_now(force=True)
    _, after = download(api)
    key = lambda feed: {t: sorted(r["id"] for r in rs) for t, rs in feed.items()}  # noqa: E731
    assert key(before) == key(after)


def apply(copy: dict[str, dict], feed: dict[str, list[dict]]) -> None:
    """An aggregator's copy: Slots by id, replaced by newer lines; small files whole."""
    for kind, resources in feed.items():
        if kind == "Slot":
            for r in resources:
                copy[f"Slot/{r['id']}"] = r
        else:
            for ref in [k for k in copy if k.startswith(f"{kind}/")]:
                del copy[ref]
            for r in resources:
                copy[f"{kind}/{r['id']}"] = r


def test_incremental_files_bring_a_copy_to_the_full_download(engine, tmp_path):
    load(engine, FIRST)
    with make_client(engine, tmp_path) as client:
        first_manifest, first = download(client)
        copy: dict[str, dict] = {}
        apply(copy, first)

        # the EHR books some, adds others
        second = [s for s in FIRST if not s.id.startswith("sch-1-d1-")]
        second += slots_of("sch-2", [3], count=4)
        load(engine, second)
        publisher(client).refresh_now()
        since = first_manifest["transactionTime"]
        manifest, changed = download(client, since=since)
        assert manifest["transactionTime"] > since
        assert all("_since=" in o["url"] for o in manifest["output"])
        gone = [s for s in changed["Slot"] if s["status"] == "busy"]
        assert gone and all("extension" not in s for s in gone)
        for slot in changed["Slot"]:
            assert slot["meta"]["lastUpdated"] > since
        apply(copy, changed)

        _, full = download(client)
        whole: dict[str, dict] = {}
        apply(whole, full)
        assert copy == whole
        assert len(changed["Slot"]) < len(full["Slot"]), "only what changed"
        free = {proposal_of(s) for s in full["Slot"] if s["status"] == "free"}
        assert free == find_offers(client)

        # a _since older than the busy slots are kept for gets the full feed
        stale, _ = download(client, since="2020-01-01T00:00:00Z")
        assert not any("_since" in o["url"] for o in stale["output"])
        assert stale["output"] == manifest_full(client)["output"]

        # nothing changed since the last manifest: no Slot files
        quiet, _ = download(client, since=manifest["transactionTime"])
        assert [o for o in quiet["output"] if o["type"] == "Slot"] == []


def manifest_full(client: TestClient) -> dict:
    return client.get(MANIFEST).json()


def test_token_protected_feed(engine, tmp_path):
    load(engine, FIRST)
    keys = {"feed-reader": ["system/Slot.read"], "booker": ["system/Appointment.read"]}
    with make_client(engine, tmp_path, smart_public=False, api_keys=keys) as client:
        refused = client.get(MANIFEST)
        assert refused.status_code == 401
        assert_operation_outcome(refused.json())
        assert client.get(MANIFEST, headers={"X-API-Key": "booker"}).status_code == 403
        manifest = client.get(MANIFEST, headers={"X-API-Key": "feed-reader"})
        assert manifest.status_code == 200
        file_url = local(manifest.json()["output"][0]["url"])
        assert client.get(file_url).status_code == 401
        assert client.get(file_url, headers={"X-API-Key": "feed-reader"}).status_code == 200


def test_configured_path(engine, tmp_path):
    load(engine, FIRST)
    with make_client(engine, tmp_path, smart_path="/pub/vaccines/$bulk-publish") as client:
        answer = client.get("/pub/vaccines/$bulk-publish")
        assert answer.status_code == 200
        urls = [o["url"] for o in answer.json()["output"]]
        assert all(u.startswith(f"{BASE_URL}/pub/vaccines/files/") for u in urls)
        assert client.get(MANIFEST).status_code == 404


def test_a_slot_claimed_through_slotsync_leaves_the_feed_at_the_next_request(engine, tmp_path):
    load(engine, FIRST)
    with make_client(engine, tmp_path) as client:
        settle(client)
        first, before = download(client)
        held = next(s for s in FIRST if s.id == "sch-1-d8-2")
        now = datetime.now(UTC)
        with transaction(engine) as session:
            claims.insert_claims(
                session,
                [held],
                claim_id="c1",
                kind="held",
                expires_at=now + timedelta(hours=1),
                now=now,
            )
        client.get(MANIFEST)  # sees the claim: refreshes in the background
        publisher(client).wait()
        _, changed = download(client, since=first["transactionTime"])
        gone = {s["id"] for s in changed["Slot"] if s["status"] == "busy"}
        assert gone, "the offers on the held slot turned busy"
        for slot in before["Slot"]:
            start = datetime.fromisoformat(slot["start"])
            end = datetime.fromisoformat(slot["end"])
            overlaps = start < held.end and held.start < end
            assert (slot["id"] in gone) == overlaps, slot
        _, full = download(client)
        free = {proposal_of(s) for s in full["Slot"] if s["status"] == "free"}
        assert free == find_offers(client)


def test_before_the_first_refresh_is_done_the_feed_asks_to_retry(engine, tmp_path, monkeypatch):
    load(engine, FIRST)
    release = threading.Event()
    real_refresh = service.feed.refresh

    def slow_refresh(*args, **kwargs):
        release.wait(10)
        return real_refresh(*args, **kwargs)

    monkeypatch.setattr(service.feed, "refresh", slow_refresh)
    monkeypatch.setattr(service.Publisher.current, "__kwdefaults__", {"first_wait": 0.2})
    with make_client(engine, tmp_path) as client:
        for path in (MANIFEST, "/smart/files/locations.ndjson"):
            early = client.get(path)
            assert early.status_code == 503
            assert early.headers["retry-after"] == "30"
            assert_operation_outcome(early.json())
        release.set()
        publisher(client).wait()
        assert client.get(MANIFEST).status_code == 200
