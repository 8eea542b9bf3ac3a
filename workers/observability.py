"""Celery workers get the same observability as the API: ``workers.celery_app`` calls
:func:`install_celery_observability` when a worker starts (``celeryd_init``).

It configures slotsync logging instead of Celery's (JSON lines in production,
the task id as the correlation id of every line a task logs), counts task
outcomes and durations in Prometheus, and, when ``SLOTSYNC_WORKER_METRICS_PORT``
is set, serves the worker's ``/metrics`` from the main worker process (children of
the prefork pool share samples through ``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from celery import Celery, signals

from app.observability.context import bind_request_id, reset_request_id
from app.observability.logging import configure_logging
from app.observability.metrics import serve_metrics, task_outcome
from app.settings import Settings

_STARTED = "_slotsync_started"
_TOKEN = "_slotsync_token"


def _task_name(sender: Any) -> str:
    return str(getattr(sender, "name", None) or sender or "unknown").rsplit(".", 1)[-1]


def install_celery_observability(app: Celery, settings: Settings) -> Callable[[], None]:
    """Connect the handlers (Celery signals are process-wide); returns a function undoing it."""

    # weak=False: the handlers are closures and must outlive this call
    def setup_logging(**_: Any) -> None:
        configure_logging(settings)

    def prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
        if task is not None:
            setattr(task.request, _STARTED, time.perf_counter())
            setattr(task.request, _TOKEN, bind_request_id(f"task-{task_id}"))

    def postrun(task: Any = None, state: str | None = None, **_: Any) -> None:
        if task is None:
            return
        started = getattr(task.request, _STARTED, None)
        seconds = time.perf_counter() - started if started is not None else None
        outcome = {"SUCCESS": "ok", "FAILURE": "failed", "RETRY": "retried"}.get(
            state or "", (state or "unknown").lower()
        )
        task_outcome(_task_name(task), outcome, seconds)
        token = getattr(task.request, _TOKEN, None)
        if token is not None:
            reset_request_id(token)

    def rejected(sender: Any = None, **_: Any) -> None:
        task_outcome(_task_name(sender), "rejected")

    def worker_ready(**_: Any) -> None:
        if settings.worker_metrics_port:
            serve_metrics(settings.worker_metrics_port, settings.metrics_multiproc_dir)

    connections = [
        (signals.setup_logging, setup_logging),
        (signals.task_prerun, prerun),
        (signals.task_postrun, postrun),
        (signals.task_rejected, rejected),
        (signals.task_unknown, rejected),
        (signals.worker_ready, worker_ready),
    ]
    for signal, handler in connections:
        signal.connect(handler, weak=False)
    app.conf.worker_hijack_root_logger = False

    def uninstall() -> None:
        for signal, handler in connections:
            signal.disconnect(handler)

    return uninstall
