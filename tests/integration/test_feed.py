"""Notifications in, refreshes out; subscription upkeep; the heartbeat watchdog; polling.

Against the sandbox EHR in-process: its organisation, its Subscriptions, its changes.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import kombu.exceptions
import pytest
from sqlalchemy.orm import Session

from app.cache import feeds
from app.fhir.notification import Notification, Target
from app.sync import feed
from app.sync.chunk import Chunk, sync_chunk
from app.sync.inbox import accept_notification
from app.sync.messages import ResyncRequest
from app.sync.refresh import pending_key, refresh_schedule, refresh_windows, request_refresh
from app.sync.runs import run_in_process
from benchmarks.processes import free_port, wait_until
from tests.receiver import receiving
from tests.sync_support import (
    DAY0,
    Clock,
    RecordingDispatcher,
    SandboxEhr,
    cached,
    context,
    view,
)

HOOK = "https://slotsync.example/webhook/subscription"


def subscribed(engine, ctx, *, status):
    """The STU3 feed of our webhook, with the EHR's subscription sub-1 in ``status``."""
    with Session(engine) as s, s.begin():
        row = feeds.get_or_create(
            s, endpoint=HOOK, fhir_version="stu3", heartbeat_seconds=60, now=ctx.clock()
        )
        feeds.record_subscription(s, row.id, ehr_id="sub-1", status=status, now=ctx.clock())


DAY = timedelta(days=1)
TWO_DAYS = (DAY0, DAY0 + 2 * DAY)


def loaded(engine, sandbox, *, ehr_config=None, faults=(), **overrides):
    """The sandbox (one page a day; the fault rules set) loaded into the cache."""
    ehr = sandbox(overrides.get("ehr_fhir_version", "stu3"), page_size=200, **(ehr_config or {}))
    for path, rule in faults:
        ehr.fail(path, **rule)
    clock = Clock(DAY0 + timedelta(hours=1))
    overrides.setdefault("ehr_subscriptions", "public_base_url" in overrides)
    overrides.setdefault("load_schedules_per_chunk", 10)  # R4 loads by schedule
    ctx = context(engine, ehr, clock=clock, **overrides)
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    return ehr, ctx, clock


def practitioner(ehr: SandboxEhr, schedule: str) -> str:
    return next(a for a in ehr.schedules[schedule] if a.startswith("Practitioner/"))


def first_day(ehr: SandboxEhr, skip: int = 0) -> tuple[str, str, list[str]]:
    """A practitioner's schedule with free slots on the first day: (id, actor, those slots)."""
    schedule = ehr.busiest(before=DAY0 + DAY, skip=skip)
    slots = list(ehr.truth(schedule, start=DAY0, end=DAY0 + DAY))
    return schedule, practitioner(ehr, schedule), slots


def event(sid, actor, start=None, end=None, **kw):
    start = start or DAY0 + timedelta(hours=14)
    return Notification(
        kind="event",
        targets=(Target(schedule_id=sid, actor_refs=(actor,), start=start, end=end or start),),
        **kw,
    )


def accept(ctx, dispatcher, note):
    return accept_notification(
        engine=ctx.engine,
        coord=ctx.coord,
        dispatcher=dispatcher,
        settings=ctx.settings,
        note=note,
        now=ctx.clock(),
    )


def test_a_storm_of_identical_notifications_queues_one_refresh(engine, sandbox):
    ehr, ctx, _ = loaded(engine, sandbox)
    sid, actor, (s0, *_) = first_day(ehr)
    dispatcher = RecordingDispatcher()
    results = [accept(ctx, dispatcher, event(sid, actor)) for _ in range(20)]
    assert [r.enqueued for r in results] == [1] + [0] * 19
    assert dispatcher.of("refresh") == [("refresh", sid, DAY0, DAY0 + timedelta(days=1))]

    # once the refresh holds the lock and starts fetching, a new change queues again
    ehr.book(s0)
    refresh_schedule(ctx, sid, DAY0, DAY0 + timedelta(days=1))
    assert s0 not in cached(engine)
    assert accept(ctx, dispatcher, event(sid, actor)).enqueued == 1


def heard(ctx, sid, window, at):
    """A change of ``sid`` heard at ``at``: its refresh queued (to a recorder)."""
    return request_refresh(ctx.coord, RecordingDispatcher(), sid, window, ttl=600, heard_at=at)


