"""The periodic sync work, defined once: Celery beat (``workers.schedule``) and the
in-process scheduler of embedded mode (:class:`app.sync.local.LocalDispatcher`) both
read this list, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.ehr.flavour import booking_path
from app.settings import Settings

from .context import SyncContext
from .dispatch import Dispatcher

if TYPE_CHECKING:
    from app.booking.expiry import ExpiryReport


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    name: str  # the beat entry
    task: str  # the Celery task it sends
    every_seconds: float | None  # a period, or None for the daily time below
    daily_at: tuple[int, int] | None  # (hour, minute) UTC
    run: Callable[[SyncContext, Dispatcher], object]  # what the in-process scheduler calls
    embedded: bool  # whether embedded mode runs it in process


def _reap(ctx: SyncContext, dispatcher: Dispatcher) -> object:
    from .reaper import reap

    return reap(ctx, dispatcher)


def _watchdog(ctx: SyncContext, dispatcher: Dispatcher) -> object:
    from .feed import watchdog

    return watchdog(ctx, dispatcher)


def _subscribe(ctx: SyncContext, dispatcher: Dispatcher) -> object:
    dispatcher.subscribe()
    return None


def _daily_load(ctx: SyncContext, dispatcher: Dispatcher) -> object:
    from .runs import ResyncRequest

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


def periodic_jobs(settings: Settings) -> list[PeriodicJob]:
    hour, minute = (int(part) for part in settings.daily_load_at.split(":"))
    jobs = [
        PeriodicJob("daily-initial-load", "slotsync.initial_load", None, (hour, minute),
                    _daily_load, embedded=False),
        PeriodicJob("feed-watchdog", "slotsync.watchdog", settings.watchdog_seconds, None,
                    _watchdog, embedded=False),
        PeriodicJob("renew-subscription", "slotsync.subscribe",
                    settings.subscription_renew_seconds, None, _subscribe, embedded=False),
        PeriodicJob("sync-reaper", "slotsync.reaper", settings.reaper_seconds, None,
                    _reap, embedded=True),
    ]  # fmt: skip
    if booking_path(settings.ehr_fhir_version, settings.ehr_booking) == "appointment":
        # no $hold at the EHR: a lapsed hold (a pending Appointment) is ours to cancel
        jobs.append(PeriodicJob("expire-holds", "slotsync.expire_holds",
                                settings.hold_expiry_seconds, None, _expire_holds,
                                embedded=True))  # fmt: skip
    return jobs
