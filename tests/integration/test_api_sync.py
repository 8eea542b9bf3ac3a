"""The webhook and admin routes over HTTP (TestClient), with a recording dispatcher."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.api.admin import MAX_RESYNC_SCHEDULES
from app.api.main import create_app
from app.cache import feeds
from app.settings import Settings
from app.sync.coordination import LocalCoordinator
from app.sync.messages import ResyncRequest
from app.sync.runs import run_in_process
from app.sync.windows import day_start, utcnow
from tests.sync_support import RecordingDispatcher, context

SECRET = "correct horse battery staple"
AUTH = {"Authorization": f"Bearer {SECRET}"}
ADMIN = {"X-API-Key": "slotsync-demo-key"}  # the development key holds every scope
FHIR = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def api(engine):
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        webhook_secret=SECRET,
        public_base_url="https://slotsync.example",
        horizon_days=30,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        app.state.dispatcher = RecordingDispatcher()
        app.state.coordinator = LocalCoordinator()
        with Session(engine) as s, s.begin():
            row = feeds.get_or_create(
                s,
                endpoint="https://slotsync.example/webhook/subscription",
                fhir_version="stu3",
                heartbeat_seconds=60,
                now=utcnow(),
            )
            feeds.record_subscription(s, row.id, ehr_id="sub-1", status="requested", now=utcnow())
        yield client, app.state.dispatcher


def schedule_event(sid="sch-pr-1", actor="Practitioner/pr-1", days_ahead=1):
    day = day_start(utcnow()) + timedelta(days=days_ahead)
    return {
        "resourceType": "Schedule",
        "id": sid,
        "actor": [{"reference": actor}],
        "planningHorizon": {
            "start": (day + timedelta(hours=14)).isoformat(),
            "end": (day + timedelta(hours=15)).isoformat(),
        },
    }


def heard(engine):
    with Session(engine) as s:
        return feeds.all_feeds(s)[0].last_heard_at


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {SECRET}"},
        {"Authorization": f"Bearer {SECRET}x"},
        {"X-Webhook-Secret": "not it"},
    ],
)
def test_forged_calls_are_refused_without_effect(api, engine, headers):
    client, dispatcher = api
    response = client.post(
        "/webhook/subscription",
        content=msgspec.json.encode(schedule_event()),
        headers={**FHIR, **headers},
    )
    assert response.status_code == 401
    assert response.json()["resourceType"] == "OperationOutcome"
    assert dispatcher.calls == [] and heard(engine) is None


def test_oversized_notifications_are_refused_without_effect(api, engine):
    client, dispatcher = api
    limit = client.app.state.settings.max_body_bytes
    body = b'{"resourceType": "Bundle", "entry": []}' + b" " * limit
    response = client.post("/webhook/subscription", content=body, headers={**AUTH, **FHIR})
    assert response.status_code == 413
    assert response.json()["resourceType"] == "OperationOutcome"
    assert dispatcher.calls == [] and heard(engine) is None


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{not json", FHIR, 400),
        (b'{"resourceType": "Patient"}', FHIR, 400),
        (b'{"resourceType": "Schedule", "actor": [{"display": "x"}]}', FHIR, 400),
        (b"<Schedule/>", {"Content-Type": "application/xml"}, 415),
        (b"", {"X-Notification-Type": "nonsense"}, 400),
        (b"", {"X-Event-Number": "seven"}, 400),
    ],
)
def test_malformed_calls_are_rejected_without_effect(api, engine, body, headers, status):
    client, dispatcher = api
    response = client.post("/webhook/subscription", content=body, headers={**AUTH, **headers})
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"
    assert dispatcher.calls == [] and heard(engine) is None


def backport_event(number: str) -> bytes:
    status = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subscription", "valueReference": {"reference": "Subscription/sub-1"}},
            {"name": "type", "valueCode": "event-notification"},
            {
                "name": "notification-event",
                "part": [{"name": "event-number", "valueString": number}],
            },
        ],
    }
    entries = [{"resource": status}, {"resource": schedule_event()}]
    return msgspec.json.encode({"resourceType": "Bundle", "type": "history", "entry": entries})


@pytest.mark.parametrize("number", [str(2**63), "-1", "9" * 30])
def test_event_numbers_beyond_int64_are_400_and_change_nothing(api, engine, number):
    """Refused while parsing, the same on both databases (not a driver error, 500)."""
    client, dispatcher = api
    argonaut = {"X-Notification-Type": "event-notification", "X-Event-Number": number}
    for body, headers in (
        (backport_event(number), FHIR),
        (msgspec.json.encode(schedule_event()), {**FHIR, **argonaut}),
    ):
        response = client.post("/webhook/subscription", content=body, headers={**AUTH, **headers})
        assert response.status_code == 400, response.text
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert "must be between 0 and 9223372036854775807" in outcome["issue"][0]["diagnostics"]
    assert dispatcher.calls == [] and heard(engine) is None
    with Session(engine) as s:
        assert feeds.all_feeds(s)[0].last_event_number is None
    ok = client.post("/webhook/subscription", content=backport_event("1"), headers={**AUTH, **FHIR})
    assert ok.status_code == 200 and len(dispatcher.calls) == 1


def test_argonaut_handshake_heartbeat_and_events(api, engine):
    client, dispatcher = api
    for kind, number in (("handshake", "0"), ("heartbeat", "0")):
        response = client.post(
            "/webhook/subscription",
            headers={
                **AUTH,
                "X-Notification-Type": kind,
                "X-Subscription-Id": "sub-1",
                "X-Event-Number": number,
            },
        )
        assert response.status_code == 200
    with Session(engine) as s:
        row = feeds.all_feeds(s)[0]
    assert (row.status, row.feed_state) == ("active", "live")
    event = msgspec.json.encode(schedule_event())
    headers = {
        **AUTH,
        **FHIR,
        "X-Notification-Type": "event-notification",
        "X-Subscription-Id": "sub-1",
    }
    first = client.post(
        "/webhook/subscription", content=event, headers={**headers, "X-Event-Number": "1"}
    )
    dup = client.post(
        "/webhook/subscription", content=event, headers={**headers, "X-Event-Number": "1"}
    )
    assert first.status_code == dup.status_code == 200
    assert "1 refresh(es) queued" in first.json()["issue"][0]["diagnostics"]
    assert "1 already queued" in dup.json()["issue"][0]["diagnostics"]
    # the schedule is unknown to the cache yet: its actor is looked up by the refresh
    assert [c[0] for c in dispatcher.calls] == ["refresh_actor"]


def test_r4_backport_event_bundle(api, engine):
    client, dispatcher = api
    status = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subscription", "valueReference": {"reference": "Subscription/sub-1"}},
            {"name": "type", "valueCode": "event-notification"},
            {"name": "events-since-subscription-start", "valueString": "1"},
            {"name": "notification-event", "part": [{"name": "event-number", "valueString": "1"}]},
        ],
    }
    body = {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [{"resource": status}, {"resource": schedule_event(sid="sch-9")}],
    }
    response = client.post(
        "/webhook/subscription", content=msgspec.json.encode(body), headers={**AUTH, **FHIR}
    )
    assert response.status_code == 200
    assert dispatcher.calls[0][:2] == ("refresh_actor", "Practitioner/pr-1")


def test_admin_resync_requests(api):
    client, dispatcher = api
    response = client.post("/admin/resync", headers=ADMIN)
    assert response.status_code == 202 and response.json()["token"]
    assert dispatcher.calls[-1] == ("resync", ResyncRequest(kind="initial-load"))
    response = client.post(
        "/admin/resync",
        json={"schedule": "Schedule/sch-1", "start": "2030-01-01", "subscribe": True},
        headers=ADMIN,
    )
    assert response.status_code == 400  # 2030 is beyond the 30-day horizon
    today = day_start(utcnow()).date().isoformat()
    response = client.post(
        "/admin/resync",
        json={"schedule": "Schedule/sch-1", "start": today, "subscribe": True},
        headers=ADMIN,
    )
    assert response.status_code == 202
    request = dispatcher.of("resync")[-1][1]
    assert (request.kind, request.schedule_ids, request.start.date().isoformat()) == (
        "resync",
        ("sch-1",),
        today,
    )
    assert dispatcher.calls[-1] == ("subscribe",)


@pytest.mark.parametrize(
    "body",
    [
        {"schedule": "sch-1", "actor": "Practitioner/1"},
        {"actor": "pr-1"},
        {"start": "not a date"},
        {"start": "2026-01-02", "end": "2026-01-01"},
        {"unexpected": True},
        {"schedule": []},
        {"schedule": [1]},
        {"schedule": ["sch-1", None]},
        {"schedule": [["sch-1"]]},
    ],
)
def test_admin_resync_rejects_bad_input(api, body):
    client, dispatcher = api
    response = client.post("/admin/resync", json=body, headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert dispatcher.calls == []


def refused(response, message):
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert message in outcome["issue"][0]["diagnostics"], outcome
    return outcome


def test_admin_resync_takes_at_most_1000_schedules_per_call(api):
    client, dispatcher = api
    ids = [f"sch-{i}" for i in range(MAX_RESYNC_SCHEDULES)]
    response = client.post("/admin/resync", json={"schedule": ids}, headers=ADMIN)
    assert response.status_code == 202
    assert dispatcher.of("resync")[-1][1].schedule_ids == tuple(ids)
    for too_many in ([*ids, "sch-x"], ["sch-1"] * 20_000):
        response = client.post("/admin/resync", json={"schedule": too_many}, headers=ADMIN)
        refused(response, f"at most 1000 schedule ids per call, not {len(too_many)}")
    assert len(dispatcher.calls) == 1


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ([""], "schedule id 0 is empty"),
        (["sch-1", "Schedule/"], "schedule id 1 is empty"),
        (["   "], "schedule id 0 is empty"),
        ("\t", "schedule id 0 is empty"),
        (["sch 1"], "schedule id 0 ('sch 1') is not a FHIR id"),
        (["sch-1\u0000"], "is not a FHIR id"),
        (["Practitioner/pr-1"], "is not a FHIR id"),
        (["x" * 65], "is not a FHIR id"),
        (["x" * 5000], "is not a FHIR id"),
        ([7] * 1000, "schedule.4: Input should be a valid string; and 995 more"),
    ],
)
def test_admin_resync_refuses_what_is_not_a_schedule_id(api, schedule, message):
    client, dispatcher = api
    response = client.post("/admin/resync", json={"schedule": schedule}, headers=ADMIN)
    outcome = refused(response, message)
    assert len(outcome["issue"][0]["diagnostics"]) < 500
    assert dispatcher.calls == []


def test_sync_status_reports_schedules_runs_and_feed(api, engine, sandbox):
    client, _ = api
    ehr = sandbox(start=day_start(utcnow()).date() + timedelta(days=1))  # from tomorrow on
    truth = ehr.truth()
    ctx = context(engine, ehr, clock=utcnow, horizon_days=30)
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    assert client.get("/admin/sync-status").status_code == 401
    report = client.get("/admin/sync-status", headers=ADMIN).json()
    overall = report["overall"]
    assert overall["slots_cached"] == len(truth) and overall["schedules"] == len(ehr.schedules)
    assert overall["last_full_load"]["status"] == "ok" and overall["running"] == []
    assert overall["feed_state"] == "stale"  # subscribed, never heard from
    busiest = max(ehr.schedules, key=lambda sid: sum(v[0] == sid for v in truth.values()))
    one = client.get("/admin/sync-status", params={"schedule": busiest}, headers=ADMIN).json()
    (schedule,) = one["schedules"]
    assert schedule["id"] == busiest
    assert schedule["slots_cached"] == sum(v[0] == busiest for v in truth.values()) > 0
    assert schedule["last_confirmed_at"] and schedule["last_error"] is None
    only = client.get("/admin/sync-status", params={"schedule": "nope"}, headers=ADMIN)
    assert only.json()["schedules"] == []


@pytest.mark.parametrize(
    "query",
    [
        [("limit", "abc"), ("limit", "5")],  # repeated: FastAPI alone would take the last
        [("limit", "100.0")],  # pydantic alone would read it as 100
        [("limit", "0")],
    ],
)
def test_sync_status_refuses_a_limit_that_is_not_one_whole_number(api, query):
    client, _ = api
    response = client.get("/admin/sync-status", params=query, headers=ADMIN)
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert client.get("/admin/sync-status", params={"limit": "5"}, headers=ADMIN).status_code == 200
