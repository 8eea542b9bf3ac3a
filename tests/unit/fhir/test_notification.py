"""Parsing webhook payloads: Argonaut stripped Schedules, R4 backport Bundles, heartbeats."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.bundle import Bundle as BundleR4
from fhir.resources.R4B.subscription import Subscription as SubscriptionR4
from fhir.resources.STU3.schedule import Schedule as ScheduleStu3
from fhir.resources.STU3.subscription import Subscription as SubscriptionStu3

from app.fhir.notification import (
    EVENT_NUMBER_MAX,
    NotificationError,
    Target,
    event_number,
    parse_notification,
)
from app.fhir.subscription import subscription_r4, subscription_stu3
from tests.paths import FHIR_EXAMPLES

DATA = FHIR_EXAMPLES
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


def r5_notification(*, since="9", number="9"):
    status = {
        "resourceType": "SubscriptionStatus",
        "type": "event-notification",
        "eventsSinceSubscriptionStart": since,
        "subscription": {"reference": "Subscription/abc"},
        "notificationEvent": [{"eventNumber": number, "focus": {"reference": "Schedule/s-1"}}],
    }
    return {"resourceType": "Bundle", "type": "history", "entry": [{"resource": status}]}


def numbered(where, value):
    """A notification carrying ``value`` as the event count or number named ``where``."""
    if where == "eventsSinceSubscriptionStart":
        return r5_notification(since=value)
    if where == "notificationEvent.eventNumber":
        return r5_notification(number=value)
    body = r4_notification("event-notification", number=4, since=4, focus={"id": "s-1"})
    params = body["entry"][0]["resource"]["parameter"]
    if where == "events-since-subscription-start":
        params[4] = {"name": where, "valueString": value}
    elif where == "events-since-subscription-start (integer64)":
        params[4] = {"name": "events-since-subscription-start", "valueInteger64": value}
    else:
        params[5]["part"][0] = {"name": "event-number", "valueString": value}
    return body


NUMBERED = [
    "events-since-subscription-start",
    "events-since-subscription-start (integer64)",
    "event-number",
    "eventsSinceSubscriptionStart",
    "notificationEvent.eventNumber",
]


@pytest.mark.parametrize("where", NUMBERED)
@pytest.mark.parametrize(
    "value", [str(EVENT_NUMBER_MAX + 1), EVENT_NUMBER_MAX + 1, "-1", -1, "9" * 5000]
)
def test_event_numbers_outside_0_to_int64_max_are_rejected(where, value):
    with pytest.raises(NotificationError, match=f"between 0 and {EVENT_NUMBER_MAX}") as raised:
        parse_notification(numbered(where, value))
    assert where.split(" ")[0].split(".")[-1] in str(raised.value)
    assert len(str(raised.value)) < 200  # a huge value is not echoed whole


@pytest.mark.parametrize("where", NUMBERED)
@pytest.mark.parametrize("value", [True, 1.5, "1e3", "", "0x10", [4], {"n": 4}])
def test_event_numbers_must_be_whole_numbers(where, value):
    with pytest.raises(NotificationError, match="must be a whole number"):
        parse_notification(numbered(where, value))


@pytest.mark.parametrize("value", [0, "0", EVENT_NUMBER_MAX, str(EVENT_NUMBER_MAX), " 12 "])
def test_event_numbers_up_to_int64_max_are_accepted(value):
    note = parse_notification(r5_notification(since=value, number=value))
    assert note.events_since_start == note.event_numbers[0] == int(value)
    assert event_number(value, "X-Event-Number") == int(value)


def _status_with(**members):
    status = r5_notification()["entry"][0]["resource"]
    return {"resourceType": "Bundle", "type": "history", "entry": [{"resource": status | members}]}


def _parameters_with(index, value):
    body = r4_notification("event-notification", number=4, focus={"id": "s-1"})
    params = body["entry"][0]["resource"]["parameter"]
    params[index] = params[index] | value
    return body


@pytest.mark.parametrize(
    "body",
    [
        _status_with(type=["event-notification"]),
        _status_with(subscription="Subscription/abc"),
        _status_with(subscription={"reference": 5}),
        _status_with(notificationEvent="9"),
        _status_with(notificationEvent=[9]),
        _status_with(notificationEvent=[{"eventNumber": "9", "focus": "Schedule/s-1"}]),
        _parameters_with(0, {"valueReference": "Subscription/sub-1"}),
        _parameters_with(3, {"valueCode": {"code": "event-notification"}}),
        _parameters_with(5, {"part": 5}),
        {"resourceType": "Slot", "id": "x", "schedule": "Schedule/x", "start": "2030-01-01"},
    ],
)
def test_wrongly_typed_members_are_rejected(body):
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
