"""Accepting a notification: record that the feed is alive, enqueue what changed.

Runs inside the webhook request, so it does no EHR traffic: one short
transaction (feed bookkeeping and schedule lookups) that commits only after the
coalesced enqueues succeeded. If Redis or the broker is down the whole notification
is forgotten (the caller answers 5xx): the EHR delivers it again, and should it give
up, the event number it used shows up as a gap in the next one and triggers a poll.
Recording the number before the enqueue would hide exactly that gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from app.cache import feeds
from app.cache import repository as repo
from app.cache.db import transaction
from app.fhir.notification import Notification
from app.settings import Settings

from .coordination import Coordinator
from .dispatch import Dispatcher
from .refresh import request_actor_refresh, request_refresh
from .windows import align, horizon

POLL_CLAIM = "pending:poll"


@dataclass(frozen=True, slots=True)
class Accepted:
    kind: str
    enqueued: int  # refreshes queued now
    coalesced: int  # refreshes already queued, not queued again
    outside_horizon: int  # changes in periods we do not cache
    poll: bool  # a catch-up poll was requested (missed events or no payload)


def accept_notification(
    *,
    engine: Engine,
    coord: Coordinator,
    dispatcher: Dispatcher,
    settings: Settings,
    note: Notification,
    now: datetime,
) -> Accepted:
    limits = horizon(now, settings.horizon_days)
    schedule_jobs: list[tuple[str, tuple[datetime, datetime]]] = []
    actor_jobs: list[tuple[str, tuple[datetime, datetime]]] = []
    outside = 0
    with transaction(engine) as session:
        heard = feeds.heard(
            session,
            ehr_id=note.subscription_id,
            kind=note.kind,
            numbers=note.event_numbers,
            events_since_start=note.events_since_start,
            now=now,
        )
        for target in note.targets:
            window = align(target.start, target.end, limits)
            if window is None:
                outside += 1
                continue
            ids: set[str] = set()
            if target.schedule_id and repo.schedules_by_id(session, [target.schedule_id]):
                ids = {target.schedule_id}
            elif target.actor_refs:
                ids = repo.schedule_ids_for_actors(session, [target.actor_refs]) or set()
                if not ids:
                    actor_jobs.extend((ref, window) for ref in target.actor_refs)
                    continue
            elif target.schedule_id:
                ids = {target.schedule_id}  # new to us: the refresh reads it from the EHR
            schedule_jobs.extend((sid, window) for sid in sorted(ids))
        ttl = settings.refresh_coalesce_seconds
        enqueued = coalesced = 0
        for sid, window in schedule_jobs:
            if request_refresh(coord, dispatcher, sid, window, ttl=ttl, heard_at=now):
                enqueued += 1
            else:
                coalesced += 1
        for ref, window in actor_jobs:
            if request_actor_refresh(coord, dispatcher, ref, window, ttl=ttl):
                enqueued += 1
            else:
                coalesced += 1
        # An event without payload says only "something changed"; a gap in the event
        # numbers says a notification was lost. Either way, look for it by polling.
        want_poll = any(h.missed_events for h in heard) or (
            note.kind == "event" and not note.targets
        )
        polled = want_poll and coord.claim(POLL_CLAIM, settings.poll_interval_seconds)
        if polled:
            dispatcher.poll("missed or empty notification")
    return Accepted(
        kind=note.kind,
        enqueued=enqueued,
        coalesced=coalesced,
        outside_horizon=outside,
        poll=polled,
    )
