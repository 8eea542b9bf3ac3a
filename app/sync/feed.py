"""The EHR change feed: our Subscription, the heartbeat watchdog, and polling.

- :func:`ensure_subscription` creates our Subscription at the EHR, or keeps the one
  recorded if the EHR still has it active (renewal), and records id and status.
- :func:`watchdog` runs every few seconds (Celery beat): a feed silent for longer
  than ``heartbeat_seconds x heartbeat_grace`` becomes ``stale``; while no feed is
  live (stale, or ``catching-up`` after lost notifications), it has the poller run
  every ``poll_interval_seconds``; while a subscribed feed is silent, it also has the
  Subscription checked at the EHR (and replaced if the EHR gave up on it) once per
  grace period. A heartbeat or event puts a stale feed back to
  ``live``; a successful poll does so for a catching-up one.
- :func:`poll` looks for changes without notifications. R4: ``Slot?_lastUpdated=gt``
  since the cursor, then a coalesced refresh of each changed schedule's days. STU3
  (or no cursor yet): the near days re-read whole, one day per snapshot replace.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from app.cache import claims, feeds, recovery
from app.cache import repository as repo
from app.cache import runs as runs_repo
from app.cache.db import transaction
from app.core.domain import Slot
from app.core.occupancy import slot_ids_of
from app.core.times import fhir_instant
from app.ehr.errors import EhrError, EhrRejected
from app.fhir.parse import FhirParseError, parse_bundle_page, parse_slot

from . import capabilities
from .chunk import APPOINTMENT_LOOKBACK, Chunk, sync_chunk
from .context import SyncContext
from .coordination import ScheduleBusy
from .dispatch import Dispatcher
from .inbox import POLL_CLAIM
from .refresh import request_refresh
from .retry import describe_error
from .windows import DAY, day_start, days_in

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhook/subscription"
CURSOR_MARGIN = timedelta(seconds=5)  # clock skew between us and the EHR, and commit lag
RUN_RETENTION = timedelta(days=7)
RECHECK_CLAIM = "pending:subscription-recheck"


def webhook_url(ctx: SyncContext) -> str:
    """Our callback, or "" when subscriptions are switched off (polling only)."""
    if not ctx.settings.ehr_subscriptions:
        return ""
    return ctx.settings.public_base_url.rstrip("/") + WEBHOOK_PATH


def feed_row(ctx: SyncContext) -> Any:
    """Our feed's row (created on first use): subscription, liveness, poll cursor."""
    with transaction(ctx.engine) as session:
        row = feeds.get_or_create(
            session,
            endpoint=webhook_url(ctx),
            fhir_version=ctx.settings.ehr_fhir_version,
            heartbeat_seconds=ctx.settings.heartbeat_seconds,
            now=ctx.clock(),
        )
        return row


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    endpoint: str
    ehr_id: str | None
    status: str
    created: bool
    error: str | None = None


def _remote_subscription(ctx: SyncContext, ehr_id: str) -> dict[str, Any] | None:
    """The EHR's current view of our Subscription, by read or else by search."""
    try:
        found = ctx.client.read(f"Subscription/{ehr_id}")
        return found if isinstance(found, dict) else None
    except EhrRejected as exc:
        if exc.status not in (404, 405):
            raise
    for bundle in ctx.client.iter_pages("/Subscription", [("_id", ehr_id)]):
        for entry in bundle.get("entry") or ():
            res = entry.get("resource") or {}
            if res.get("resourceType") == "Subscription" and res.get("id") == ehr_id:
                return res  # type: ignore[no-any-return]
    return None


def subscription_body(ctx: SyncContext, endpoint: str) -> dict[str, Any]:
    settings = ctx.settings
    return ctx.client.version.subscription(
        endpoint=endpoint,
        secret=settings.webhook_secret.get_secret_value(),
        topic=settings.subscription_topic,
        heartbeat_seconds=settings.heartbeat_seconds,
    )