def load_chunk(ctx, window):
    """A fetch of the whole window that is not a refresh (a load's chunk)."""
    return sync_chunk(ctx.engine, ctx.client, Chunk(None, *window), clock=ctx.clock)


def test_a_refresh_whose_change_a_later_fetch_read_is_skipped(engine, sandbox):
    """The backlog after a burst drains without EHR reads: a refresh heard before a
    fetch of the same days began has nothing left to learn."""
    ehr, ctx, clock = loaded(engine, sandbox)
    sid, _, (s0, *_) = first_day(ehr)
    s40 = list(ehr.truth(sid, start=DAY0, end=TWO_DAYS[1]))[-1]
    assert s40 != s0
    window = TWO_DAYS
    assert heard(ctx, sid, window, clock())
    ehr.book(s0)
    clock.now += timedelta(seconds=2)
    load_chunk(ctx, window)  # a later fetch of the days
    reads = len(ehr.requests)
    assert refresh_schedule(ctx, sid, *window).covered
    assert len(ehr.requests) == reads

    # a change heard after the last fetch began is read
    clock.now += timedelta(seconds=5)
    assert heard(ctx, sid, window, clock())
    ehr.book(s40)
    clock.now += timedelta(seconds=2)
    assert not refresh_schedule(ctx, sid, *window).covered
    assert len(ehr.requests) > reads
    assert {s0, s40}.isdisjoint(cached(engine))


def test_a_coalesced_later_change_is_not_skipped(engine, sandbox):
    """Notifications coalesced into a queued refresh raise its stamp: a fetch newer
    than the first of them but older than the last does not cover the refresh."""
    ehr, ctx, clock = loaded(engine, sandbox)
    sid, _, (s0, *_) = first_day(ehr)
    window = TWO_DAYS
    assert heard(ctx, sid, window, clock())
    clock.now += timedelta(seconds=2)
    load_chunk(ctx, window)  # newer than the first change only
    clock.now += timedelta(seconds=2)
    ehr.book(s0)
    assert not heard(ctx, sid, window, clock())  # coalesced
    clock.now += timedelta(seconds=2)
    assert not refresh_schedule(ctx, sid, *window).covered
    assert s0 not in cached(engine)


def test_a_change_heard_within_the_clock_margin_of_a_fetch_is_read_again(engine, sandbox):
    ehr, ctx, clock = loaded(engine, sandbox)
    sid, _, _ = first_day(ehr)
    window = TWO_DAYS
    load_chunk(ctx, window)
    # heard a little before the fetch began, by the API's clock behind the worker's
    assert heard(ctx, sid, window, clock.now - timedelta(milliseconds=500))
    reads = len(ehr.requests)
    assert not refresh_schedule(ctx, sid, *window).covered
    assert len(ehr.requests) > reads


def test_a_refresh_without_a_claim_always_reads(engine, sandbox):
    """A retried refresh (its claim taken by the failed attempt) reads the EHR."""
    ehr, ctx, clock = loaded(engine, sandbox)
    sid, _, _ = first_day(ehr)
    window = TWO_DAYS
    assert heard(ctx, sid, window, clock())
    clock.now += timedelta(seconds=2)
    refresh_schedule(ctx, sid, *window)  # takes the claim
    reads = len(ehr.requests)
    assert not refresh_schedule(ctx, sid, *window).covered
    assert len(ehr.requests) > reads


def test_an_unnameable_schedule_is_refreshed_day_by_day_for_all(engine, sandbox):
    """STU3 $prefetch cannot name a device's schedule: the unfiltered reads it needs
    refresh every schedule of those days, and their queued refreshes are skipped."""
    ehr, ctx, clock = loaded(engine, sandbox)
    window = TWO_DAYS
    sid, _, (s40, *_) = first_day(ehr)
    device = ehr.busiest("sch-dev-", before=window[1])
    (dev40, *_) = ehr.truth(device, start=window[0], end=window[1])
    assert heard(ctx, device, window, clock())
    assert heard(ctx, sid, window, clock())
    ehr.book(s40, dev40)
    clock.now += timedelta(seconds=2)
    reads = len(ehr.requests)
    result = refresh_schedule(ctx, device, *window)
    assert not result.covered
    prefetches = [r for r in ehr.requests[reads:] if r.url.path.endswith("$prefetch")]
    assert len(prefetches) == 2  # one unfiltered read per day
    assert all("practitioner" not in str(r.url) for r in prefetches)
    assert {s40, dev40}.isdisjoint(cached(engine))  # both schedules read
    assert view(cached(engine)) == ehr.truth()
    reads = len(ehr.requests)
    assert refresh_schedule(ctx, sid, *window).covered
    assert len(ehr.requests) == reads


