"""$find through the FastAPI app over a cache loaded from a scripted EHR, on both backends."""

from __future__ import annotations

import base64
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from fastapi.testclient import TestClient

from app.api.fhir_find import FIND_THREADS
from app.api.main import create_app
from app.core.domain import VISIT_TYPE_SYSTEM, Slot
from app.settings import DEMO_API_KEY, Settings
from app.sync.load import load_window
from tests.fhir_checks import assert_avail_bundle, assert_operation_outcome
from tests.integration.test_load_window import ScriptedEhr, client_for

BASE = (datetime.now(UTC) + timedelta(days=2)).replace(hour=14, minute=0, second=0, microsecond=0)
OFFICE = f"{VISIT_TYPE_SYSTEM}|office-visit"
RULES = {
    "version": 1,
    "organization": {
        "name": "Test clinic",
        "timezone": "UTC",
        "opening_hours": {
            d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        },
    },
    "defaults": {"min_lead_minutes": 0, "max_horizon_days": 60, "join_contiguous": False},
    "visit_types": [
        {
            "code": OFFICE,
            "duration_minutes": 15,
            "assets": [{"kind": "practitioner"}],
        },
        {
            "code": f"{VISIT_TYPE_SYSTEM}|consult",
            "duration_minutes": 30,
            "join_contiguous": True,
            "slot_service_types": [OFFICE],
            "assets": [{"kind": "practitioner"}],
        },
    ],
}

AUTH = {"X-API-Key": DEMO_API_KEY}


def slot(n: int, schedule: str = "sch-1") -> Slot:
    start = BASE + timedelta(minutes=15 * n)
    return Slot(
        id=f"{schedule}-s{n}",
        schedule_id=schedule,
        start=start,
        end=start + timedelta(minutes=15),
        service_types=(OFFICE,),
    )


@pytest.fixture
def api(engine, tmp_path):
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(RULES))
    slots = [slot(i) for i in range(6)] + [slot(i, "sch-2") for i in (0, 1, 3)]
    window = (BASE - timedelta(hours=1), BASE + timedelta(days=1))
    load_window(engine, client_for(ScriptedEhr(slots)), *window)
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False), rules_path=rules_path
    )
    with TestClient(create_app(settings), headers=AUTH) as client:
        yield client, slots


def iso(t: datetime) -> str:
    return t.isoformat()


WINDOW = {"start": iso(BASE - timedelta(hours=1)), "end": iso(BASE + timedelta(days=1))}


def find(client, **params):
    return client.get("/fhir/Appointment/$find", params=params)


def post_find(client, *parameters):
    """POST $find over WINDOW with these further Parameters.parameter entries."""
    window = [
        {"name": "start", "valueDateTime": WINDOW["start"]},
        {"name": "end", "valueDateTime": WINDOW["end"]},
    ]
    body = {"resourceType": "Parameters", "parameter": [*window, *parameters]}
    return client.post("/fhir/Appointment/$find", json=body)


_SYSTEM, _CODE = OFFICE.split("|")
OFFICE_CODING = {"system": _SYSTEM, "code": _CODE}


def test_office_visits_one_per_free_slot(api):
    client, slots = api
    resp = find(client, **WINDOW, **{"visit-type": OFFICE})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/fhir+json")
    bundle = resp.json()
    assert_avail_bundle(bundle)
    appts = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Appointment"
    ]
    assert bundle["total"] == len(appts) == len(slots)
    want = sorted((s.start, s.end) for s in slots)
    got = [(datetime.fromisoformat(a["start"]), datetime.fromisoformat(a["end"])) for a in appts]
    assert sorted(got) == want
    assert [g[0] for g in got] == sorted(g[0] for g in got)  # ordered by start
    assert "lastUpdated" in bundle["meta"]


