"""Notifications in, refreshes out; subscription upkeep; the heartbeat watchdog; polling."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

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
from tests.factories import slot
from tests.fake_ehr import FakeEhr
from tests.sync_support import DAY0, Clock, RecordingDispatcher, cached, context

HOOK = "https://slotsync.example/webhook/subscription"


def subscribed(engine, ctx, *, status):
    """The STU3 feed of our webhook, with the EHR's subscription sub-1 in ``status``."""
    with Session(engine) as s, s.begin():
        row = feeds.get_or_create(
            s, endpoint=HOOK, fhir_version="stu3", heartbeat_seconds=60, now=ctx.clock()
        )
        feeds.record_subscription(s, row.id, ehr_id="sub-1", status=status, now=ctx.clock())


def loaded(engine, **overrides):
    ehr = FakeEhr(page_size=50)
    for i in range(2):
        ehr.add_schedule(f"sch-{i}", f"Practitioner/pr-{i}", "Location/clinic-1")
        ehr.put(*(slot(j * 40, schedule=f"sch-{i}") for j in range(8)))
    clock = Clock(DAY0 + timedelta(hours=1))
    overrides.setdefault("ehr_subscriptions", "public_base_url" in overrides)
    ctx = context(engine, ehr, clock=clock, **overrides)
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    return ehr, ctx, clock


def event(sid="sch-0", actor="Practitioner/pr-0", start=None, end=None, **kw):
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


def test_a_storm_of_identical_notifications_queues_one_refresh(engine):
    ehr, ctx, _ = loaded(engine)
    dispatcher = RecordingDispatcher()
    results = [accept(ctx, dispatcher, event()) for _ in range(20)]
    assert [r.enqueued for r in results] == [1] + [0] * 19
    assert dispatcher.of("refresh") == [("refresh", "sch-0", DAY0, DAY0 + timedelta(days=1))]

    # once the refresh holds the lock and starts fetching, a new change queues again
    ehr.book("sch-0-s0")
    refresh_schedule(ctx, "sch-0", DAY0, DAY0 + timedelta(days=1))
    assert "sch-0-s0" not in cached(engine)
    assert accept(ctx, dispatcher, event()).enqueued == 1


def heard(ctx, sid, window, at):
    """A change of ``sid`` heard at ``at``: its refresh queued (to a recorder)."""
    return request_refresh(ctx.coord, RecordingDispatcher(), sid, window, ttl=600, heard_at=at)


def load_chunk(ctx, window):
    """A fetch of the whole window that is not a refresh (a load's chunk)."""
    return sync_chunk(ctx.engine, ctx.client, Chunk(None, *window), clock=ctx.clock)


def test_a_refresh_whose_change_a_later_fetch_read_is_skipped(engine):
    """The backlog after a burst drains without EHR reads: a refresh heard before a
    fetch of the same days began has nothing left to learn."""
    ehr, ctx, clock = loaded(engine)
    window = (DAY0, DAY0 + timedelta(days=2))
    assert heard(ctx, "sch-0", window, clock())
    ehr.book("sch-0-s0")
    clock.now += timedelta(seconds=2)
    load_chunk(ctx, window)  # a later fetch of the days
    reads = len(ehr.requests)
    assert refresh_schedule(ctx, "sch-0", *window).covered
    assert len(ehr.requests) == reads

    # a change heard after the last fetch began is read
    clock.now += timedelta(seconds=5)
    assert heard(ctx, "sch-0", window, clock())
    ehr.book("sch-0-s40")
    clock.now += timedelta(seconds=2)
    assert not refresh_schedule(ctx, "sch-0", *window).covered
    assert len(ehr.requests) > reads
    assert {"sch-0-s0", "sch-0-s40"}.isdisjoint(cached(engine))


def test_a_coalesced_later_change_is_not_skipped(engine):
    """Notifications coalesced into a queued refresh raise its stamp: a fetch newer
    than the first of them but older than the last does not cover the refresh."""
    ehr, ctx, clock = loaded(engine)
    window = (DAY0, DAY0 + timedelta(days=2))
    assert heard(ctx, "sch-0", window, clock())
    clock.now += timedelta(seconds=2)
    load_chunk(ctx, window)  # newer than the first change only
    clock.now += timedelta(seconds=2)
    ehr.book("sch-0-s0")
    assert not heard(ctx, "sch-0", window, clock())  # coalesced
    clock.now += timedelta(seconds=2)
    assert not refresh_schedule(ctx, "sch-0", *window).covered
    assert "sch-0-s0" not in cached(engine)