def test_notifications_resolve_actors_and_ignore_other_periods(engine, sandbox):
    ehr, ctx, _ = loaded(engine, sandbox)
    sid, actor, _ = first_day(ehr)
    dispatcher = RecordingDispatcher()
    by_actor = event(sid="example1", actor=actor)  # IG-style id, known actor
    assert accept(ctx, dispatcher, by_actor).enqueued == 1
    assert dispatcher.of("refresh")[0][1] == sid
    unknown = event(sid="example2", actor="Practitioner/pr-new")
    accept(ctx, dispatcher, unknown)
    assert dispatcher.of("refresh_actor")[0][1] == "Practitioner/pr-new"
    far = event(sid, actor, start=DAY0 + timedelta(days=300))
    assert accept(ctx, dispatcher, far).outside_horizon == 1
    assert len(dispatcher.calls) == 2


def test_feed_liveness_and_event_gaps(engine, sandbox):
    _, ctx, _ = loaded(engine, sandbox, public_base_url="https://slotsync.example")
    subscribed(engine, ctx, status="requested")
    dispatcher = RecordingDispatcher()
    accept(
        ctx,
        dispatcher,
        Notification(kind="handshake", subscription_id="sub-1", events_since_start=0),
    )
    accept(ctx, dispatcher, numbered(1))
    assert not dispatcher.of("poll")
    accept(ctx, dispatcher, numbered(3))  # 2 was lost
    assert len(dispatcher.of("poll")) == 1
    # late: read as a restart of the numbering, which the pending catch-up covers
    accept(ctx, dispatcher, numbered(2))
    beat = Notification(kind="heartbeat", subscription_id="sub-1", events_since_start=3)
    accept(ctx, dispatcher, beat)
    assert len(dispatcher.of("poll")) == 1
    with Session(engine) as s:
        (row,) = feeds.all_feeds(s)
    # heard from, but until a poll has made up for the lost event the feed is not live
    assert (row.status, row.feed_state, row.last_event_number) == ("active", "catching-up", 3)
    assert feed.watchdog(ctx, dispatcher).live == 0
    feed.poll(ctx, dispatcher)
    with Session(engine) as s:
        (row,) = feeds.all_feeds(s)
    assert (row.feed_state, row.last_event_number) == ("live", 3)


def numbered(number, subscription_id="sub-1", **kw):
    """Event ``number`` of the subscription, about a schedule (the cache need not know it)."""
    note = event("sch-pr-1", "Practitioner/pr-1", event_numbers=(number,), **kw)
    return replace(note, subscription_id=subscription_id)


def last_event_number(engine):
    with Session(engine) as s:
        (row,) = feeds.all_feeds(s)
    return row.last_event_number


def test_a_gap_right_after_a_catch_up_is_still_a_gap(engine, sandbox):
    _, ctx, _ = loaded(engine, sandbox, public_base_url="https://slotsync.example")
    subscribed(engine, ctx, status="active")
    dispatcher = RecordingDispatcher()
    for number in (1, 3):  # 2 was lost
        accept(ctx, dispatcher, numbered(number))
    feed.poll(ctx, dispatcher)  # caught up
    assert accept(ctx, dispatcher, numbered(5)).poll  # 4 was lost
    feed.poll(ctx, dispatcher)
    assert not accept(ctx, dispatcher, numbered(6)).poll
    assert accept(ctx, dispatcher, numbered(8)).poll  # 7 was lost


def test_a_gap_in_the_first_events_of_a_new_subscription_is_a_gap(engine, sandbox):
    ehr, ctx, _ = loaded(engine, sandbox, public_base_url="https://slotsync.example")
    dispatcher = RecordingDispatcher()
    first = feed.ensure_subscription(ctx)
    assert first.created
    accept(ctx, dispatcher, Notification(kind="handshake"))  # Argonaut: no number
    assert not accept(ctx, dispatcher, numbered(1, first.ehr_id)).poll
    assert accept(ctx, dispatcher, numbered(3, first.ehr_id)).poll  # 2 was lost
    feed.poll(ctx, dispatcher)

    ehr.forget_subscriptions()  # the EHR forgot it: a new one counts from 1 again
    second = feed.ensure_subscription(ctx)
    assert second.created and second.ehr_id != first.ehr_id
    assert accept(ctx, dispatcher, numbered(2, second.ehr_id)).poll  # 1 was lost
    assert last_event_number(engine) == 2