def test_consult_joins_contiguous_slots_but_not_across_gaps(api):
    client, _ = api
    bundle = find(client, **WINDOW, **{"visit-type": f"{VISIT_TYPE_SYSTEM}|consult"}).json()
    appts = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Appointment"
    ]
    by_schedule: dict[str, list[list[str]]] = {}
    for a in appts:
        refs = sorted(r["reference"] for r in a["slot"])
        assert len(refs) == 2 and a["minutesDuration"] == 30
        by_schedule.setdefault(refs[0].split("-s")[0], []).append(refs)
    # sch-1 has 6 contiguous slots -> 5 joined pairs; sch-2 has 0,1,_,3 -> only (0,1)
    assert len(by_schedule["Slot/sch-1"]) == 5
    assert by_schedule["Slot/sch-2"] == [["Slot/sch-2-s0", "Slot/sch-2-s1"]]


def test_proposals_have_urn_uuid_full_urls_stable_across_requests(api):
    """Proposals have no RESTful location: their fullUrl is a urn:uuid (FHIR's way for
    such resources), the same for the same proposal, and unique in the bundle."""
    client, _ = api
    first = find(client, **WINDOW, **{"visit-type": OFFICE}).json()["entry"]
    again = find(client, **WINDOW, **{"visit-type": OFFICE}).json()["entry"]
    urls = [e["fullUrl"] for e in first if e["search"]["mode"] == "match"]
    assert urls and all(u.startswith("urn:uuid:") for u in urls)
    assert len(set(urls)) == len(urls)
    assert urls == [e["fullUrl"] for e in again if e["search"]["mode"] == "match"]


def test_post_parameters_equals_get(api):
    client, _ = api
    get = find(client, **WINDOW, practitioner="Practitioner/sch-2", **{"visit-type": OFFICE})
    post = post_find(
        client,
        {"name": "practitioner", "valueUri": "Practitioner/sch-2"},
        {"name": "visit-type", "valueString": OFFICE},
    )
    assert post.status_code == 200
    assert get.json()["entry"] == post.json()["entry"]
    assert get.json()["total"] == 3


def test_a_post_find_is_composed_off_the_event_loop(api):
    """While a POST $find is being composed, the process answers other requests: it
    used to compose on the event loop itself and hold every request up meanwhile."""
    client, _ = api
    finder = client.app.state.finder
    compose_started = threading.Event()
    answer = finder.answer

    def slow_answer(*args, **kwargs):
        compose_started.set()
        time.sleep(1.5)
        return answer(*args, **kwargs)

    finder.answer = slow_answer
    with ThreadPoolExecutor(1) as pool:
        posted = pool.submit(post_find, client)
        assert compose_started.wait(10)
        started = time.perf_counter()
        health = client.get("/healthz")
        waited = time.perf_counter() - started
        assert health.status_code == 200
        assert not posted.done()  # answered while the POST was still composing
        assert waited < 1.0
        assert posted.result().status_code == 200