def ensure_subscription(ctx: SyncContext) -> SubscriptionState:
    """Create or renew our Subscription; with subscriptions off there is nothing to do."""
    row = feed_row(ctx)
    endpoint = row.endpoint
    if not endpoint:
        return SubscriptionState(endpoint="", ehr_id=None, status="off", created=False)
    now = ctx.clock()
    try:
        if row.ehr_id:
            remote = _remote_subscription(ctx, row.ehr_id)
            if remote is not None and remote.get("status") in ("requested", "active"):
                status = str(remote["status"])
                with transaction(ctx.engine) as session:
                    feeds.record_subscription(
                        session, row.id, ehr_id=row.ehr_id, status=status, now=now
                    )
                return SubscriptionState(endpoint, row.ehr_id, status, created=False)
            if remote is not None:  # errored or switched off at the EHR: replace it
                try:
                    ctx.client.delete(f"/Subscription/{row.ehr_id}")
                except EhrRejected:
                    log.info("could not delete Subscription/%s; creating anew", row.ehr_id)
        with transaction(ctx.engine) as session:
            # the EHR may hand-shake before its answer reaches us: mark the feed as
            # being created, so that the handshake finds it (see feeds.heard)
            feeds.record_subscription(session, row.id, ehr_id=None, status="creating", now=now)
        created = ctx.client.post_json("/Subscription", subscription_body(ctx, endpoint))
    except EhrError as exc:
        error = describe_error(exc)
        with transaction(ctx.engine) as session:
            feeds.record_subscription(
                session, row.id, ehr_id=None, status="error", now=now, error=error
            )
        log.warning("subscription at the EHR failed: %s", error)
        return SubscriptionState(endpoint, row.ehr_id, "error", created=False, error=error)
    ehr_id = created.get("id") if isinstance(created, dict) else None
    status = str((created or {}).get("status") or "requested")
    with transaction(ctx.engine) as session:
        feeds.record_subscription(session, row.id, ehr_id=ehr_id, status=status, now=now)
        feeds.reset_numbering(session, row.id)
    log.info("subscribed at the EHR: Subscription/%s -> %s (%s)", ehr_id, endpoint, status)
    return SubscriptionState(endpoint, ehr_id, status, created=True)


@dataclass(frozen=True, slots=True)
class WatchdogReport:
    live: int
    went_stale: int
    polled: bool
    resubscribed: bool = False


def watchdog(ctx: SyncContext, dispatcher: Dispatcher) -> WatchdogReport:
    """Mark silent feeds stale; keep polling while no feed is live."""
    settings = ctx.settings
    now = ctx.clock()
    feed_row(ctx)
    went_stale = 0
    with transaction(ctx.engine) as session:
        rows = feeds.all_feeds(session)
        live = 0
        recheck_after: float | None = None  # the shortest grace of a silent subscribed feed
        for row in rows:
            if row.status == "off":
                continue
            period = row.heartbeat_seconds or settings.heartbeat_seconds
            silent = now - (row.last_heard_at or row.created_at)
            limit = timedelta(seconds=period * settings.heartbeat_grace)
            if silent <= limit:
                live += row.feed_state == "live"
                continue
            if row.feed_state == "live" and feeds.mark_stale(session, row.id, now):
                went_stale += 1
                log.warning("EHR feed %s silent for %s: stale, polling", row.id, silent)
            grace = limit.total_seconds()
            recheck_after = grace if recheck_after is None else min(recheck_after, grace)
        last_poll = max((r.last_polled_at for r in rows if r.last_polled_at), default=None)
        runs_repo.prune_runs(session, now - RUN_RETENTION)
    # Poll at the last look before the interval would be overrun: a change waits at
    # most one poll interval (plus the poll's own work), not an interval and a look.
    due = last_poll is None or now - last_poll >= timedelta(
        seconds=max(0, settings.poll_interval_seconds - settings.watchdog_seconds)
    )
    polled = False
    if (
        live == 0
        and (went_stale or due)
        and ctx.coord.claim(POLL_CLAIM, settings.poll_interval_seconds)
    ):
        dispatcher.poll("feed stale" if went_stale else "polling: no live feed")
        polled = True
    # A silent feed may have been given up by the EHR (a failed handshake, say, because
    # the EHR called before our API was listening): have the Subscription checked, and
    # replaced if so, once per grace period of silence rather than at the hourly renewal.
    resubscribed = recheck_after is not None and ctx.coord.claim(RECHECK_CLAIM, recheck_after)
    if resubscribed:
        dispatcher.subscribe()
    return WatchdogReport(
        live=live, went_stale=went_stale, polled=polled, resubscribed=resubscribed
    )


@dataclass(frozen=True, slots=True)
class PollResult:
    mode: str  # since | near-days | busy (another poll is running) | failed
    changed_slots: int
    refreshes: int
    error: str | None = None
    deleted_slots: int = 0
    changed_appointments: int = 0


POLL_LOCK = "feed-poll"