def test_numbering_restarted_by_the_ehr_keeps_finding_gaps(engine, sandbox):
    _, ctx, _ = loaded(engine, sandbox, public_base_url="https://slotsync.example")
    subscribed(engine, ctx, status="active")
    dispatcher = RecordingDispatcher()
    for number in range(1, 51):
        assert not accept(ctx, dispatcher, numbered(number)).poll
    # the EHR restarted and counts the same Subscription's events from 1 again
    assert not accept(ctx, dispatcher, numbered(1)).poll
    assert not accept(ctx, dispatcher, numbered(2)).poll
    assert accept(ctx, dispatcher, numbered(4)).poll  # 3 was lost
    feed.poll(ctx, dispatcher)
    # restarted again, its first event lost on the way
    assert accept(ctx, dispatcher, numbered(2)).poll
    feed.poll(ctx, dispatcher)
    for number in range(3, 11):
        assert not accept(ctx, dispatcher, numbered(number)).poll
    # and again, both events of the new count lost: the next heartbeat tells
    beat = Notification(kind="heartbeat", subscription_id="sub-1", events_since_start=2)
    assert accept(ctx, dispatcher, beat).poll
    feed.poll(ctx, dispatcher)
    assert not accept(ctx, dispatcher, numbered(3)).poll


def test_an_event_count_ahead_of_the_event_does_not_hide_a_later_gap(engine, sandbox):
    """An event notification may count events still on their way; they are not heard yet."""
    _, ctx, _ = loaded(engine, sandbox, public_base_url="https://slotsync.example")
    subscribed(engine, ctx, status="active")
    dispatcher = RecordingDispatcher()
    accept(ctx, dispatcher, numbered(1, events_since_start=1))
    assert not accept(ctx, dispatcher, numbered(2, events_since_start=3)).poll
    assert accept(ctx, dispatcher, numbered(4, events_since_start=4)).poll  # 3 was lost
    assert last_event_number(engine) == 4


class BrokerDown(RecordingDispatcher):
    def refresh(self, schedule_id, start, end):
        raise kombu.exceptions.OperationalError("Error 111 connecting to the broker")


def test_a_notification_the_broker_refused_is_forgotten_whole(engine, sandbox):
    """The webhook answers 5xx and keeps nothing: neither the event number (a lost
    notification must still show as a gap) nor the coalescing claim (a redelivery must
    queue the refresh, not be coalesced into one that was never queued)."""
    ehr, ctx, _ = loaded(engine, sandbox, public_base_url="https://slotsync.example")
    sid, actor, _ = first_day(ehr)
    subscribed(engine, ctx, status="active")
    dispatcher = RecordingDispatcher()
    accept(ctx, dispatcher, event(sid, actor, event_numbers=(1,), subscription_id="sub-1"))
    # the worker took that refresh: its claim is gone, the next change queues anew
    ctx.coord.release(pending_key(f"schedule:{sid}", DAY0, DAY0 + timedelta(days=1)))

    with pytest.raises(kombu.exceptions.OperationalError):
        accept(ctx, BrokerDown(), event(sid, actor, event_numbers=(2,), subscription_id="sub-1"))
    with Session(engine) as s:
        (row,) = feeds.all_feeds(s)
    assert row.last_event_number == 1

    # the EHR gave up on event 2: event 3 queues its refresh and reveals the gap
    later = accept(ctx, dispatcher, event(sid, actor, event_numbers=(3,), subscription_id="sub-1"))
    assert later.enqueued == 1 and later.poll


