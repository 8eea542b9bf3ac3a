"""Embedded mode's dispatcher: the same services, on a small thread pool in this process.

No broker, so nothing survives a restart; that is the embedded trade-off. The
webhook still answers at once (work is submitted, not done inline), and
coalescing and locks come from :class:`app.sync.coordination.LocalCoordinator`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from . import feed, refresh
from .context import SyncContext
from .runs import ResyncRequest, execute_chunks, plan_run

log = logging.getLogger(__name__)


class LocalDispatcher:
    """Runs tasks on its own threads; owns ``ctx.client``, whose retries honour ``stop``.

    :meth:`shutdown` must end the work promptly: the threads are joined at interpreter
    exit, so queued or retrying work left behind would hold the process for minutes.
    """

    def __init__(self, ctx: SyncContext, *, stop: threading.Event, workers: int = 2) -> None:
        self.ctx = ctx
        self._stop = stop
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slotsync-sync")

    def shutdown(self) -> None:
        """Drop queued work, stop the running work at its next wait, and wait for that."""
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.ctx.client.close()

    def _submit(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        if self._stop.is_set():
            log.info("background %s not started: shutting down", what)
            return

        def run() -> None:
            try:
                fn(*args)
            except Exception:
                if self._stop.is_set():
                    log.info("background %s abandoned at shutdown", what)
                else:
                    log.exception("background %s failed", what)

        self._pool.submit(run)

    def _chunks(self, run_id: int, seqs: Sequence[int]) -> None:
        execute_chunks(self.ctx, run_id, seqs, stop=self._stop)

    def run_chunks(self, run_id: int, seqs: Sequence[int]) -> None:
        self._submit("load", self._chunks, run_id, list(seqs))

    def refresh(self, schedule_id: str, start: datetime, end: datetime) -> None:
        self._submit("refresh", refresh.refresh_schedule, self.ctx, schedule_id, start, end)

    def refresh_actor(self, actor_ref: str, start: datetime, end: datetime) -> None:
        self._submit("refresh", refresh.refresh_actor, self.ctx, actor_ref, start, end)

    def resync(self, request: ResyncRequest) -> str:
        token = uuid.uuid4().hex

        def run() -> None:
            planned = plan_run(self.ctx, request, token=token)
            self._chunks(planned.run_id, planned.seqs)

        self._submit("resync", run)
        return token

    def poll(self, reason: str) -> None:
        log.info("polling the EHR: %s", reason)
        self._submit("poll", feed.poll, self.ctx, self)

    def subscribe(self) -> None:
        self._submit("subscribe", feed.ensure_subscription, self.ctx)
