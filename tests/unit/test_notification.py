"""Parsing webhook payloads: Argonaut stripped Schedules, R4 backport Bundles, heartbeats."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle as BundleR4
from fhir.resources.R4B.subscription import Subscription as SubscriptionR4
from fhir.resources.STU3.schedule import Schedule as ScheduleStu3
from fhir.resources.STU3.subscription import Subscription as SubscriptionStu3

from app.fhir.notification import NotificationError, Target, parse_notification
from app.fhir.subscription import subscription_r4, subscription_stu3

DATA = Path(__file__).parent / "data"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"


def stripped_schedule(sid="sch-pr-1", start="2030-01-07T08:00:00-05:00", end=None):
    return {
        "resourceType": "Schedule",
        "id": sid,
        "actor": [{"reference": "Practitioner/pr-1", "display": "Dr. A"}],
        "planningHorizon": {"start": start, "end": end or "2030-01-07T17:00:00-05:00"},
    }


def r4_notification(kind, *, number=None, since=3, focus=None, payload="full-resource"):
    params = [
        {"name": "subscription", "valueReference": {"reference": "Subscription/sub-1"}},
        {"name": "topic", "valueCanonical": "http://example.org/topic"},
        {"name": "status", "valueCode": "active"},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(since)},
    ]
    entries = [
        {
            "fullUrl": "urn:uuid:6f5c0e1e-2c3a-4b57-9a0e-8e3c2f1d0a11",
            "resource": {
                "resourceType": "Parameters",
                "id": "6f5c0e1e-2c3a-4b57-9a0e-8e3c2f1d0a11",
                "parameter": params,
            },
            "request": {"method": "GET", "url": "Subscription/sub-1/$status"},
            "response": {"status": "200"},
        }
    ]
    if number is not None:
        parts = [{"name": "event-number", "valueString": str(number)}]
        if focus:
            parts.append(
                {"name": "focus", "valueReference": {"reference": f"Schedule/{focus['id']}"}}
            )
        params.append({"name": "notification-event", "part": parts})
        if focus and payload != "empty":
            entry = {
                "fullUrl": f"http://ehr/fhir/Schedule/{focus['id']}",
                "request": {"method": "PUT", "url": f"Schedule/{focus['id']}"},
                "response": {"status": "200"},
            }
            if payload == "full-resource":
                entry["resource"] = focus
            entries.append(entry)
    return {
        "resourceType": "Bundle",
        "type": "history",
        "timestamp": "2030-01-07T10:00:00Z",
        "entry": entries,
    }


def test_empty_body_is_a_heartbeat():
    assert parse_notification(None).kind == "heartbeat"


def test_argonaut_stripped_schedule():
    body = stripped_schedule()
    ScheduleStu3.model_validate(body)
    note = parse_notification(body)
    assert note.kind == "event"
    assert note.targets == (
        Target(
            schedule_id="sch-pr-1",
            actor_refs=("Practitioner/pr-1",),
            start=datetime(2030, 1, 7, 13, 0, tzinfo=UTC),
            end=datetime(2030, 1, 7, 22, 0, tzinfo=UTC),
        ),
    )


def test_ig_example_notification_schedule():
    note = parse_notification(json.loads((DATA / "Schedule-example1.json").read_text()))
    (target,) = note.targets
    assert target.actor_refs == ("Practitioner/dr-y",)
    assert target.start == target.end == datetime(2018, 2, 13, tzinfo=UTC)


@pytest.mark.parametrize("payload", ["full-resource", "id-only"])
def test_r4_backport_event(payload):
    body = r4_notification(
        "event-notification", number=4, since=4, focus=stripped_schedule(), payload=payload
    )
    BundleR4.model_validate(body)
    note = parse_notification(body)
    assert (note.kind, note.subscription_id, note.event_numbers) == ("event", "sub-1", (4,))
    (target,) = note.targets
    assert target.schedule_id == "sch-pr-1"
    assert (target.start is not None) is (payload == "full-resource")


def test_r4_backport_handshake_and_heartbeat():
    assert parse_notification(r4_notification("handshake", since=0)).kind == "handshake"
    beat = parse_notification(r4_notification("heartbeat", since=7))
    assert (beat.kind, beat.events_since_start, beat.targets) == ("heartbeat", 7, ())


def test_r5_style_subscription_status():
    body = {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [
            {
                "resource": {
                    "resourceType": "SubscriptionStatus",
                    "type": "event-notification",
                    "eventsSinceSubscriptionStart": "9",
                    "subscription": {"reference": "Subscription/abc"},
                    "notificationEvent": [
                        {"eventNumber": "9", "focus": {"reference": "Practitioner/pr-3"}}
                    ],
                }
            }
        ],
    }
    note = parse_notification(body)
    assert note.subscription_id == "abc" and note.event_numbers == (9,)
    assert note.targets == (Target(actor_refs=("Practitioner/pr-3",)),)


def test_slot_payload_names_its_schedule():
    note = parse_notification(json.loads((DATA / "Slot-arg-s-6.json").read_text()))
    (target,) = note.targets
    assert target.schedule_id and target.start and target.end


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"resourceType": "Patient"},
        {"resourceType": "Schedule", "actor": [{"display": "no reference"}]},
        {"resourceType": "Schedule", "id": "x", "planningHorizon": {"start": "yesterday"}},
        {
            "resourceType": "Schedule",
            "id": "x",
            "planningHorizon": {"start": "2030-01-02", "end": "2030-01-01"},
        },
        {"resourceType": "Bundle", "type": "history", "entry": "nope"},
        {"resourceType": "Bundle", "type": "collection", "entry": []},
        r4_notification("bogus-kind"),
        {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Observation"}}]},
    ],
)
def test_malformed_notifications_are_rejected(body):
    with pytest.raises(NotificationError):
        parse_notification(body)


def test_subscription_bodies_are_valid_fhir():
    stu3 = subscription_stu3(endpoint="https://app.example/webhook/subscription", secret="s3cret")
    SubscriptionStu3.model_validate(stu3)
    assert stu3["channel"]["header"] == ["Authorization: Bearer s3cret"]
    ig = json.loads((DATA / "Subscription-example.json").read_text())
    assert stu3["_criteria"] == ig["_criteria"]
    assert stu3["channel"]["extension"] == ig["channel"]["extension"]
    r4 = subscription_r4(
        endpoint="https://app.example/webhook/subscription",
        secret="s3cret",
        topic="http://example.org/topic",
        heartbeat_seconds=30,
    )
    SubscriptionR4.model_validate(r4)
    assert {"url": f"{BACKPORT}/backport-heartbeat-period", "valueUnsignedInt": 30} in r4[
        "channel"
    ]["extension"]