def test_subscription_is_created_once_and_recreated_when_lost(engine, sandbox):
    ehr, ctx, _ = loaded(
        engine, sandbox, public_base_url="https://slotsync.example", webhook_secret="s3"
    )
    first = feed.ensure_subscription(ctx)
    (sub,) = ehr.subscriptions
    assert (first.created, first.ehr_id, first.endpoint) == (True, sub["id"], HOOK)
    assert sub["channel"]["endpoint"] == HOOK
    assert sub["channel"]["header"] == ["Authorization: Bearer s3"]
    assert not feed.ensure_subscription(ctx).created  # still there: renewed, not duplicated
    assert [s["id"] for s in ehr.subscriptions] == [first.ehr_id]
    ehr.forget_subscriptions()  # the EHR forgot it (restart)
    again = feed.ensure_subscription(ctx)
    (sub,) = ehr.subscriptions
    assert again.created and again.ehr_id == sub["id"] != first.ehr_id


def test_subscriptions_switched_off_mean_polling_only(engine, sandbox):
    ehr, ctx, _ = loaded(engine, sandbox)
    assert feed.ensure_subscription(ctx).status == "off"
    assert not ehr.subscriptions


def test_watchdog_marks_a_silent_feed_stale_and_polls(engine, sandbox):
    _, ctx, clock = loaded(
        engine, sandbox, public_base_url="https://slotsync.example", heartbeat_seconds=10
    )
    feed.ensure_subscription(ctx)
    dispatcher = RecordingDispatcher()
    accept(ctx, dispatcher, Notification(kind="heartbeat"))
    report = feed.watchdog(ctx, dispatcher)
    assert (report.live, report.went_stale, report.polled) == (1, 0, False)
    clock.now += timedelta(seconds=26)  # 2.5 periods of silence
    report = feed.watchdog(ctx, dispatcher)
    assert (report.live, report.went_stale, report.polled) == (0, 1, True)
    assert report.resubscribed and dispatcher.of("subscribe") == [("subscribe",)]
    feed.poll(ctx, dispatcher)  # the poll releases its claim when it runs
    clock.now += timedelta(seconds=61)
    report = feed.watchdog(ctx, dispatcher)
    assert report.polled  # still stale: keeps polling
    assert not report.resubscribed and len(dispatcher.of("subscribe")) == 1  # once per grace
    ctx.coord.release(feed.RECHECK_CLAIM)  # a grace period (in real time) later
    assert feed.watchdog(ctx, dispatcher).resubscribed
    accept(ctx, dispatcher, Notification(kind="heartbeat"))
    assert feed.watchdog(ctx, dispatcher).live == 1


def test_a_feed_whose_handshake_failed_is_replaced_when_it_goes_silent(engine, sandbox):
    # The EHR called before our API listened, gave up, and marked the Subscription
    # errored: the watchdog's re-check replaces it instead of polling for an hour.
    ehr, ctx, clock = loaded(
        engine,
        sandbox,
        public_base_url=f"http://127.0.0.1:{free_port()}",  # nobody listens yet
        heartbeat_seconds=10,
        ehr_config={"notify_max_attempts": 1},
    )
    first = feed.ensure_subscription(ctx)
    wait_until(
        lambda: [s["status"] for s in ehr.subscriptions] == ["error"], 10, "the failed handshake"
    )
    dispatcher = RecordingDispatcher()
    assert not feed.watchdog(ctx, dispatcher).resubscribed  # not silent for long yet
    clock.now += timedelta(seconds=26)  # never heard from at all
    report = feed.watchdog(ctx, dispatcher)
    assert report.resubscribed and report.went_stale == 0  # it was never live
    replaced = feed.ensure_subscription(ctx)  # what the dispatched task runs
    assert replaced.created and replaced.ehr_id != first.ehr_id
    assert replaced.ehr_id in [s["id"] for s in ehr.subscriptions]
    asked = [r for r in ehr.requests if r.method == "POST" and r.url.path == "/fhir/Subscription"]
    assert [json.loads(r.content)["status"] for r in asked] == ["requested", "requested"]


