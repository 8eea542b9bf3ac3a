"""The Subscription we ask the EHR for: Argonaut ``argo-sub-notif`` (STU3) or R4 backport.

Both are rest-hook subscriptions to our webhook that carry the shared secret as
an ``Authorization`` header (``channel.header``), so the EHR sends it back with
every notification. The R4 form also asks for a heartbeat period.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.core.times import fhir_instant

ARGO = "http://fhir.org/guides/argonaut-scheduling/StructureDefinition"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
REASON = "Notify subscriber of schedule changes to trigger the subscriber prefetch updated slots"


def subscription_stu3(
    *, endpoint: str, secret: str | None, end: datetime | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "meta": {"profile": [f"{ARGO}/argo-sub-notif"]},
        "status": "requested",
        "reason": REASON,
        "_criteria": {
            "extension": [
                {
                    "url": f"{ARGO}/extension-subscription-triggerevent",
                    "valueString": "schedule where any slot that reference it has changed",
                },
                {"url": f"{ARGO}/extension-subscription-eventfocus", "valueCode": "Slot"},
            ]
        },
        "channel": {
            "extension": [
                {
                    "url": f"{ARGO}/extension-subscription-payloadprofile",
                    "valueUri": f"{ARGO}/argo-sched-notif",
                }
            ],
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
        },
    }
    if secret:
        body["channel"]["header"] = [f"Authorization: Bearer {secret}"]
    if end is not None:
        body["end"] = fhir_instant(end)
    return body


def subscription_r4(
    *,
    endpoint: str,
    secret: str | None,
    topic: str,
    heartbeat_seconds: int,
    end: datetime | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "meta": {"profile": [f"{BACKPORT}/backport-subscription"]},
        "status": "requested",
        "reason": REASON,
        "criteria": topic,
        "channel": {
            "extension": [
                {
                    "url": f"{BACKPORT}/backport-heartbeat-period",
                    "valueUnsignedInt": heartbeat_seconds,
                },
                {"url": f"{BACKPORT}/backport-timeout", "valueUnsignedInt": 10},
            ],
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [
                    {"url": f"{BACKPORT}/backport-payload-content", "valueCode": "full-resource"}
                ]
            },
        },
    }
    if secret:
        body["channel"]["header"] = [f"Authorization: Bearer {secret}"]
    if end is not None:
        body["end"] = fhir_instant(end)
    return body
