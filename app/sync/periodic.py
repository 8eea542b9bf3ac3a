"""The periodic sync work, defined once: Celery beat (``workers.schedule``) and the
in-process scheduler of embedded mode (:class:`app.sync.local.LocalDispatcher`) both
read this list, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.settings import Settings

from .context import SyncContext
from .dispatch import Dispatcher


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


def periodic_jobs(settings: Settings) -> list[PeriodicJob]:
    hour, minute = (int(part) for part in settings.daily_load_at.split(":"))
    return [
        PeriodicJob("daily-initial-load", "slotsync.initial_load", None, (hour, minute),
                    _daily_load, embedded=False),
        PeriodicJob("feed-watchdog", "slotsync.watchdog", settings.watchdog_seconds, None,
                    _watchdog, embedded=False),
        PeriodicJob("renew-subscription", "slotsync.subscribe",
                    settings.subscription_renew_seconds, None, _subscribe, embedded=False),
        PeriodicJob("sync-reaper", "slotsync.reaper", settings.reaper_seconds, None,
                    _reap, embedded=True),
    ]  # fmt: skip
