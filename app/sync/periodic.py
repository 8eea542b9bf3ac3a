"""The periodic sync work, defined once: Celery beat (``workers.schedule``) and the
in-process scheduler of embedded mode (:class:`app.sync.local.LocalDispatcher`) both
read this list, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.settings import Settings

from . import messages
from .context import SyncContext
from .dispatch import Dispatcher
from .samples import SAMPLE_SECONDS

CAPABILITIES_SECONDS = 6 * 3600

if TYPE_CHECKING:
    from app.booking.expiry import ExpiryReport


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    name: str  # the beat entry
    task: str  # the Celery task it sends
    every_seconds: float | None  # a period, or None for the daily time below
    daily_at: tuple[int, int] | None  # (hour, minute) UTC
    run: Callable[[SyncContext, Dispatcher], object]  # what the in-process scheduler calls
    about: str  # for the README's table and status
    first_after: float = 0.0  # seconds after start-up of the first in-process run


def _reap(ctx: SyncContext, dispatcher: Dispatcher) -> object:
    from .reaper import reap

    return reap(ctx, dispatcher)


def _watchdog(ctx: SyncContext, dispatcher: Dispatcher) -> object:
    from .feed import watchdog

    return watchdog(ctx, dispatcher)


def _subscribe(ctx: SyncContext, dispatcher: Dispatcher) -> object:
    from .feed import ensure_subscription

    return ensure_subscription(ctx)


def _capabilities(ctx: SyncContext, dispatcher: Dispatcher) -> object:
    from .capabilities import discover

    return discover(ctx)


def _reconcile(ctx: SyncContext, dispatcher: Dispatcher) -> object:
    from datetime import timedelta

    from .messages import ResyncRequest

    start, _ = ctx.horizon()
    end = start + timedelta(days=ctx.settings.reconcile_days)
    return dispatcher.resync(ResyncRequest(kind="reconcile", start=start, end=end))


def _daily_load(ctx: SyncContext, dispatcher: Dispatcher) -> object:
    from .messages import ResyncRequest

    return dispatcher.resync(ResyncRequest(kind="initial-load"))


def expire_holds_now(ctx: SyncContext) -> ExpiryReport:
    """Cancel the holds that lapsed unbooked (the Celery task and embedded mode)."""
    from functools import partial

    from app.booking.expiry import expire_holds
    from app.ehr.gateway import EhrGateway

    from .refresh import refresh_windows

    gateway = EhrGateway(ctx.client, booking="appointment")
    return expire_holds(ctx.engine, gateway, partial(refresh_windows, ctx), ctx.clock())


def _expire_holds(ctx: SyncContext, dispatcher: Dispatcher) -> object:
    return expire_holds_now(ctx)


def _sample(ctx: SyncContext, dispatcher: Dispatcher) -> object:
    from .samples import record_sample

    return record_sample(ctx)


def periodic_jobs(settings: Settings) -> list[PeriodicJob]:
    """Every periodic job; both run modes run all of them (embedded mode in process)."""
    hour, minute = (int(part) for part in settings.daily_load_at.split(":"))
    jobs = [
        PeriodicJob(
            "daily-initial-load",
            messages.INITIAL_LOAD,
            None,
            (hour, minute),
            _daily_load,
            "full load of the horizon, daily at SLOTSYNC_DAILY_LOAD_AT (UTC)",
        ),
        PeriodicJob(
            "read-capabilities",
            messages.CAPABILITIES,
            CAPABILITIES_SECONDS,
            None,
            _capabilities,
            "read the EHR's CapabilityStatement (also at start-up and before every resync)",
        ),
        PeriodicJob(
            "renew-subscription",
            messages.SUBSCRIBE,
            settings.subscription_renew_seconds,
            None,
            _subscribe,
            "create or renew our Subscription at the EHR (also once at start-up)",
            # after start-up, so that the EHR's handshake finds the webhook listening
            first_after=2.0,
        ),
        PeriodicJob(
            "feed-watchdog",
            messages.WATCHDOG,
            settings.watchdog_seconds,
            None,
            _watchdog,
            "mark silent feeds stale, poll while no feed is live, re-check a silent Subscription",
            first_after=3.0,
        ),
        PeriodicJob(
            "near-reconcile",
            messages.RECONCILE,
            settings.reconcile_seconds,
            None,
            _reconcile,
            "re-read the next SLOTSYNC_RECONCILE_DAYS whole: what the EHR deleted (and no"
            " change feed showed) leaves the cache; the whole horizon is the daily load",
            first_after=float(settings.reconcile_seconds),
        ),
        PeriodicJob(
            "sync-reaper",
            messages.REAPER,
            settings.reaper_seconds,
            None,
            _reap,
            "resend chunks of dead workers and lost messages, start due follow-ups,"
            " fail and replan stalled runs",
        ),
    ]
    jobs.append(
        PeriodicJob(
            "expire-holds",
            messages.EXPIRE_HOLDS,
            settings.hold_expiry_seconds,
            None,
            _expire_holds,
            "cancel at the EHR the holds (pending Appointments) that lapsed unbooked; there"
            " are such holds only where the EHR has no $hold of its own",
        )
    )
    jobs.append(
        PeriodicJob(
            "sample-sync-health",
            messages.SAMPLE,
            SAMPLE_SECONDS,
            None,
            _sample,
            "record the cache's size and freshness (the ops console's 24 h charts)",
            first_after=5.0,
        )
    )
    return jobs