def test_find_composes_at_most_find_threads_at_once(api):
    """GETs and POSTs share the $find threads; more requests wait for one to free
    (more threads would only contend for the GIL)."""
    client, _ = api
    finder = client.app.state.finder
    answer = finder.answer
    lock = threading.Lock()
    running = peak = 0

    def counted_answer(*args, **kwargs):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            time.sleep(0.2)
            return answer(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    finder.answer = counted_answer
    client.app.state.answers = None  # every request composes
    with ThreadPoolExecutor(6) as pool:
        calls = [pool.submit(find, client, **WINDOW) for _ in range(3)]
        calls += [pool.submit(post_find, client) for _ in range(3)]
        assert all(c.result().status_code == 200 for c in calls)
    assert peak == FIND_THREADS


@pytest.mark.parametrize(
    ("practitioner", "visit_type"),
    [
        ({"valueReference": {"reference": "Practitioner/sch-2"}}, {"valueCoding": OFFICE_CODING}),
        (
            {"valueUri": "Practitioner/sch-2"},
            {
                "valueCodeableConcept": {
                    "coding": [{"system": "urn:other", "code": "x"}, OFFICE_CODING]
                }
            },
        ),
    ],
    ids=["coding-and-reference", "codeable-concept"],
)
def test_post_takes_typed_r4_values_as_the_get_takes_tokens(api, practitioner, visit_type):
    """The IG types coded inputs as token strings; R4 clients send Codings."""
    client, _ = api
    get = find(client, **WINDOW, practitioner="Practitioner/sch-2", **{"visit-type": OFFICE})
    post = post_find(
        client, {"name": "practitioner", **practitioner}, {"name": "visit-type", **visit_type}
    )
    assert post.status_code == 200, post.text

    def matches(bundle):
        return [e for e in bundle["entry"] if e["search"]["mode"] == "match"]

    assert matches(post.json()) == matches(get.json()) and post.json()["total"] == 3


@pytest.mark.parametrize(
    "value",
    [
        {"valueCoding": {"system": "urn:x"}},
        {"valueCoding": "office-visit"},
        {"valueCodeableConcept": {"coding": []}},
        {"valueCodeableConcept": {"text": "office visit"}},
        {"valueReference": {"display": "Dr X"}},
        {"valueString": "a", "valueCode": "b"},
    ],
)
def test_malformed_typed_values_get_400(api, value):
    client, _ = api
    resp = post_find(client, {"name": "visit-type", **value})
    assert resp.status_code == 400, resp.text
    assert_operation_outcome(resp.json(), code="invalid")


def test_count_and_include(api):
    client, _ = api
    bundle = find(
        client, **WINDOW, _count="2", _include="Appointment:practitioner", **{"visit-type": OFFICE}
    ).json()
    assert_avail_bundle(bundle)
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes.count("match") == 2
    everything = find(client, **WINDOW, _count="1000", **{"visit-type": OFFICE}).json()
    assert bundle["total"] == everything["total"] == len(_ids(everything)) > 2
    included = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
    participants = {
        p["actor"]["reference"]
        for e in bundle["entry"]
        if e["search"]["mode"] == "match"
        for p in e["resource"]["participant"]
    }
    assert {f"Practitioner/{r['id']}" for r in included} == participants
    assert all(r["resourceType"] == "Practitioner" and r["name"] for r in included)


def _ids(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match"]


def _link(bundle: dict, relation: str) -> str | None:
    return next((ln["url"] for ln in bundle.get("link", []) if ln["relation"] == relation), None)


@pytest.mark.parametrize("size", [1, 2, 4])
def test_pages_together_are_the_unpaged_answer(api, size):
    client, _ = api
    everything = find(client, **WINDOW, _count="1000").json()
    assert _link(everything, "next") is None
    seen: list[str] = []
    url: str | None = client.get(
        "/fhir/Appointment/$find", params={**WINDOW, "_count": str(size)}
    ).request.url.__str__()
    pages = 0
    while url is not None:
        page = client.get(url).json()
        assert_avail_bundle(page)
        assert page["total"] == everything["total"]
        assert _link(page, "self") == url
        assert len(_ids(page)) <= size
        seen += _ids(page)
        url = _link(page, "next")
        pages += 1
    assert seen == _ids(everything)
    assert pages == -(-everything["total"] // size)


def test_paging_a_post_sends_the_parameters_again(api):
    client, _ = api
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDateTime": WINDOW["start"]},
            {"name": "end", "valueDateTime": WINDOW["end"]},
            {"name": "visit-type", "valueString": OFFICE},
            {"name": "_count", "valueInteger": 3},
        ],
    }
    everything = find(client, **WINDOW, _count="1000", **{"visit-type": OFFICE}).json()
    first = client.post("/fhir/Appointment/$find", json=body).json()
    second = client.post(_link(first, "next"), json=body).json()
    assert _ids(first) + _ids(second) == _ids(everything)[:6]


def test_a_page_after_a_taken_offer_skips_nothing(api, engine):
    """The cursor is a position in the order, not an offset: an offer of page 1 that is
    taken before page 2 is read does not pull an unseen offer onto page 1's side."""
    client, slots = api
    everything = _ids(find(client, **WINDOW, _count="1000").json())
    first = find(client, **WINDOW, _count="3").json()
    assert any(slots[0].id in str(e["resource"]["slot"]) for e in first["entry"][:3])
    window = (BASE - timedelta(hours=1), BASE + timedelta(days=1))
    load_window(engine, client_for(ScriptedEhr(slots[1:])), *window)  # slot 0 is gone
    assert slots[0].id not in str(find(client, **WINDOW, _count="1000").json())
    second = client.get(_link(first, "next")).json()
    assert _ids(second) == everything[3:6]


@pytest.mark.parametrize(
    "cursor",
    ["x", "e30", "W10", "!!", "a" * 5000, base64.urlsafe_b64encode(b"[" * 3000).decode()],
)
def test_a_forged_cursor_is_400(api, cursor):
    client, _ = api
    resp = find(client, **WINDOW, _cursor=cursor)
    assert resp.status_code == 400
    assert_operation_outcome(resp.json(), code="invalid")
    assert resp.json()["issue"][0]["expression"] == ["_cursor"]


def test_empty_answer_is_200_with_information(api):
    client, _ = api
    resp = find(client, **WINDOW, practitioner="Practitioner/nobody")
    assert resp.status_code == 200
    bundle = resp.json()
    assert bundle["total"] == 0
    outcome = bundle["entry"][-1]["resource"]
    assert outcome["resourceType"] == "OperationOutcome"


def test_a_window_beyond_every_visit_types_horizon_gets_one_warning(api):
    """Every visit type rules the window out for the same cause: one issue, naming them."""
    client, _ = api
    far = BASE + timedelta(days=400)
    resp = find(client, start=iso(far), end=iso(far + timedelta(days=1)))
    assert resp.status_code == 200
    outcome = resp.json()["entry"][-1]["resource"]
    warnings = [i for i in outcome["issue"] if i["severity"] == "warning"]
    assert len(warnings) == 1, warnings
    assert "2 visit types" in warnings[0]["diagnostics"]


def test_unknown_visit_type_is_400(api):
    client, _ = api
    resp = find(client, **WINDOW, **{"visit-type": f"{VISIT_TYPE_SYSTEM}|mri"})
    assert resp.status_code == 400
    assert_operation_outcome(resp.json(), code="invalid")
    assert resp.json()["issue"][0]["expression"] == ["visit-type"]


def test_ignored_parameters_are_reported(api):
    client, _ = api
    bundle = find(client, **WINDOW, organization="Organization/x", **{"visit-type": OFFICE}).json()
    outcome = bundle["entry"][-1]["resource"]
    assert any("organization" in i["diagnostics"] for i in outcome["issue"])


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"start": "2030-01-02"},
        {"start": "yesterday", "end": "2030-01-02"},
        {"start": "2030-01-03", "end": "2030-01-02"},
        {"start": "2030-01-01", "end": "2030-01-02", "_count": "-1"},
        {"start": "2030-01-01", "end": "2030-01-02", "practitioner": "Patient/1"},
        {"start": "2030-01-01T10:00:00", "end": "2030-01-02"},
        {"start": "2030-01-01", "end": "2030-01-02", "specialty": "394582007"},
        {"start": "2030-01-01", "end": "2030-01-02", "patient-resource": "x"},
    ],
)
def test_bad_parameters_get_400_operation_outcome(api, params):
    client, _ = api
    resp = find(client, **params)
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/fhir+json")
    assert_operation_outcome(resp.json(), code="invalid")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"resourceType": "Patient"}',
        b'{"resourceType": "Parameters", "parameter": [{"name": "start"}]}',
        b'{"resourceType": "Parameters", "parameter": {"name": "start"}}',
        b'{"resourceType": "Parameters", "parameter": [{"name": "start", "valueDateTime": "x"}]}',
    ],
)
def test_bad_post_bodies_get_400(api, body):
    client, _ = api
    resp = client.post(
        "/fhir/Appointment/$find", content=body, headers={"content-type": "application/fhir+json"}
    )
    assert resp.status_code == 400
    assert_operation_outcome(resp.json())


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_post_bodies_of_another_media_type_get_415(api, content_type):
    """$find's POST form is a FHIR Parameters resource: other media types are refused."""
    client, _ = api
    body = b'{"resourceType": "Parameters", "parameter": []}'
    resp = client.post(
        "/fhir/Appointment/$find", content=body, headers={"content-type": content_type}
    )
    assert resp.status_code == 415
    assert_operation_outcome(resp.json())


