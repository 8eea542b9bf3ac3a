"""Embedded mode's dispatcher: the same services, on a small thread pool in this process.

No broker, so nothing queued survives a restart; the run tables do, and the reaper
(run here by the in-process scheduler, as beat runs it for the workers) sends what
a previous process left undone. The webhook still answers at once (work is
submitted, not done inline), and coalescing and locks come from
:class:`app.sync.coordination.LocalCoordinator`. Failures are retried under the
same budget as the Celery tasks (:class:`app.sync.retry.Backoff`), on timers, so a
retrying task never holds a thread while it waits.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from . import feed, follow_up, refresh
from .context import SyncContext
from .messages import ResyncRequest
from .periodic import PeriodicJob, periodic_jobs
from .retry import Backoff, describe_error, is_transient
from .runs import execute_chunks, plan_run, planning_failed

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
        self._backoff = Backoff.from_settings(ctx.settings)
        self._timers: set[threading.Timer] = set()
        self._guard = threading.Lock()
        self._periodic: threading.Thread | None = None

    def shutdown(self) -> None:
        """Drop queued work, stop the running work at its next wait, and wait for that."""
        self._stop.set()
        with self._guard:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._periodic is not None:
            self._periodic.join(timeout=5)
        self.ctx.client.close()

    # -- running work, with retries ----------------------------------------------------

    def _submit(
        self,
        what: str,
        fn: Callable[..., Any],
        *args: Any,
        on_final: Callable[[str], object] | None = None,
        retries_done: int = 0,
    ) -> None:
        if self._stop.is_set():
            log.info("background %s not started: shutting down", what)
            return

        def run() -> None:
            try:
                fn(*args)
            except Exception as exc:
                if self._stop.is_set():
                    log.info("background %s abandoned at shutdown", what)
                elif is_transient(exc) and retries_done < self._backoff.retries:
                    delay = self._backoff.delay(retries_done)
                    log.warning("background %s failed, again in %.0fs: %s", what, delay, exc)
                    self._later(delay, what, fn, args, on_final, retries_done + 1)
                else:
                    log.exception("background %s failed", what)
                    if on_final is not None:
                        try:
                            on_final(describe_error(exc))
                        except Exception:
                            log.exception("could not record the failure of %s", what)

        self._pool.submit(run)

    def _later(
        self,
        delay: float,
        what: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        on_final: Callable[[str], object] | None,
        retries_done: int,
    ) -> None:
        def fire() -> None:
            with self._guard:
                self._timers.discard(timer)
            self._submit(what, fn, *args, on_final=on_final, retries_done=retries_done)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._guard:
            if self._stop.is_set():
                return
            self._timers.add(timer)
        timer.start()

    def _chunks(self, run_id: int, seqs: Sequence[int]) -> None:
        execute_chunks(self.ctx, run_id, seqs, stop=self._stop)

    def run_chunks(self, run_id: int, seqs: Sequence[int]) -> None:
        self._submit("load", self._chunks, run_id, list(seqs))

    def refresh(self, schedule_id: str, start: datetime, end: datetime) -> None:
        self._submit(
            "refresh",
            refresh.refresh_schedule,
            self.ctx,
            schedule_id,
            start,
            end,
            on_final=lambda error: follow_up.refresh_failed(
                self.ctx, schedule_id, start, end, error
            ),
        )

    def refresh_actor(self, actor_ref: str, start: datetime, end: datetime) -> None:
        self._submit("refresh", refresh.refresh_actor, self.ctx, actor_ref, start, end)

    def resync(self, request: ResyncRequest) -> str:
        token = uuid.uuid4().hex

        def run() -> None:
            from .reaper import send_chunks

            planned = plan_run(self.ctx, request, token=token)
            send_chunks(self.ctx, self, planned.run_id, planned.seqs)

        self._submit("resync", run, on_final=lambda error: planning_failed(self.ctx, token, error))
        return token

    def poll(self, reason: str) -> None:
        log.info("polling the EHR: %s", reason)
        self._submit("poll", feed.poll, self.ctx, self)

    def subscribe(self) -> None:
        self._submit("subscribe", feed.ensure_subscription, self.ctx)

    # -- the in-process scheduler --------------------------------------------------------

    def start_periodic(self) -> None:
        """Run the periodic jobs (:func:`app.sync.periodic.periodic_jobs`, the same list as
        Celery beat) on a thread of this process."""
        if self._periodic is not None:
            return
        jobs = periodic_jobs(self.ctx.settings)

        def loop() -> None:
            started = time.monotonic()
            due = {job.name: _first_due(job, started, self.ctx.clock()) for job in jobs}
            while not self._stop.is_set():
                for job in jobs:
                    if self._stop.is_set() or time.monotonic() < due[job.name]:
                        continue
                    due[job.name] = _next_due(job, time.monotonic(), self.ctx.clock())
                    try:
                        job.run(self.ctx, self)
                    except Exception as exc:
                        log.warning("periodic %s failed: %s", job.name, describe_error(exc))
                self._stop.wait(max(0.2, min(due.values()) - time.monotonic()))

        self._periodic = threading.Thread(target=loop, name="slotsync-periodic", daemon=True)
        self._periodic.start()


def _first_due(job: PeriodicJob, started: float, now: datetime) -> float:
    if job.daily_at is not None:
        return _next_due(job, started, now)
    return started + job.first_after


def _next_due(job: PeriodicJob, mono: float, now: datetime) -> float:
    """The monotonic time of the job's next run after one at ``mono`` (wall time ``now``)."""
    if job.daily_at is None:
        assert job.every_seconds is not None
        return mono + job.every_seconds
    hour, minute = job.daily_at
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at <= now:
        at += timedelta(days=1)
    return mono + (at - now).total_seconds()
