"""Subscriptions: handshake, events with the stripped Schedule, heartbeats, retries,
payload modes and notification faults, received by a real local HTTP server."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
from fhir.resources.R4B import get_fhir_model_class as r4_model
from fhir.resources.STU3 import get_fhir_model_class as stu3_model

from sandbox_ehr import codes
from sandbox_ehr.process import SandboxProcess
from tests.integration.sandbox.conftest import SECRET
from tests.receiver import Receiver


def _subscribe(
    http: httpx.Client,
    sp: SandboxProcess,
    receiver: Receiver,
    *,
    header: list[str] | None = None,
    heartbeat: int | None = None,
    content: str | None = None,
    criteria: str = "Slot",
) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "type": "rest-hook",
        "endpoint": receiver.url,
        "payload": "application/fhir+json",
    }
    if header is not None:
        channel["header"] = header
    if heartbeat is not None:
        channel["extension"] = [
            {"url": codes.BACKPORT_HEARTBEAT_EXT, "valueUnsignedInt": heartbeat}
        ]
    if content is not None:
        channel["_payload"] = {
            "extension": [{"url": codes.BACKPORT_PAYLOAD_EXT, "valueCode": content}]
        }
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": channel,
    }
    r = http.post(f"{sp.base_url}/Subscription", json=body)
    assert r.status_code == 201, r.text
    receiver.wait_for(lambda got: any(h.get("x-notification-type") == "handshake" for h, _ in got))
    return r.json()


def _free_slot(http: httpx.Client, sp: SandboxProcess, schedule: str) -> dict[str, Any]:
    return http.get(f"{sp.control_url}/truth", params={"schedule": schedule}).json()["slots"][0]


def test_stu3_event_carries_stripped_schedule_and_listed_headers(
    stu3: SandboxProcess, http: httpx.Client, receiver: Receiver
) -> None:
    _subscribe(http, stu3, receiver, header=["Authorization: Bearer listed", "X-Tenant: acme"])
    slot = _free_slot(http, stu3, "sch-pr-3")
    http.post(f"{stu3.control_url}/mutate", json={"op": "book", "slot": slot["id"]})
    got = receiver.wait_for(
        lambda g: any(h.get("x-notification-type") == "event-notification" for h, _ in g)
    )
    headers, body = next(
        (h, b) for h, b in got if h.get("x-notification-type") == "event-notification"
    )
    assert headers["authorization"] == "Bearer listed" and headers["x-tenant"] == "acme"
    assert headers["x-event-number"] == "1"
    schedule = msgspec.json.decode(body)
    stu3_model("Schedule").model_validate(schedule)
    assert schedule["id"] == "sch-pr-3"
    assert schedule["meta"]["profile"] == [codes.SCHED_NOTIF_PROFILE]
    assert schedule["actor"] == [
        {"reference": "Practitioner/pr-3", "display": schedule["actor"][0]["display"]}
    ]
    from datetime import datetime

    lo = datetime.fromisoformat(schedule["planningHorizon"]["start"])
    hi = datetime.fromisoformat(schedule["planningHorizon"]["end"])
    assert lo <= datetime.fromisoformat(slot["start"]) and datetime.fromisoformat(slot["end"]) <= hi
    handshake = receiver.of_type("handshake")[0]
    assert handshake[1] == b""


def test_default_secret_heartbeats_and_criteria_filter(
    stu3: SandboxProcess, http: httpx.Client, receiver: Receiver
) -> None:
    _subscribe(http, stu3, receiver, heartbeat=1, criteria="Schedule?actor=Practitioner/pr-5")
    got = receiver.wait_for(
        lambda g: sum(h.get("x-notification-type") == "heartbeat" for h, _ in g) >= 2, 6
    )
    assert all(h["authorization"] == f"Bearer {SECRET}" for h, _ in got)
    assert all(b == b"" for h, b in got if h["x-notification-type"] == "heartbeat")
    other = _free_slot(http, stu3, "sch-pr-6")
    mine = _free_slot(http, stu3, "sch-pr-5")
    http.post(
        f"{stu3.control_url}/mutate",
        json={"ops": [{"op": "book", "slot": other["id"]}, {"op": "book", "slot": mine["id"]}]},
    )
    got = receiver.wait_for(
        lambda g: any(h.get("x-notification-type") == "event-notification" for h, _ in g)
    )
    events = [msgspec.json.decode(b)["id"] for h, b in receiver.of_type("event-notification")]
    assert events == ["sch-pr-5"]


def test_delivery_is_retried_until_the_receiver_recovers(
    stu3: SandboxProcess, http: httpx.Client, receiver: Receiver
) -> None:
    _subscribe(http, stu3, receiver)
    receiver.fail_next = 3
    slot = _free_slot(http, stu3, "sch-pr-1")
    http.post(f"{stu3.control_url}/mutate", json={"op": "book", "slot": slot["id"]})
    receiver.wait_for(
        lambda g: any(h.get("x-notification-type") == "event-notification" for h, _ in g), 10
    )
    stats = http.get(f"{stu3.control_url}/stats").json()
    assert sum(stats["notificationFailures"].values()) == 3
    assert next(iter(stats["subscriptions"].values()))["status"] == "active"


def test_r4_notification_bundles_by_payload_content(
    r4: SandboxProcess, http: httpx.Client, receiver: Receiver
) -> None:
    sub = _subscribe(http, r4, receiver, content="id-only")
    handshake = msgspec.json.decode(receiver.of_type("handshake")[0][1])
    r4_model("Bundle").model_validate(handshake)
    params = {p["name"]: p for p in handshake["entry"][0]["resource"]["parameter"]}
    assert handshake["type"] == "history" and params["type"]["valueCode"] == "handshake"
    slot = _free_slot(http, r4, "sch-room-2")
    http.post(f"{r4.control_url}/mutate", json={"op": "move", "slot": slot["id"], "minutes": 30})
    receiver.wait_for(
        lambda g: any(h.get("x-notification-type") == "event-notification" for h, _ in g)
    )
    bundle = msgspec.json.decode(receiver.of_type("event-notification")[0][1])
    r4_model("Bundle").model_validate(bundle)
    status = {p["name"]: p for p in bundle["entry"][0]["resource"]["parameter"]}
    assert status["type"]["valueCode"] == "event-notification"
    assert status["events-since-subscription-start"]["valueString"] == "1"
    assert status["subscription"]["valueReference"]["reference"] == f"Subscription/{sub['id']}"
    event = {p["name"]: p for p in status["notification-event"]["part"]}
    assert event["focus"]["valueReference"]["reference"] == "Schedule/sch-room-2"
    assert (
        bundle["entry"][1]["fullUrl"].endswith("/Schedule/sch-room-2")
        and "resource" not in bundle["entry"][1]
    )

    http.delete(f"{r4.base_url}/Subscription/{sub['id']}")
    receiver.received.clear()
    _subscribe(http, r4, receiver, content="full-resource")
    http.post(f"{r4.control_url}/mutate", json={"op": "book", "slot": slot["id"]})
    receiver.wait_for(
        lambda g: any(h.get("x-notification-type") == "event-notification" for h, _ in g)
    )
    bundle = msgspec.json.decode(receiver.of_type("event-notification")[0][1])
    focus = bundle["entry"][1]["resource"]
    r4_model("Schedule").model_validate(focus)
    assert focus["actor"][0]["reference"] == "Location/room-2" and focus["planningHorizon"]["start"]


def test_notification_faults_duplicate_drop_and_reorder(
    stu3: SandboxProcess, http: httpx.Client, receiver: Receiver
) -> None:
    _subscribe(http, stu3, receiver)
    http.post(
        f"{stu3.control_url}/faults",
        json=[
            {"kind": "notify-duplicate", "times": 1},
            {"kind": "notify-drop", "times": 1},
            {"kind": "notify-out-of-order", "times": 1},
        ],
    )
    slots = [_free_slot(http, stu3, f"sch-pr-{n}")["id"] for n in (1, 2, 3, 4)]
    for sid in slots:
        http.post(f"{stu3.control_url}/mutate", json={"op": "book", "slot": sid})
    receiver.wait_for(
        lambda g: sum(h.get("x-notification-type") == "event-notification" for h, _ in g) >= 4
    )
    numbers = [int(h["x-event-number"]) for h, _ in receiver.of_type("event-notification")]
    # event 1 duplicated, event 2 dropped, event 3 held back until after event 4
    assert numbers == [1, 1, 4, 3]


def test_hold_and_cancel_notify_with_empty_r4_payload(
    r4: SandboxProcess, http: httpx.Client, receiver: Receiver
) -> None:
    _subscribe(http, r4, receiver, content="empty")
    slot = _free_slot(http, r4, "sch-pr-1")
    appt = {
        "resourceType": "Appointment",
        "status": "proposed",
        "start": slot["start"],
        "end": slot["end"],
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "participant": [{"actor": {"reference": "Practitioner/pr-1"}, "status": "needs-action"}],
    }
    held = http.post(f"{r4.base_url}/Appointment/$hold", json=appt).json()["entry"][0]["resource"]
    http.patch(
        f"{r4.base_url}/Appointment/{held['id']}",
        json=[{"op": "replace", "path": "/status", "value": "cancelled"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    receiver.wait_for(
        lambda g: sum(h.get("x-notification-type") == "event-notification" for h, _ in g) >= 2
    )
    for number, (headers, body) in enumerate(receiver.of_type("event-notification"), start=1):
        bundle = msgspec.json.decode(body)
        assert len(bundle["entry"]) == 1 and headers["x-event-number"] == str(number)
        params = {p["name"]: p for p in bundle["entry"][0]["resource"]["parameter"]}
        parts = {p["name"] for p in params["notification-event"]["part"]}
        assert parts == {"event-number", "timestamp"}