def test_an_empty_post_body_gets_400(api):
    client, _ = api
    resp = client.post(
        "/fhir/Appointment/$find", content=b"", headers={"content-type": "application/fhir+json"}
    )
    assert resp.status_code == 400
    assert "empty" in resp.json()["issue"][0]["diagnostics"]


def test_without_count_the_page_size_is_the_default(engine, tmp_path):
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(RULES))
    load_window(
        engine,
        client_for(ScriptedEhr([slot(i) for i in range(6)])),
        BASE - timedelta(hours=1),
        BASE + timedelta(days=1),
    )
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        rules_path=rules_path,
        find_max_results=3,
    )
    with TestClient(create_app(settings), headers=AUTH) as client:
        bundle = find(client, **WINDOW, **{"visit-type": OFFICE}).json()
        assert len(_ids(bundle)) == 3 and bundle["total"] == 6
        assert _link(bundle, "next") is not None
        explicit = find(client, **WINDOW, _count="5", **{"visit-type": OFFICE}).json()
        assert len(_ids(explicit)) == 5 and explicit["total"] == 6
        assert all(e["search"]["mode"] == "match" for e in explicit["entry"])


def test_start_up_works_out_the_offers_before_the_first_request(api):
    """The warm-up thread fills the slot index, then the offer memo (every visit type
    over the horizon, without filters); the first answers are the same as ever."""
    client, slots = api
    state = client.app.state
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    while not any(plan.days for plan in _plans(state)) and datetime.now(UTC) < deadline:
        time.sleep(0.05)
    plans = _plans(state)
    assert len(plans) == 2  # office visit and consult, no filters
    assert sum(len(merged.offers) for plan in plans for merged in plan.days.values()) > 0
    resp = find(client, **WINDOW, **{"visit-type": OFFICE})
    assert resp.json()["total"] == len(slots)


