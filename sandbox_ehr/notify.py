"""Subscriptions and their notifications (rest-hook), delivered by background tasks.

Two wire styles, by FHIR version:

* STU3 (Argonaut): a Subscription like the IG's ``Subscription-example``. An event
  is a POST whose body is the stripped Schedule (profile argo-sched-notif: id,
  actor = the lowest schedulable entity, planningHorizon = the period whose slots
  changed), or an empty body when the Subscription has no ``channel.payload``. The
  handshake (sent once on creation) and heartbeats are POSTs with an empty body.
* R4 (Subscriptions backport): every notification is a ``history`` Bundle whose
  first entry is the SubscriptionStatus ``Parameters`` (type handshake | heartbeat |
  event-notification, events-since-subscription-start, notification-event with
  event-number and focus); payload content ``empty`` | ``id-only`` |
  ``full-resource`` (the stripped Schedule) from the backport-payload-content
  extension on ``channel.payload``.

Both styles carry the headers the Subscription lists in ``channel.header``
(``"Name: value"``; when none is listed and the sandbox has a callback secret,
``Authorization: Bearer <secret>``), plus ``X-Subscription-Id``,
``X-Notification-Type`` and ``X-Event-Number`` (events since subscription start),
so a receiver of either flavour can detect gaps.

Heartbeat period: the backport-heartbeat-period extension (``valueUnsignedInt``
seconds) on ``channel`` (accepted in STU3 too), else the sandbox default; a
heartbeat goes out when nothing was sent for that long. Optional filter: a
``criteria`` with a query (``Schedule?actor=Practitioner/pr-1``) limits events to
the matching schedules. Deliveries are retried with exponential backoff; after
``notify_max_attempts`` the notification is dropped and the subscription shows
status ``error`` until a later delivery succeeds. Order per subscription is
preserved (one queue, one sender task each).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import msgspec

from sandbox_ehr import codes, validate
from sandbox_ehr.config import SandboxConfig
from sandbox_ehr.errors import FHIR_JSON, bad_request, not_found, unprocessable
from sandbox_ehr.faults import Faults
from sandbox_ehr.search import schedules_matching
from sandbox_ehr.stats import Stats
from sandbox_ehr.store import Change, SlotStore
from sandbox_ehr.timefmt import now_instant

log = logging.getLogger("sandbox_ehr.notify")
OUT_OF_ORDER_FLUSH_SECONDS = 2.0


@dataclass
class Notification:
    kind: str  # handshake | heartbeat | event-notification
    number: int  # event number (events) or events so far (others)
    change: Change | None = None


@dataclass
class Subscription:
    id: str
    raw: dict[str, Any]
    endpoint: str
    headers: list[tuple[str, str]]
    payload: str  # empty | id-only | full-resource
    heartbeat: int
    schedules: frozenset[int] | None
    status: str = "requested"
    events: int = 0
    error: str | None = None
    last_sent: float = field(default_factory=time.monotonic)
    queue: asyncio.Queue[Notification] = field(default_factory=asyncio.Queue)
    held: Notification | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def resource(self) -> dict[str, Any]:
        res = dict(self.raw)
        res["id"] = self.id
        res["status"] = self.status
        if self.error:
            res["error"] = self.error
        else:
            res.pop("error", None)
        return res


def _extension(element: dict[str, Any] | None, url: str) -> Any:
    for ext in (element or {}).get("extension") or []:
        if ext.get("url") == url:
            return next((v for k, v in ext.items() if k.startswith("value")), None)
    return None


class Notifier:
    """Owns subscriptions and their sender tasks; listens to slot changes in the store.

    Collaborators: the config (changed in place by the control API), the store it
    listens to, the fault rules and counters of notifications, ``stripped_schedule``
    (a change -> the argo-sched-notif Schedule of its period) and the FHIR base URL
    written into R4 notification bundles.
    """

    def __init__(
        self,
        config: SandboxConfig,
        store: SlotStore,
        faults: Faults,
        stats: Stats,
        stripped_schedule: Callable[[Change], dict[str, Any]],
        base_url: str,
    ) -> None:
        self.config = config
        self.store = store
        self.faults = faults
        self.stats = stats
        self.stripped_schedule = stripped_schedule
        self.base_url = base_url
        self.subscriptions: dict[str, Subscription] = {}
        self.client: httpx.AsyncClient | None = None
        self._n = 0
        store.listeners.append(self.on_changes)

    async def start(self) -> None:
        self.client = httpx.AsyncClient(timeout=self.config.notify_timeout_seconds)

    async def stop(self) -> None:
        for sub in list(self.subscriptions.values()):
            await self._cancel(sub)
        if self.client is not None:
            await self.client.aclose()

    # ----- subscription lifecycle ------------------------------------------------------------
    def create(self, body: Any) -> Subscription:
        cfg = self.config
        if not isinstance(body, dict):
            raise bad_request("body must be a Subscription")
        body = dict(body)
        body.setdefault("status", "requested")
        body.setdefault("reason", "slot changes")
        validate.check(cfg.fhir_version, body, "Subscription")
        channel = body.get("channel") or {}
        if channel.get("type") != "rest-hook":
            raise unprocessable("only rest-hook channels are supported", "not-supported")
        endpoint = channel.get("endpoint") or ""
        if urlsplit(endpoint).scheme not in ("http", "https"):
            raise unprocessable("channel.endpoint must be an http(s) URL")
        headers = []
        for h in channel.get("header") or []:
            name, sep, value = str(h).partition(":")
            if not sep or not name.strip():
                raise bad_request(f"channel.header {h!r} is not 'Name: value'")
            headers.append((name.strip(), value.strip()))
        if not headers and cfg.callback_secret:
            headers.append(("Authorization", f"Bearer {cfg.callback_secret}"))
        if cfg.fhir_version == "r4":
            content = _extension(channel.get("_payload"), codes.BACKPORT_PAYLOAD_EXT)
            payload = content or ("full-resource" if channel.get("payload") else "empty")
        else:
            payload = "full-resource" if channel.get("payload") else "empty"
        if payload not in ("empty", "id-only", "full-resource"):
            raise unprocessable(f"unknown payload content {payload!r}")
        heartbeat = _extension(channel, codes.BACKPORT_HEARTBEAT_EXT)
        heartbeat = cfg.heartbeat_seconds if heartbeat is None else int(heartbeat)
        criteria = str(body.get("criteria") or "")
        schedules = None
        if "?" in criteria:
            pairs = parse_qsl(criteria.split("?", 1)[1])
            schedules = schedules_matching(self.store.org, pairs)
        self._n += 1
        sub = Subscription(
            id=f"sub-{self._n}",
            raw=body,
            endpoint=endpoint,
            headers=headers,
            payload=payload,
            heartbeat=max(0, heartbeat),
            schedules=schedules,
        )
        self.subscriptions[sub.id] = sub
        sub.queue.put_nowait(Notification("handshake", 0))
        sub.tasks.append(asyncio.get_running_loop().create_task(self._sender(sub)))
        if sub.heartbeat:
            sub.tasks.append(asyncio.get_running_loop().create_task(self._heartbeats(sub)))
        return sub

    async def delete(self, sub_id: str) -> None:
        sub = self.subscriptions.pop(sub_id, None)
        if sub is None:
            raise not_found(f"Subscription/{sub_id}")
        await self._cancel(sub)

    async def _cancel(self, sub: Subscription) -> None:
        sub.status = "off"
        for task in sub.tasks:
            task.cancel()
        for task in sub.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.subscriptions.pop(sub.id, None)

    # ----- events ------------------------------------------------------------------------
    def on_changes(self, changes: list[Change]) -> None:
        """Store listener: one event per changed schedule per subscription (never blocks)."""
        for sub in list(self.subscriptions.values()):
            if sub.status == "off":
                continue
            for change in changes:
                if sub.schedules is not None and change.schedule not in sub.schedules:
                    continue
                sub.events += 1
                self._enqueue(sub, Notification("event-notification", sub.events, change))

    def _enqueue(self, sub: Subscription, note: Notification) -> None:
        rule = self.faults.for_notification(sub.id)
        if rule is not None:
            self.stats.faults[rule.id] += 1
        kind = rule.kind if rule is not None else None
        if kind == "notify-drop":
            self.stats.notifications[f"{sub.id} dropped"] += 1
            return
        if kind == "notify-out-of-order" and sub.held is None:
            sub.held = note
            asyncio.get_running_loop().call_later(OUT_OF_ORDER_FLUSH_SECONDS, self._flush_held, sub)
            return
        sub.queue.put_nowait(note)
        if kind == "notify-duplicate":
            sub.queue.put_nowait(note)
        self._flush_held(sub)

    @staticmethod
    def _flush_held(sub: Subscription) -> None:
        if sub.held is not None:
            sub.queue.put_nowait(sub.held)
            sub.held = None

    # ----- delivery ----------------------------------------------------------------------
    async def _heartbeats(self, sub: Subscription) -> None:
        while True:
            due = sub.last_sent + sub.heartbeat
            now = time.monotonic()
            if now >= due and sub.queue.empty():
                sub.queue.put_nowait(Notification("heartbeat", sub.events))
                sub.last_sent = now  # the sender refreshes it once delivered
                due = now + sub.heartbeat
            await asyncio.sleep(max(0.05, due - time.monotonic()))

    async def _sender(self, sub: Subscription) -> None:
        cfg = self.config
        while True:
            note = await sub.queue.get()
            body, content_type = self._body(sub, note)
            headers = {name: value for name, value in sub.headers}
            headers.update(
                {
                    "X-Subscription-Id": sub.id,
                    "X-Notification-Type": note.kind,
                    "X-Event-Number": str(note.number),
                }
            )
            if content_type:
                headers["Content-Type"] = content_type
            delay = cfg.notify_backoff_seconds
            for attempt in range(1, cfg.notify_max_attempts + 1):
                error = await self._post(sub, body, headers)
                if error is None:
                    sub.last_sent = time.monotonic()
                    sub.status = "active"
                    sub.error = None
                    self.stats.notifications[f"{sub.id} {note.kind}"] += 1
                    self.stats.notifications["total"] += 1
                    break
                self.stats.notification_failures[sub.id] += 1
                sub.error = error
                if attempt == cfg.notify_max_attempts:
                    sub.status = "error"
                    log.warning(
                        "dropping %s %s after %d attempts: %s", sub.id, note.kind, attempt, error
                    )
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, cfg.notify_max_backoff_seconds)

    async def _post(self, sub: Subscription, body: bytes, headers: dict[str, str]) -> str | None:
        if self.client is None:  # an app served without its lifespan (e.g. in-process tests)
            await self.start()
        assert self.client is not None
        try:
            response = await self.client.post(sub.endpoint, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if response.status_code >= 300:
            return f"subscriber answered HTTP {response.status_code}"
        return None

    def _body(self, sub: Subscription, note: Notification) -> tuple[bytes, str | None]:
        focus = None if note.change is None else self.stripped_schedule(note.change)
        if self.config.fhir_version == "stu3":
            if focus is None or sub.payload == "empty":
                return b"", None
            return msgspec.json.encode(focus), FHIR_JSON
        return msgspec.json.encode(self._r4_bundle(sub, note, focus)), FHIR_JSON

    def status_parameters(
        self, sub: Subscription, kind: str, note: Notification | None, focus: dict[str, Any] | None
    ) -> dict[str, Any]:
        params: list[dict[str, Any]] = [
            {"name": "subscription", "valueReference": {"reference": f"Subscription/{sub.id}"}},
            {
                "name": "topic",
                "valueCanonical": str(sub.raw.get("criteria") or codes.SCHEDULE_TOPIC),
            },
            {"name": "status", "valueCode": "active" if sub.status == "requested" else sub.status},
            {"name": "type", "valueCode": kind},
            {"name": "events-since-subscription-start", "valueString": str(sub.events)},
        ]
        if note is not None and note.kind == "event-notification":
            parts: list[dict[str, Any]] = [
                {"name": "event-number", "valueString": str(note.number)},
                {"name": "timestamp", "valueInstant": now_instant()},
            ]
            if focus is not None and sub.payload != "empty":
                parts.append(
                    {"name": "focus", "valueReference": {"reference": f"Schedule/{focus['id']}"}}
                )
            params.append({"name": "notification-event", "part": parts})
        return {
            "resourceType": "Parameters",
            "id": str(uuid.uuid4()),
            "meta": {"profile": [codes.BACKPORT_STATUS_PROFILE]},
            "parameter": params,
        }

    def _r4_bundle(
        self, sub: Subscription, note: Notification, focus: dict[str, Any] | None
    ) -> dict[str, Any]:
        status = self.status_parameters(sub, note.kind, note, focus)
        entries: list[dict[str, Any]] = [
            {
                "fullUrl": f"urn:uuid:{status['id']}",
                "resource": status,
                "request": {"method": "GET", "url": f"Subscription/{sub.id}/$status"},
                "response": {"status": "200"},
            }
        ]
        if focus is not None and sub.payload != "empty":
            e: dict[str, Any] = {"fullUrl": f"{self.base_url}/Schedule/{focus['id']}"}
            if sub.payload == "full-resource":
                e["resource"] = focus
            e["request"] = {"method": "PUT", "url": f"Schedule/{focus['id']}"}
            e["response"] = {"status": "200"}
            entries.append(e)
        return {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {
                "profile": [
                    f"{codes.BACKPORT}/StructureDefinition/backport-subscription-notification-r4"
                ]
            },
            "type": "history",
            "timestamp": now_instant(),
            "entry": entries,
        }
