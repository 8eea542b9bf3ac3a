"""Tasks: thin, idempotent wrappers around the app.sync services.

Arguments are ids and ISO timestamps, never objects. Transient failures (EHR,
network, locks, database) are retried with exponential backoff and jitter; the
last attempt of a load chunk records it as failed instead of raising, so its run
still completes (as ``failed``, with the previous cache content kept).
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any, NoReturn

from celery import Task

from app.runtime import sync_context
from app.settings import get_settings
from app.sync import feed, refresh
from app.sync.runs import ResyncRequest, execute_chunk, is_transient, plan_run
from app.sync.windows import horizon

from .celery_app import celery_app
from .dispatch import CeleryDispatcher, request_from_json


def _max_retries() -> int:
    return get_settings().task_max_retries


def _countdown(retries: int, cap: float = 60.0) -> float:
    return min(cap, 2.0**retries) * (0.5 + random.random() / 2)


def _retry_or_raise(task: Task, exc: Exception) -> NoReturn:
    if is_transient(exc) and task.request.retries < _max_retries():
        raise task.retry(exc=exc, countdown=_countdown(task.request.retries))
    raise exc


@celery_app.task(name="slotsync.initial_load", bind=True)
def initial_load_task(self: Task, horizon_days: int | None = None) -> dict[str, Any]:
    """Plan the full load (schedule discovery, chunks) and fan the chunks out."""
    ctx = sync_context()
    start, end = horizon(ctx.clock(), horizon_days or ctx.settings.horizon_days)
    request = ResyncRequest(kind="initial-load", start=start, end=end)
    try:
        planned = plan_run(ctx, request, token=self.request.id)
    except Exception as exc:
        _retry_or_raise(self, exc)
    CeleryDispatcher().run_chunks(planned.run_id, planned.seqs)
    return {"run_id": planned.run_id, "chunks": len(planned.seqs)}


@celery_app.task(name="slotsync.resync", bind=True)
def resync_task(self: Task, request: dict[str, Any]) -> dict[str, Any]:
    ctx = sync_context()
    try:
        planned = plan_run(ctx, request_from_json(request), token=self.request.id)
    except Exception as exc:
        _retry_or_raise(self, exc)
    CeleryDispatcher().run_chunks(planned.run_id, planned.seqs)
    return {"run_id": planned.run_id, "chunks": len(planned.seqs)}


@celery_app.task(name="slotsync.sync_chunk", bind=True)
def sync_chunk_task(self: Task, run_id: int, seq: int) -> dict[str, Any]:
    """One (schedules, window) chunk of a run; a no-op if it already completed."""
    final = self.request.retries >= _max_retries()
    try:
        outcome = execute_chunk(sync_context(), run_id, seq, final_attempt=final)
    except Exception as exc:
        _retry_or_raise(self, exc)
    return {"status": outcome.status, "run_finished": outcome.run_finished}


@celery_app.task(name="slotsync.refresh", bind=True)
def refresh_task(self: Task, schedule_id: str, start: str, end: str) -> dict[str, Any]:
    """Re-read one schedule's window because the EHR notified a change."""
    try:
        result = refresh.refresh_schedule(
            sync_context(), schedule_id, datetime.fromisoformat(start), datetime.fromisoformat(end)
        )
    except Exception as exc:
        _retry_or_raise(self, exc)
    return {"upserted": result.upserted, "deleted": result.deleted}


@celery_app.task(name="slotsync.refresh_actor", bind=True)
def refresh_actor_task(self: Task, actor_ref: str, start: str, end: str) -> dict[str, Any]:
    try:
        results = refresh.refresh_actor(
            sync_context(), actor_ref, datetime.fromisoformat(start), datetime.fromisoformat(end)
        )
    except Exception as exc:
        _retry_or_raise(self, exc)
    return {"schedules": len(results)}


@celery_app.task(name="slotsync.poll")
def poll_task(reason: str = "") -> dict[str, Any]:
    result = feed.poll(sync_context(), CeleryDispatcher())
    return {"mode": result.mode, "changed": result.changed_slots, "error": result.error}


@celery_app.task(name="slotsync.watchdog")
def watchdog_task() -> dict[str, Any]:
    report = feed.watchdog(sync_context(), CeleryDispatcher())
    return {"live": report.live, "went_stale": report.went_stale, "polled": report.polled}


@celery_app.task(name="slotsync.subscribe")
def subscribe_task() -> dict[str, Any]:
    state = feed.ensure_subscription(sync_context())
    return {"ehr_id": state.ehr_id, "status": state.status, "error": state.error}
