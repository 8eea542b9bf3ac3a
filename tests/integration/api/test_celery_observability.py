"""Celery tasks: outcomes and durations in Prometheus, the task id as correlation id in logs."""

from __future__ import annotations

import io
import json
import logging

import pytest
from celery import Celery
from prometheus_client import REGISTRY

from app.observability.logging import configure_logging
from app.settings import Settings
from workers.observability import install_celery_observability


def count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def celery_app():
    app = Celery("test-observability")
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = False
    uninstall = install_celery_observability(app, Settings(log_format="json"))
    yield app
    uninstall()
    configure_logging(Settings())


def test_task_outcomes_and_durations(celery_app):
    @celery_app.task(name="workers.tasks.refresh_schedule")
    def refresh_schedule(schedule_id: str) -> str:
        logging.getLogger("workers.tasks").info("refreshing %s", schedule_id)
        return schedule_id

    @celery_app.task(name="workers.tasks.initial_load")
    def initial_load() -> None:
        raise RuntimeError("EHR down")

    ok_before = count("slotsync_task_outcomes_total", task="refresh_schedule", outcome="ok")
    failed_before = count("slotsync_task_outcomes_total", task="initial_load", outcome="failed")
    duration_before = count("slotsync_task_duration_seconds_count", task="refresh_schedule")
    buffer = io.StringIO()
    configure_logging(Settings(log_format="json"), stream=buffer)

    result = refresh_schedule.delay("sch-1")
    assert result.get() == "sch-1"
    initial_load.delay()

    assert (
        count("slotsync_task_outcomes_total", task="refresh_schedule", outcome="ok")
        == ok_before + 1
    )
    assert (
        count("slotsync_task_outcomes_total", task="initial_load", outcome="failed")
        == failed_before + 1
    )
    assert (
        count("slotsync_task_duration_seconds_count", task="refresh_schedule")
        == duration_before + 1
    )
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    task_line = next(line for line in lines if line["message"] == "refreshing sch-1")
    assert task_line["request_id"] == f"task-{result.id}"


def test_celery_keeps_our_logging(celery_app):
    assert celery_app.conf.worker_hijack_root_logger is False
