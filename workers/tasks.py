"""Tasks: thin, idempotent wrappers around the app.sync services.

Arguments are ids and ISO timestamps, never objects. Every task retries transient
failures (the EHR, PostgreSQL, Redis) under the one budget of
:class:`app.sync.retry.Backoff`, passed to Celery explicitly so that Celery's own
default (3) never applies. What still fails is recorded, exactly once: a chunk's
outcome by :func:`app.sync.runs.execute_chunk` in its row, a refresh on its schedule
with a follow-up, a planner on its run. The reaper (beat) re-derives from PostgreSQL
whatever a lost message or a dead worker left undone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import MaxRetriesExceededError

from app.runtime import sync_context
from app.settings import get_settings
from app.sync import capabilities, feed, follow_up, messages, periodic, reaper, refresh, samples
from app.sync.broker import BrokerDispatcher
from app.sync.messages import ResyncRequest, request_from_json
from app.sync.retry import Backoff, describe_error, is_transient
from app.sync.runs import execute_chunk, plan_run, planning_failed
from app.sync.windows import horizon

from .celery_app import celery_app

log = logging.getLogger(__name__)


def _backoff() -> Backoff:
    return Backoff.from_settings(get_settings())


def _retry_or_raise(
    task: Task, exc: Exception, on_final: Callable[[str], object] | None = None
) -> NoReturn:
    """Retry a transient failure within the budget; otherwise record it and raise."""
    backoff = _backoff()
    if is_transient(exc) and task.request.retries < backoff.retries:
        raise task.retry(
            exc=exc, countdown=backoff.delay(task.request.retries), max_retries=backoff.retries
        )
    if on_final is not None:
        try:
            on_final(describe_error(exc))
        except Exception as record_exc:  # the reaper's stall rule is the net
            log.error("could not record the failure of %s: %s", task.name, record_exc)
    raise exc


def _plan_and_send(task: Task, request: ResyncRequest) -> dict[str, Any]:
    ctx = sync_context()
    token = task.request.id
    try:
        planned = plan_run(ctx, request, token=token)
        reaper.send_chunks(ctx, BrokerDispatcher(celery_app), planned.run_id, planned.seqs)
    except Exception as exc:
        _retry_or_raise(task, exc, lambda error: planning_failed(ctx, token, error))
    return {"run_id": planned.run_id, "chunks": len(planned.seqs)}


@celery_app.task(name=messages.INITIAL_LOAD, bind=True)
def initial_load_task(self: Task, horizon_days: int | None = None) -> dict[str, Any]:
    """Plan the full load (schedule discovery, chunks) and fan the chunks out."""
    settings = get_settings()
    start, end = horizon(sync_context().clock(), horizon_days or settings.horizon_days)
    return _plan_and_send(self, ResyncRequest(kind="initial-load", start=start, end=end))


@celery_app.task(name=messages.RECONCILE, bind=True)
def reconcile_task(self: Task) -> dict[str, Any]:
    """The near days re-read whole (deletions no change feed reports)."""
    settings = get_settings()
    start, _ = horizon(sync_context().clock(), settings.horizon_days)
    end = start + timedelta(days=settings.reconcile_days)
    return _plan_and_send(self, ResyncRequest(kind="reconcile", start=start, end=end))


@celery_app.task(name=messages.RESYNC, bind=True)
def resync_task(self: Task, request: dict[str, Any]) -> dict[str, Any]:
    return _plan_and_send(self, request_from_json(request))


@celery_app.task(name=messages.SYNC_CHUNK, bind=True)
def sync_chunk_task(self: Task, run_id: int, seq: int) -> dict[str, Any]:
    """One attempt at one (schedules, window) chunk of a run; a no-op if it is done."""
    try:
        outcome = execute_chunk(sync_context(), run_id, seq)
    except Exception as exc:
        _retry_or_raise(self, exc)  # bookkeeping failed; an unrecorded chunk is the reaper's
    if outcome.status == "retry":
        # the chunk's own row counts its attempts and decides the last one; Celery only
        # carries the next try (and the reaper sends it again should this message be lost)
        try:
            raise self.retry(countdown=outcome.delay, max_retries=_backoff().retries)
        except MaxRetriesExceededError:
            log.warning("chunk %s/%s: no retry message left; the reaper resends it", run_id, seq)
    return {"status": outcome.status, "run_finished": outcome.run_finished}


@celery_app.task(name=messages.REFRESH, bind=True)
def refresh_task(self: Task, schedule_id: str, start: str, end: str) -> dict[str, Any]:
    """Re-read one schedule's window because the EHR notified a change."""
    ctx = sync_context()
    lo, hi = datetime.fromisoformat(start), datetime.fromisoformat(end)
    try:
        result = refresh.refresh_schedule(ctx, schedule_id, lo, hi)
    except Exception as exc:
        _retry_or_raise(
            self, exc, lambda error: follow_up.refresh_failed(ctx, schedule_id, lo, hi, error)
        )
    return {
        "schedule": schedule_id,
        "window": f"{start[:10]}..{end[:10]}",
        "upserted": result.upserted,
        "deleted": result.deleted,
        "skipped_days": result.skipped_days,
        "covered": result.covered,
    }