def poll(ctx: SyncContext, dispatcher: Dispatcher) -> PollResult:
    """One polling pass, one at a time; never raises for EHR trouble (recorded on the feed).

    Incremental where the EHR can search Slots by ``_lastUpdated``: from the high-water
    mark of the last successful poll (the newest ``meta.lastUpdated`` seen; before any,
    the start of the full load at work or of the last complete one), less a small
    overlap for clock skew, so a poll
    after an outage reads what changed during it, not everything. Deletions, which
    ``_lastUpdated`` cannot show, come from ``Slot/_history`` where the EHR has it (and
    otherwise from the near-days reconcile). Without a cursor or such a search: the
    near days are read again whole.
    """
    ctx.coord.release(POLL_CLAIM)
    with ExitStack() as held:
        try:
            held.enter_context(
                ctx.coord.hold([POLL_LOCK], ttl=ctx.settings.task_time_limit_seconds, wait=0)
            )
        except ScheduleBusy:
            log.info("a poll is running already: not polling twice at once")
            return PollResult(mode="busy", changed_slots=0, refreshes=0)
        return _poll(ctx, dispatcher)


def _poll(ctx: SyncContext, dispatcher: Dispatcher) -> PollResult:
    row = feed_row(ctx)
    now = ctx.clock()
    caps = capabilities.known(ctx)
    start = row.poll_cursor
    if start is None:  # no poll succeeded yet: what a full load may have missed
        with transaction(ctx.engine) as session:
            start = recovery.changes_floor(session)
    incremental = start is not None and (
        ctx.client.version.changes_since or (caps is not None and caps.slot_changes_since)
    )
    cursor: datetime | None = None
    try:
        if incremental:
            assert start is not None
            since = start - CURSOR_MARGIN
            result, cursor = _poll_since(ctx, dispatcher, since)
            if caps is not None and caps.slot_history:
                deleted, newest = _poll_deletions(ctx, dispatcher, since)
                result = replace(result, deleted_slots=deleted)
                cursor = _later(cursor, newest)
            if (
                ctx.client.version.slots_need_appointments
                and caps is not None
                and caps.searches("Appointment", "_lastUpdated")
            ):
                appointments, newest = _poll_appointments(ctx, dispatcher, since)
                result = replace(result, changed_appointments=appointments)
                cursor = _later(cursor, newest)
        else:
            result = _poll_near_days(ctx)
            cursor = now
    except EhrError as exc:
        error = describe_error(exc)
        with transaction(ctx.engine) as session:
            feeds.record_poll(session, row.id, now=now, cursor=None, error=error)
        log.warning("poll failed: %s", error)
        return PollResult(mode="failed", changed_slots=0, refreshes=0, error=error)
    with transaction(ctx.engine) as session:
        feeds.record_poll(session, row.id, now=now, cursor=cursor, error=None)
        feeds.caught_up(session, now)
    return result


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None or (b is not None and b > a) else a


def _poll_appointments(
    ctx: SyncContext, dispatcher: Dispatcher, since: datetime
) -> tuple[int, datetime | None]:
    """Appointments written since ``since`` (booked by another client, cancelled): the
    days of their slots are refreshed, and a refresh reads the slots' Appointments
    again. Where the EHR leaves a booked Slot ``free`` (plain R4), this is how a poll
    learns that it is taken, or free again. Returns (appointments seen, newest change).
    """
    lo, hi = ctx.horizon()
    slot_ids: set[str] = set()
    seen = 0
    newest: datetime | None = None
    for bundle in ctx.client.appointment_pages(lo - APPOINTMENT_LOOKBACK, hi, updated_after=since):
        for entry in bundle.get("entry") or ():
            resource = entry.get("resource") or {}
            if resource.get("resourceType") != "Appointment":
                continue
            seen += 1
            newest = _later(newest, _instant((resource.get("meta") or {}).get("lastUpdated")))
            slot_ids.update(slot_ids_of(resource))
    if not slot_ids:
        return seen, newest
    with transaction(ctx.engine) as session:
        positions = repo.slot_positions(session, slot_ids)
    # slots the cache left out as taken (a cancellation frees them): ask where they are
    for sid in sorted(slot_ids - set(positions)):
        try:
            slot = parse_slot(ctx.client.read(f"Slot/{sid}"))
        except EhrRejected as exc:
            if exc.status not in (404, 410):
                raise
            continue  # gone: nothing to offer again
        except FhirParseError:
            continue
        positions[sid] = (slot.schedule_id, slot.start)
    _refresh_days(ctx, dispatcher, positions.values())
    return seen, newest