def test_a_change_heard_within_the_clock_margin_of_a_fetch_is_read_again(engine):
    ehr, ctx, clock = loaded(engine)
    window = (DAY0, DAY0 + timedelta(days=2))
    load_chunk(ctx, window)
    # heard a little before the fetch began, by the API's clock behind the worker's
    assert heard(ctx, "sch-0", window, clock.now - timedelta(milliseconds=500))
    reads = len(ehr.requests)
    assert not refresh_schedule(ctx, "sch-0", *window).covered
    assert len(ehr.requests) > reads


def test_a_refresh_without_a_claim_always_reads(engine):
    """A retried refresh (its claim taken by the failed attempt) reads the EHR."""
    ehr, ctx, clock = loaded(engine)
    window = (DAY0, DAY0 + timedelta(days=2))
    assert heard(ctx, "sch-0", window, clock())
    clock.now += timedelta(seconds=2)
    refresh_schedule(ctx, "sch-0", *window)  # takes the claim
    reads = len(ehr.requests)
    assert not refresh_schedule(ctx, "sch-0", *window).covered
    assert len(ehr.requests) > reads


def test_an_unnameable_schedule_is_refreshed_day_by_day_for_all(engine):
    """STU3 $prefetch cannot name a device's schedule: the unfiltered reads it needs
    refresh every schedule of those days, and their queued refreshes are skipped."""
    ehr = FakeEhr(page_size=50)
    ehr.add_schedule("sch-0", "Practitioner/pr-0", "Location/clinic-1")
    ehr.add_schedule("sch-dev", "Device/dev-1")
    for sid in ("sch-0", "sch-dev"):
        ehr.put(*(slot(j * 40, schedule=sid) for j in range(4)))
    clock = Clock(DAY0 + timedelta(hours=1))
    ctx = context(engine, ehr, clock=clock)
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    window = (DAY0, DAY0 + timedelta(days=2))
    assert heard(ctx, "sch-dev", window, clock())
    assert heard(ctx, "sch-0", window, clock())
    ehr.book("sch-0-s40")
    ehr.book("sch-dev-s40")
    clock.now += timedelta(seconds=2)
    reads = len(ehr.requests)
    result = refresh_schedule(ctx, "sch-dev", *window)
    assert not result.covered
    prefetches = [r for r in ehr.requests[reads:] if r.url.path.endswith("$prefetch")]
    assert len(prefetches) == 2  # one unfiltered read per day
    assert all("practitioner" not in str(r.url) for r in prefetches)
    assert {"sch-0-s40", "sch-dev-s40"}.isdisjoint(cached(engine))  # both schedules read
    reads = len(ehr.requests)
    assert refresh_schedule(ctx, "sch-0", *window).covered
    assert len(ehr.requests) == reads


def test_notifications_resolve_actors_and_ignore_other_periods(engine):
    _, ctx, _ = loaded(engine)
    dispatcher = RecordingDispatcher()
    by_actor = event(sid="example1", actor="Practitioner/pr-1")  # IG-style id, known actor
    assert accept(ctx, dispatcher, by_actor).enqueued == 1
    assert dispatcher.of("refresh")[0][1] == "sch-1"
    unknown = event(sid="example2", actor="Practitioner/pr-new")
    accept(ctx, dispatcher, unknown)
    assert dispatcher.of("refresh_actor")[0][1] == "Practitioner/pr-new"
    far = event(start=DAY0 + timedelta(days=300))
    assert accept(ctx, dispatcher, far).outside_horizon == 1
    assert len(dispatcher.calls) == 2


def test_feed_liveness_and_event_gaps(engine):
    _, ctx, _ = loaded(engine, public_base_url="https://slotsync.example")
    subscribed(engine, ctx, status="requested")
    dispatcher = RecordingDispatcher()
    accept(
        ctx,
        dispatcher,
        Notification(kind="handshake", subscription_id="sub-1", events_since_start=0),
    )
    accept(ctx, dispatcher, event(event_numbers=(1,), subscription_id="sub-1"))
    assert not dispatcher.of("poll")
    accept(ctx, dispatcher, event(event_numbers=(3,), subscription_id="sub-1"))  # 2 was lost
    assert len(dispatcher.of("poll")) == 1
    # late: read as a restart of the numbering, which the pending catch-up covers
    accept(ctx, dispatcher, event(event_numbers=(2,), subscription_id="sub-1"))
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


def numbered(number, **kw):
    return event(event_numbers=(number,), subscription_id="sub-1", **kw)


def last_event_number(engine):
    with Session(engine) as s:
        (row,) = feeds.all_feeds(s)
    return row.last_event_number