def test_a_handshake_before_the_ehrs_answer_to_our_subscription_counts(engine, sandbox):
    """The EHR may call the webhook before its answer to POST Subscription reaches us:
    the handshake names an id we do not know yet, and still makes the feed active."""
    dispatcher = RecordingDispatcher()
    handshakes: list[str] = []

    def webhook(headers: dict[str, str], _: bytes) -> None:  # our webhook, in short
        if headers.get("x-notification-type") == "handshake":
            handshakes.append(headers["x-subscription-id"])
            note = Notification(
                kind="handshake", subscription_id=handshakes[-1], events_since_start=0
            )
            accept(ctx, dispatcher, note)

    with receiving(on_post=webhook) as hook:
        ehr, ctx, _ = loaded(engine, sandbox, public_base_url=hook.url.removesuffix("/hook"))
        # the EHR sends the handshake at once, but its answer takes a while to reach us
        ehr.fail("/Subscription", kind="slow-answer", method="POST", latency_ms=500)
        state = feed.ensure_subscription(ctx)
    (sub,) = ehr.subscriptions
    assert state.created and state.ehr_id == sub["id"] and handshakes == [sub["id"]]
    with Session(engine) as s:
        (row,) = feeds.all_feeds(s)
    assert (row.ehr_id, row.status, row.feed_state) == (sub["id"], "active", "live")
    # a handshake for a Subscription that is neither ours nor being created is ignored
    accept(ctx, dispatcher, Notification(kind="handshake", subscription_id="sub-9"))
    with Session(engine) as s:
        (row,) = feeds.all_feeds(s)
    assert row.ehr_id == sub["id"]


def test_a_polling_only_feed_is_never_resubscribed(engine, sandbox):
    _, ctx, clock = loaded(engine, sandbox, heartbeat_seconds=10)
    dispatcher = RecordingDispatcher()
    first = feed.watchdog(ctx, dispatcher)
    clock.now += timedelta(seconds=3600)
    later = feed.watchdog(ctx, dispatcher)
    assert first.polled and not first.resubscribed and not later.resubscribed
    assert dispatcher.of("poll") and not dispatcher.of("subscribe")


def test_stu3_poll_rereads_the_near_days(engine, sandbox):
    # an EHR that does not say it can search Slots by _lastUpdated (no CapabilityStatement)
    ehr, ctx, _ = loaded(engine, sandbox, faults=[("/metadata", {"status": 404})])
    _, _, (booked, *_) = first_day(ehr, skip=1)
    sid, _, _ = first_day(ehr)
    added = next(
        s["id"]
        for s in ehr.slots(sid, status="busy")
        if datetime.fromisoformat(s["start"]) < DAY0 + DAY
    )
    ehr.book(booked)
    ehr.mutate({"op": "free", "slot": added})
    result = feed.poll(ctx, RecordingDispatcher())
    assert result.mode == "near-days" and result.changed_slots == 2
    assert view(cached(engine)) == ehr.truth()


def test_r4_poll_refreshes_what_changed_since_the_cursor(engine, sandbox):
    ehr, ctx, clock = loaded(engine, sandbox, ehr_fhir_version="r4")
    cursor = datetime.now(UTC)  # the EHR stamps its changes with its own (real) clock
    with Session(engine) as s, s.begin():
        row = feeds.get_or_create(
            s, endpoint="", fhir_version="r4", heartbeat_seconds=60, now=clock()
        )
        feeds.record_poll(s, row.id, now=clock(), cursor=cursor, error=None)
    time.sleep(0.01)
    sid = ehr.busiest(skip=1)
    changed, (_, start, _, _) = list(ehr.truth(sid).items())[-1]
    ehr.book(changed)
    last_updated = datetime.fromisoformat(
        ehr.http.get(f"/fhir/Slot/{changed}").json()["meta"]["lastUpdated"]
    )
    assert last_updated > cursor
    dispatcher = RecordingDispatcher()
    result = feed.poll(ctx, dispatcher)
    assert result.mode == "since" and result.changed_slots == 1
    day = start.replace(hour=0, minute=0)
    assert dispatcher.of("refresh") == [("refresh", sid, day, day + timedelta(days=1))]
    search = [r for r in ehr.requests if r.url.params.get("_lastUpdated")][-1]
    assert search.url.params["_lastUpdated"].startswith("gt")
    with Session(engine) as s:
        assert feeds.all_feeds(s)[0].poll_cursor == last_updated


def test_refresh_windows_rereads_only_the_named_schedules_days(engine, sandbox):
    ehr, ctx, _ = loaded(engine, sandbox)
    sid, _, (mine, *_) = first_day(ehr)
    _, _, (other, *_) = first_day(ehr, skip=1)
    _, start, end, _ = ehr.truth()[mine]
    ehr.book(mine, other)
    results = refresh_windows(ctx, [(sid, start, end)])
    assert [r.deleted for r in results] == [1]
    left = cached(engine)
    assert mine not in left and other in left  # the other schedule waits for its own news