def _plans(state) -> list:
    memo_state = state.finder.offer_memo._state
    return [] if memo_state is None else list(memo_state.plans.values())


def test_schedules_whose_last_sync_failed_are_named_in_one_warning(api, engine):
    client, _ = api
    from sqlalchemy.orm import Session

    from app.cache import repository as repo

    def warnings() -> list[str]:
        bundle = find(client, **WINDOW, **{"visit-type": OFFICE}).json()
        outcomes = [
            e["resource"]
            for e in bundle["entry"]
            if e["resource"]["resourceType"] == "OperationOutcome"
        ]
        for outcome in outcomes:
            assert_operation_outcome(outcome)
        return [
            i["diagnostics"] for o in outcomes for i in o["issue"] if i["severity"] == "warning"
        ]

    assert not any("last sync" in w for w in warnings())
    with Session(engine) as s, s.begin():
        repo.record_schedule_error(s, ["sch-1", "sch-2"], "EhrUnavailable: EHR answered 503")
    # the catalog is read again once its TTL (2 s) is over, behind the request that
    # finds it expired: the warning shows within the TTL and one read
    deadline = time.monotonic() + 5.0
    while not (failed := [w for w in warnings() if "last sync" in w]):
        assert time.monotonic() < deadline, "the failed sync never showed"
        time.sleep(0.1)
    assert len(failed) == 1  # one issue for the cause, the schedules listed in it
    assert "2 schedules" in failed[0]
    assert "Schedule/sch-1" in failed[0] and "Schedule/sch-2" in failed[0]