@celery_app.task(name=messages.REFRESH_ACTOR, bind=True)
def refresh_actor_task(self: Task, actor_ref: str, start: str, end: str) -> dict[str, Any]:
    try:
        results = refresh.refresh_actor(
            sync_context(), actor_ref, datetime.fromisoformat(start), datetime.fromisoformat(end)
        )
    except Exception as exc:
        _retry_or_raise(self, exc)
    return {"schedules": len(results)}


@celery_app.task(name=messages.POLL, bind=True)
def poll_task(self: Task, reason: str = "") -> dict[str, Any]:
    """EHR trouble is recorded on the feed by the poll itself; our own (database, Redis)
    is retried."""
    try:
        result = feed.poll(sync_context(), BrokerDispatcher(celery_app))
    except Exception as exc:
        _retry_or_raise(self, exc)
    return {"mode": result.mode, "changed": result.changed_slots, "error": result.error}


@celery_app.task(name=messages.WATCHDOG, bind=True)
def watchdog_task(self: Task) -> dict[str, Any]:
    try:
        report = feed.watchdog(sync_context(), BrokerDispatcher(celery_app))
    except Exception as exc:
        _retry_or_raise(self, exc)
    return {"live": report.live, "went_stale": report.went_stale, "polled": report.polled}


@celery_app.task(name=messages.SUBSCRIBE, bind=True)
def subscribe_task(self: Task) -> dict[str, Any]:
    try:
        state = feed.ensure_subscription(sync_context())
    except Exception as exc:
        _retry_or_raise(self, exc)
    return {"ehr_id": state.ehr_id, "status": state.status, "error": state.error}


@celery_app.task(name=messages.CAPABILITIES, bind=True)
def capabilities_task(self: Task) -> dict[str, Any]:
    try:
        found = capabilities.discover(sync_context())
    except Exception as exc:
        _retry_or_raise(self, exc)
    return {"known": found is not None}


@celery_app.task(name=messages.REAPER, bind=True)
def reaper_task(self: Task) -> dict[str, Any]:
    try:
        report = reaper.reap(sync_context(), BrokerDispatcher(celery_app))
    except Exception as exc:
        _retry_or_raise(self, exc)
    return {
        "started": report.started,
        "lost_workers": report.lost_workers,
        "resent": report.resent,
        "stalled": report.stalled,
    }


@celery_app.task(name=messages.EXPIRE_HOLDS, bind=True)
def expire_holds_task(self: Task) -> dict[str, Any]:
    """Cancel at the EHR the holds that lapsed unbooked (EHRs without ``$hold``)."""
    try:
        report = periodic.expire_holds_now(sync_context())
    except Exception as exc:
        _retry_or_raise(self, exc)
    return {"cancelled": report.cancelled, "gone": report.gone, "failed": report.failed}


@celery_app.task(name=messages.SAMPLE)
def sample_task() -> dict[str, Any]:
    """Record the cache's size and freshness (the ops console's charts); a lost sample is
    only a gap in a chart, so no retry."""
    sample = samples.record_sample(sync_context())
    return {"slots_cached": sample.slots_cached, "schedules": sample.schedules}
