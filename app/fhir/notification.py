"""Parsing subscription notifications sent to our webhook (STU3 Argonaut and R4 backport).

Accepted bodies:

- empty: the Argonaut "heartbeat notification with no payload";
- an R4 backport notification ``Bundle`` (type ``history``) whose first entry is the
  subscription status (R4 ``Parameters`` with the backport profile, or an R4B/R5
  ``SubscriptionStatus``): ``handshake``, ``heartbeat``, ``event-notification``
  (``query-status`` is treated like a heartbeat), followed by the changed resources;
- the Argonaut stripped-down Schedule (``argo-sched-notif``: actor + planningHorizon),
  alone or as entries of a Bundle;
- Slot resources (their schedule and start/end) in either kind of Bundle.

Each change becomes a :class:`Target`: a schedule id or actor references plus an
optional period. Anything else is a :class:`NotificationError` (HTTP 400).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from app.core.errors import SlotsyncError

from .parse import FhirParseError, parse_instant, relative_reference

Kind = Literal["handshake", "heartbeat", "event"]

KINDS: dict[str, Kind] = {
    "handshake": "handshake",
    "heartbeat": "heartbeat",
    "event-notification": "event",
    "query-status": "heartbeat",
    "query-event": "event",
}


EVENT_NUMBER_MAX = 2**63 - 1  # what a 64-bit signed column holds, on SQLite and PostgreSQL
_INTEGER = re.compile(r"[+-]?[0-9]+")


class NotificationError(SlotsyncError, ValueError):
    """The body is not a notification we understand; says what is wrong."""


@dataclass(frozen=True, slots=True)
class Target:
    """What changed: a schedule (by id) or the schedules of some actors, in a period."""

    schedule_id: str | None = None
    actor_refs: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    kind: Kind
    subscription_id: str | None = None  # the EHR's Subscription id when the payload names it
    events_since_start: int | None = None
    event_numbers: tuple[int, ...] = ()
    targets: tuple[Target, ...] = field(default=())


def parse_notification(body: Any) -> Notification:
    """A decoded JSON body (None for an empty one) as a :class:`Notification`."""
    if body is None:
        return Notification(kind="heartbeat")
    if not isinstance(body, dict):
        raise NotificationError("notification body must be a JSON object")
    rtype = body.get("resourceType")
    if rtype == "Schedule":
        return Notification(kind="event", targets=(_schedule_target(body),))
    if rtype == "Slot":
        return Notification(kind="event", targets=(_slot_target(body),))
    if rtype != "Bundle":
        raise NotificationError(f"unexpected resourceType {rtype!r}")
    entries = body.get("entry") or []
    if not isinstance(entries, list):
        raise NotificationError("Bundle.entry must be a list")
    resources = [e.get("resource") if isinstance(e, dict) else None for e in entries]
    status = resources[0] if resources and _is_status(resources[0]) else None
    if status is None:
        found = tuple(_target(r, i) for i, r in enumerate(resources))
        if not found:
            raise NotificationError("notification Bundle names no Schedule or Slot")
        return Notification(kind="event", targets=found)
    note = _status(status)
    targets: list[Target] = [
        _target(r, i + 1) for i, r in enumerate(resources[1:]) if r is not None
    ]
    if note.kind == "event" and not targets:
        # id-only or empty payloads: the focus references still name what changed
        targets = [_focus_target(ref) for ref in _focus_refs(status)]
    return Notification(
        kind=note.kind,
        subscription_id=note.subscription_id,
        events_since_start=note.events_since_start,
        event_numbers=note.event_numbers,
        targets=tuple(targets),
    )


def _is_status(res: Any) -> bool:
    if not isinstance(res, dict):
        return False
    if res.get("resourceType") == "SubscriptionStatus":
        return True
    params = res.get("parameter")
    return (
        res.get("resourceType") == "Parameters"
        and isinstance(params, list)
        and any(isinstance(p, dict) and p.get("name") == "type" for p in params)
    )


def _status(res: dict[str, Any]) -> Notification:
    if res["resourceType"] == "SubscriptionStatus":
        kind_code = res.get("type")
        subscription = _reference(res.get("subscription"), "SubscriptionStatus.subscription")
        since = res.get("eventsSinceSubscriptionStart")
        since_what = "eventsSinceSubscriptionStart"
        number_what = "notificationEvent.eventNumber"
        events = _objects(res.get("notificationEvent"), "SubscriptionStatus.notificationEvent")
        numbers = [e.get("eventNumber") for e in events]
    else:
        params = _objects(res.get("parameter"), "Parameters.parameter")
        kind_code = _param(params, "type", "valueCode")
        subscription = _reference(
            _param(params, "subscription", "valueReference"), "subscription.valueReference"
        )
        since = _param(params, "events-since-subscription-start", "valueString")
        if since is None:
            since = _param(params, "events-since-subscription-start", "valueInteger64")
        since_what, number_what = "events-since-subscription-start", "event-number"
        numbers = []
        for p in params:
            if p.get("name") == "notification-event":
                number = _part(p, "event-number", "valueString")
                numbers.append(
                    _part(p, "event-number", "valueInteger64") if number is None else number
                )
    kind = KINDS.get(kind_code) if isinstance(kind_code, str) else None
    if kind is None:
        raise NotificationError(f"unknown notification type {_shown(kind_code)}")
    return Notification(
        kind=kind,
        subscription_id=relative_reference(subscription).split("/")[-1] if subscription else None,
        events_since_start=None if since is None else event_number(since, since_what),
        event_numbers=tuple(event_number(n, number_what) for n in numbers if n is not None),
    )


def event_number(value: Any, what: str) -> int:
    """An event count or number as a notification carries it: FHIR ``integer64`` (a JSON
    string) or a JSON integer, from 0 to :data:`EVENT_NUMBER_MAX`. Checked here, as the
    feed bookkeeping keeps it in a 64-bit column (on either database)."""
    text = value.strip() if isinstance(value, str) else None
    if isinstance(value, bool) or not (
        isinstance(value, int) or (text is not None and _INTEGER.fullmatch(text))
    ):
        raise NotificationError(f"{what} must be a whole number, not {_shown(value)}")
    # no need to convert thousands of digits (int() refuses them) to know they are too many
    number = value if text is None else int(text) if len(text) <= 25 else None
    if number is None or not 0 <= number <= EVENT_NUMBER_MAX:
        raise NotificationError(
            f"{what} must be between 0 and {EVENT_NUMBER_MAX}, not {_shown(value)}"
        )
    return number


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _objects(value: Any, where: str) -> list[dict[str, Any]]:
    """A repeating element: absent is empty; anything but a list of objects is an error."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise NotificationError(f"{where} must be a list of objects")
    return value