def test_a_gap_right_after_a_catch_up_is_still_a_gap(engine):
    _, ctx, _ = loaded(engine, public_base_url="https://slotsync.example")
    subscribed(engine, ctx, status="active")
    dispatcher = RecordingDispatcher()
    for number in (1, 3):  # 2 was lost
        accept(ctx, dispatcher, numbered(number))
    feed.poll(ctx, dispatcher)  # caught up
    assert accept(ctx, dispatcher, numbered(5)).poll  # 4 was lost
    feed.poll(ctx, dispatcher)
    assert not accept(ctx, dispatcher, numbered(6)).poll
    assert accept(ctx, dispatcher, numbered(8)).poll  # 7 was lost


def test_a_gap_in_the_first_events_of_a_new_subscription_is_a_gap(engine):
    ehr, ctx, _ = loaded(engine, public_base_url="https://slotsync.example")
    dispatcher = RecordingDispatcher()
    assert feed.ensure_subscription(ctx).created
    accept(ctx, dispatcher, Notification(kind="handshake"))  # Argonaut: no number
    assert not accept(ctx, dispatcher, numbered(1)).poll
    assert accept(ctx, dispatcher, numbered(3)).poll  # 2 was lost
    feed.poll(ctx, dispatcher)

    ehr.subscriptions.clear()  # the EHR forgot it: a new one counts from 1 again
    assert feed.ensure_subscription(ctx).created
    assert accept(ctx, dispatcher, numbered(2)).poll  # 1 was lost
    assert last_event_number(engine) == 2


def test_numbering_restarted_by_the_ehr_keeps_finding_gaps(engine):
    _, ctx, _ = loaded(engine, public_base_url="https://slotsync.example")
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


def test_an_event_count_ahead_of_the_event_does_not_hide_a_later_gap(engine):
    """An event notification may count events still on their way; they are not heard yet."""
    _, ctx, _ = loaded(engine, public_base_url="https://slotsync.example")
    subscribed(engine, ctx, status="active")
    dispatcher = RecordingDispatcher()
    accept(ctx, dispatcher, numbered(1, events_since_start=1))
    assert not accept(ctx, dispatcher, numbered(2, events_since_start=3)).poll
    assert accept(ctx, dispatcher, numbered(4, events_since_start=4)).poll  # 3 was lost
    assert last_event_number(engine) == 4


class BrokerDown(RecordingDispatcher):
    def refresh(self, schedule_id, start, end):
        raise kombu.exceptions.OperationalError("Error 111 connecting to the broker")


def test_a_notification_the_broker_refused_is_forgotten_whole(engine):
    """The webhook answers 5xx and keeps nothing: neither the event number (a lost
    notification must still show as a gap) nor the coalescing claim (a redelivery must
    queue the refresh, not be coalesced into one that was never queued)."""
    _, ctx, _ = loaded(engine, public_base_url="https://slotsync.example")
    subscribed(engine, ctx, status="active")
    dispatcher = RecordingDispatcher()
    accept(ctx, dispatcher, event(event_numbers=(1,), subscription_id="sub-1"))
    # the worker took that refresh: its claim is gone, the next change queues anew
    ctx.coord.release(pending_key("schedule:sch-0", DAY0, DAY0 + timedelta(days=1)))

    with pytest.raises(kombu.exceptions.OperationalError):
        accept(ctx, BrokerDown(), event(event_numbers=(2,), subscription_id="sub-1"))
    with Session(engine) as s:
        (row,) = feeds.all_feeds(s)
    assert row.last_event_number == 1

    # the EHR gave up on event 2: event 3 queues its refresh and reveals the gap
    later = accept(ctx, dispatcher, event(event_numbers=(3,), subscription_id="sub-1"))
    assert later.enqueued == 1 and later.poll


def test_subscription_is_created_once_and_recreated_when_lost(engine):
    ehr, ctx, _ = loaded(engine, public_base_url="https://slotsync.example", webhook_secret="s3")
    first = feed.ensure_subscription(ctx)
    assert (first.created, first.ehr_id, first.endpoint) == (True, "sub-1", HOOK)
    (sub,) = ehr.subscriptions
    assert sub["channel"]["endpoint"] == HOOK
    assert sub["channel"]["header"] == ["Authorization: Bearer s3"]
    assert not feed.ensure_subscription(ctx).created  # still there: renewed, not duplicated
    ehr.subscriptions.clear()  # the EHR forgot it (restart)
    again = feed.ensure_subscription(ctx)
    assert again.created and again.ehr_id == "sub-1"


def test_subscriptions_switched_off_mean_polling_only(engine):
    ehr, ctx, _ = loaded(engine)
    assert feed.ensure_subscription(ctx).status == "off"
    assert not ehr.subscriptions


def test_watchdog_marks_a_silent_feed_stale_and_polls(engine):
    _, ctx, clock = loaded(engine, public_base_url="https://slotsync.example", heartbeat_seconds=10)
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


