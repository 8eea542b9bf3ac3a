"""Embedded mode's dispatcher: the same services, on a small thread pool in this process.

No broker, so nothing survives a restart; that is the embedded trade-off. The
webhook still answers at once (work is submitted, not done inline), and
coalescing and locks come from :class:`app.sync.coordination.LocalCoordinator`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

from . import feed, refresh
from .context import SyncContext
from .runs import ResyncRequest, execute_chunk, is_transient, plan_run

log = logging.getLogger(__name__)

ATTEMPTS = 3


class LocalDispatcher:
    def __init__(self, ctx: SyncContext, *, workers: int = 2) -> None:
        self.ctx = ctx
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slotsync-sync")

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def _submit(self, what: str, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        def run() -> Any:
            try:
                return fn(*args)
            except Exception:
                log.exception("background %s failed", what)
                raise

        return self._pool.submit(run)

    def _chunks(self, run_id: int, seqs: Sequence[int]) -> None:
        for seq in seqs:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    execute_chunk(self.ctx, run_id, seq, final_attempt=attempt == ATTEMPTS)
                    break
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    time.sleep(attempt)

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