def _reference(value: Any, where: str) -> str | None:
    """``Reference.reference`` of an optional element."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("reference"), str | None):
        raise NotificationError(f"{where} must be a Reference with a string reference")
    return value.get("reference")


def _param(params: list[dict[str, Any]], name: str, value_key: str) -> Any:
    for p in params:
        if p.get("name") == name:
            return p.get(value_key)
    return None


def _part(param: dict[str, Any], name: str, value_key: str) -> Any:
    return _param(_objects(param.get("part"), f"{param.get('name')}.part"), name, value_key)


def _focus_refs(status: dict[str, Any]) -> list[str]:
    if status["resourceType"] == "SubscriptionStatus":
        foci = [
            _reference(e.get("focus"), "notificationEvent.focus")
            for e in _objects(status.get("notificationEvent"), "notificationEvent")
        ]
    else:
        foci = [
            _reference(_part(p, "focus", "valueReference"), "focus.valueReference")
            for p in _objects(status.get("parameter"), "Parameters.parameter")
            if p.get("name") == "notification-event"
        ]
    return [f for f in foci if f]


def _focus_target(reference: str) -> Target:
    ref = relative_reference(reference)
    rtype, _, rid = ref.partition("/")
    if rtype == "Schedule" and rid:
        return Target(schedule_id=rid)
    if rtype in ("Practitioner", "Location", "Device", "HealthcareService", "PractitionerRole"):
        return Target(actor_refs=(ref,))
    raise NotificationError(f"notification focus {reference!r} names no Schedule or actor")


def _target(res: Any, index: int) -> Target:
    if not isinstance(res, dict):
        raise NotificationError(f"Bundle.entry[{index}] has no resource")
    rtype = res.get("resourceType")
    if rtype == "Schedule":
        return _schedule_target(res)
    if rtype == "Slot":
        return _slot_target(res)
    raise NotificationError(f"Bundle.entry[{index}] is a {rtype}, not a Schedule or Slot")


def _schedule_target(res: dict[str, Any]) -> Target:
    where = f"Schedule/{res.get('id', '?')}"
    listed = res.get("actor") or []
    if not isinstance(listed, list):
        raise NotificationError(f"{where}.actor must be a list")
    actors = []
    for actor in listed:
        ref = actor.get("reference") if isinstance(actor, dict) else None
        if not isinstance(ref, str):
            raise NotificationError(f"{where}.actor needs a reference")
        actors.append(relative_reference(ref))
    sid = res.get("id") if isinstance(res.get("id"), str) else None
    if not actors and not sid:
        raise NotificationError(f"{where} names neither an id nor an actor")
    start, end = _period(res.get("planningHorizon"), f"{where}.planningHorizon")
    return Target(schedule_id=sid, actor_refs=tuple(actors), start=start, end=end)


def _slot_target(res: dict[str, Any]) -> Target:
    where = f"Slot/{res.get('id', '?')}"
    ref = _reference(res.get("schedule"), f"{where}.schedule")
    if ref is None:
        raise NotificationError(f"{where}.schedule needs a reference")
    start, end = _period({"start": res.get("start"), "end": res.get("end")}, where)
    return Target(schedule_id=relative_reference(ref).split("/")[-1], start=start, end=end)


def _period(period: Any, where: str) -> tuple[datetime | None, datetime | None]:
    if period is None:
        return None, None
    if not isinstance(period, dict):
        raise NotificationError(f"{where} must be a Period")
    try:
        start = parse_instant(period["start"], f"{where}.start") if period.get("start") else None
        end = parse_instant(period["end"], f"{where}.end") if period.get("end") else None
    except FhirParseError as exc:
        raise NotificationError(str(exc)) from exc
    if start and end and end < start:
        raise NotificationError(f"{where}: end before start")
    return start, end
