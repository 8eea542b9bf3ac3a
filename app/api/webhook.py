"""``POST /webhook/subscription``: the EHR's notifications (handshake, heartbeat, events).

Answers within milliseconds and does no EHR traffic: the shared secret is checked
first (:data:`app.api.auth.WebhookDep`, constant-time; anything else is 401 and has
no effect), then the payload is parsed (400 if malformed, nothing recorded), and
only then is the feed recorded alive and coalesced refreshes enqueued
(:func:`app.sync.inbox.accept_notification`).
Argonaut (STU3) EHRs send handshakes and heartbeats as empty bodies; the
``X-Notification-Type``/``X-Subscription-Id``/``X-Event-Number`` headers, when
present, tell them apart and number them.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import msgspec
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from app.core.errors import InvalidParameter, UnsupportedMediaType
from app.fhir.media import JSON_TYPES, media_type
from app.fhir.notification import KINDS, NotificationError, event_number, parse_notification
from app.sync.inbox import accept_notification
from app.sync.windows import utcnow

from .auth import WebhookDep
from .deps import SettingsDep
from .responses import FhirResponse, operation_outcome

log = logging.getLogger(__name__)
router = APIRouter()


def _event_number_header(request: Request, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        return event_number(value, name)
    except NotificationError as exc:
        raise InvalidParameter(str(exc)) from exc


@router.post("/webhook/subscription", response_class=FhirResponse)
async def subscription_notification(
    request: Request, settings: SettingsDep, _secret: WebhookDep
) -> FhirResponse:
    body = await request.body()  # bounded by the request-limits middleware, as on every route
    content_type = media_type(request.headers.get("content-type"))
    if body.strip() and content_type not in JSON_TYPES:
        raise UnsupportedMediaType(f"notifications must be FHIR JSON, not {content_type!r}")
    try:
        decoded = msgspec.json.decode(body) if body.strip() else None
        note = parse_notification(decoded)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InvalidParameter(f"notification body is not JSON: {exc}") from exc
    except NotificationError as exc:
        raise InvalidParameter(str(exc)) from exc
    # Argonaut (STU3) numbering and kinds travel in headers.
    kind_header = request.headers.get("x-notification-type")
    if kind_header is not None and decoded is None:
        if kind_header not in KINDS:
            raise InvalidParameter(f"unknown X-Notification-Type {kind_header!r}")
        note = replace(note, kind=KINDS[kind_header])
    number = _event_number_header(request, "X-Event-Number")
    if number is not None and not note.event_numbers and note.events_since_start is None:
        if note.kind == "event":
            note = replace(note, event_numbers=(number,))
        else:
            note = replace(note, events_since_start=number)
    if note.subscription_id is None and request.headers.get("x-subscription-id"):
        note = replace(note, subscription_id=request.headers["x-subscription-id"])
    state = request.app.state
    accepted = await run_in_threadpool(
        accept_notification,
        engine=state.engine,
        coord=state.coordinator,
        dispatcher=state.dispatcher,
        settings=settings,
        note=note,
        now=utcnow(),
    )
    text = (
        f"{accepted.kind}: {accepted.enqueued} refresh(es) queued, "
        f"{accepted.coalesced} already queued, {accepted.outside_horizon} outside the horizon"
        + (", poll requested" if accepted.poll else "")
    )
    return FhirResponse(operation_outcome("information", "informational", text))