def _poll_deletions(
    ctx: SyncContext, dispatcher: Dispatcher, since: datetime
) -> tuple[int, datetime | None]:
    """Slots the EHR deleted since ``since`` (``Slot/_history``): their schedules' days are
    refreshed, which removes them. Returns (deletions seen, newest change time)."""
    params = [("_since", fhir_instant(since))]
    gone: list[str] = []
    newest: datetime | None = None
    for bundle in ctx.client.iter_pages("/Slot/_history", params):
        for entry in bundle.get("entry") or ():
            request = entry.get("request") or {}
            changed = _instant((entry.get("response") or {}).get("lastModified"))
            if changed is not None and (newest is None or changed > newest):
                newest = changed
            if request.get("method") != "DELETE":
                continue
            url = str(request.get("url") or entry.get("fullUrl") or "")
            parts = url.rstrip("/").split("/")
            if "Slot" in parts and parts.index("Slot") + 1 < len(parts):
                gone.append(parts[parts.index("Slot") + 1])
    if not gone:
        return 0, newest
    with transaction(ctx.engine) as session:
        cached = repo.slot_positions(session, gone)
    _refresh_days(ctx, dispatcher, cached.values())
    return len(cached), newest


def _refresh_days(
    ctx: SyncContext, dispatcher: Dispatcher, positions: Iterable[tuple[str, datetime]]
) -> int:
    """Queue one coalesced refresh per schedule, over the days of these (schedule, start)
    positions within the horizon; returns the refreshes queued."""
    lo, hi = ctx.horizon()
    spans: dict[str, tuple[datetime, datetime]] = {}
    for schedule_id, start in positions:
        day = day_start(start)
        first, last = spans.get(schedule_id, (day, day))
        spans[schedule_id] = (min(first, day), max(last, day))
    queued = 0
    heard_at = ctx.clock()  # after the read that found the changes
    for sid, (first, last) in sorted(spans.items()):
        window = (max(first, lo), min(last + DAY, hi))
        if window[0] < window[1] and request_refresh(
            ctx.coord,
            dispatcher,
            sid,
            window,
            ttl=ctx.settings.refresh_coalesce_seconds,
            heard_at=heard_at,
        ):
            queued += 1
    return queued


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _poll_since(
    ctx: SyncContext, dispatcher: Dispatcher, since: datetime
) -> tuple[PollResult, datetime | None]:
    """Slots changed since ``since``; the days of those the cache does not already hold as
    they are are refreshed (the overlap re-reads the last changes: they cost nothing)."""
    lo, hi = ctx.horizon()
    newest: datetime | None = None
    seen: list[Slot] = []
    for bundle in ctx.client.slot_search_pages(lo, hi, updated_after=since, include_schedule=False):
        for slot in parse_bundle_page(bundle).slots:
            seen.append(slot)
            if slot.last_updated and (newest is None or slot.last_updated > newest):
                newest = slot.last_updated
    with transaction(ctx.engine) as session:
        cached = claims.slots_by_id(session, [s.id for s in seen])
    changes = [s for s in seen if not _already_cached(s, cached.get(s.id))]
    refreshes = _refresh_days(ctx, dispatcher, ((s.schedule_id, s.start) for s in changes))
    changed = len(changes)
    return PollResult(mode="since", changed_slots=changed, refreshes=refreshes), newest


def _already_cached(fetched: Slot, cached: Slot | None) -> bool:
    """The cache holds this change already: the same free slot, or a taken one it left out."""
    if fetched.status != "free":
        return cached is None
    if cached is None:
        return False
    if fetched.version_id is not None and fetched.version_id == cached.version_id:
        return (fetched.start, fetched.end) == (cached.start, cached.end)
    return False


def _poll_near_days(ctx: SyncContext) -> PollResult:
    lo, hi = ctx.horizon()
    end = min(hi, lo + timedelta(days=ctx.settings.poll_near_days))
    changed = 0
    for day in days_in(lo, end):
        result = sync_chunk(
            ctx.engine,
            ctx.client,
            Chunk(None, day, day + DAY),
            clock=ctx.clock,
            refetch_attempts=ctx.settings.ehr_refetch_attempts,
        )
        changed += result.upserted + result.deleted
    return PollResult(mode="near-days", changed_slots=changed, refreshes=len(days_in(lo, end)))
