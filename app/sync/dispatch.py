"""How services hand work to the workers, without knowing Celery.

The webhook, the watchdog and the planners enqueue through a :class:`Dispatcher`:
:class:`app.sync.broker.BrokerDispatcher` in production, and
:class:`app.sync.local.LocalDispatcher` (a small thread pool) in embedded mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from .messages import ResyncRequest


class Dispatcher(Protocol):
    def run_chunks(self, run_id: int, seqs: Sequence[int]) -> None:
        """Execute these pending chunks of a planned run."""

    def refresh(self, schedule_id: str, start: datetime, end: datetime) -> None:
        """Snapshot-replace one schedule's window now (a notification arrived)."""

    def refresh_actor(self, actor_ref: str, start: datetime, end: datetime) -> None:
        """Refresh every schedule of an actor, discovering them if the cache has none."""

    def resync(self, request: ResyncRequest) -> str:
        """Plan and run a resync; returns the token its run is recorded under."""

    def poll(self, reason: str) -> None:
        """Look for changes the notifications did not bring (feed stale or gappy)."""

    def subscribe(self) -> None:
        """Create or renew our EHR Subscription."""

    def shutdown(self) -> None:
        """The owner is done with it: stop promptly, without waiting out queued or retrying work."""