def test_a_feed_whose_handshake_failed_is_replaced_when_it_goes_silent(engine):
    # The EHR called before our API listened, gave up, and marked the Subscription
    # errored: the watchdog's re-check replaces it instead of polling for an hour.
    ehr, ctx, clock = loaded(
        engine, public_base_url="https://slotsync.example", heartbeat_seconds=10
    )
    feed.ensure_subscription(ctx)
    (sub,) = ehr.subscriptions
    sub["status"] = "error"
    dispatcher = RecordingDispatcher()
    assert not feed.watchdog(ctx, dispatcher).resubscribed  # not silent for long yet
    clock.now += timedelta(seconds=26)  # never heard from at all
    report = feed.watchdog(ctx, dispatcher)
    assert report.resubscribed and report.went_stale == 0  # it was never live
    replaced = feed.ensure_subscription(ctx)  # what the dispatched task runs
    assert replaced.created and replaced.ehr_id == "sub-2"
    assert ehr.subscriptions[-1]["status"] == "requested"


def test_a_handshake_before_the_ehrs_answer_to_our_subscription_counts(engine):
    """The EHR may call the webhook before its answer to POST Subscription reaches us:
    the handshake names an id we do not know yet, and still makes the feed active."""
    ehr, ctx, _ = loaded(engine, public_base_url="https://slotsync.example")
    dispatcher = RecordingDispatcher()
    ehr.on_subscribe = lambda sub: accept(
        ctx,
        dispatcher,
        Notification(kind="handshake", subscription_id=sub["id"], events_since_start=0),
    )
    state = feed.ensure_subscription(ctx)
    assert state.created and state.ehr_id == "sub-1"
    with Session(engine) as s:
        (row,) = feeds.all_feeds(s)
    assert (row.ehr_id, row.status, row.feed_state) == ("sub-1", "active", "live")
    # a handshake for a Subscription that is neither ours nor being created is ignored
    accept(ctx, dispatcher, Notification(kind="handshake", subscription_id="sub-9"))
    with Session(engine) as s:
        (row,) = feeds.all_feeds(s)
    assert row.ehr_id == "sub-1"


def test_a_polling_only_feed_is_never_resubscribed(engine):
    _, ctx, clock = loaded(engine, heartbeat_seconds=10)
    dispatcher = RecordingDispatcher()
    first = feed.watchdog(ctx, dispatcher)
    clock.now += timedelta(seconds=3600)
    later = feed.watchdog(ctx, dispatcher)
    assert first.polled and not first.resubscribed and not later.resubscribed
    assert dispatcher.of("poll") and not dispatcher.of("subscribe")


def test_stu3_poll_rereads_the_near_days(engine):
    ehr, ctx, _ = loaded(engine)
    ehr.book("sch-1-s0")
    ehr.put(slot(3, schedule="sch-0"))
    result = feed.poll(ctx, RecordingDispatcher())
    assert result.mode == "near-days" and result.changed_slots == 2
    assert cached(engine) == {k: v for k, v in ehr.slots.items() if v.status == "free"}


def test_r4_poll_refreshes_what_changed_since_the_cursor(engine):
    ehr, ctx, clock = loaded(engine, ehr_fhir_version="r4")
    with Session(engine) as s, s.begin():
        row = feeds.get_or_create(
            s, endpoint="", fhir_version="r4", heartbeat_seconds=60, now=clock()
        )
        feeds.record_poll(s, row.id, now=clock(), cursor=clock(), error=None)
    changed = replace(
        ehr.slots["sch-1-s80"], status="busy", last_updated=clock.now + timedelta(seconds=30)
    )
    ehr.put(changed)
    dispatcher = RecordingDispatcher()
    result = feed.poll(ctx, dispatcher)
    assert result.mode == "since" and result.changed_slots == 1
    day = changed.start.replace(hour=0, minute=0)
    assert dispatcher.of("refresh") == [("refresh", "sch-1", day, day + timedelta(days=1))]
    search = [r for r in ehr.requests if r.url.params.get("_lastUpdated")][-1]
    assert search.url.params["_lastUpdated"].startswith("gt")
    with Session(engine) as s:
        assert feeds.all_feeds(s)[0].poll_cursor == changed.last_updated


def test_refresh_windows_rereads_only_the_named_schedules_days(engine):
    ehr, ctx, _ = loaded(engine)
    ehr.book("sch-0-s0")
    ehr.book("sch-1-s0")
    slot0 = ehr.slots["sch-0-s0"]
    results = refresh_windows(ctx, [("sch-0", slot0.start, slot0.end)])
    assert [r.deleted for r in results] == [1]
    left = cached(engine)
    assert "sch-0-s0" not in left and "sch-1-s0" in left  # sch-1 waits for its own news
