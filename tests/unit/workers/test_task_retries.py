"""The Celery tasks retry under slotsync's own budget, never Celery's default of 3.

Celery runs eagerly here (embedded settings), which executes every retry at once
instead of after its countdown: the number of attempts is what is under test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.ehr.errors import EhrRejected, EhrUnavailable
from app.settings import Settings
from app.sync import follow_up, refresh
from workers import tasks

START = datetime(2026, 12, 7, tzinfo=UTC)
END = START + timedelta(days=1)


@pytest.fixture
def failing_refresh(monkeypatch: pytest.MonkeyPatch):
    attempts: list[int] = []
    recorded: list[str] = []

    def fail(_ctx, schedule_id, start, end):
        attempts.append(1)
        raise failure[0]

    failure: list[Exception] = [EhrUnavailable("EHR answered 503", status=503)]
    monkeypatch.setattr(refresh, "refresh_schedule", fail)
    monkeypatch.setattr(
        follow_up, "refresh_failed", lambda _ctx, sid, lo, hi, error: recorded.append(error)
    )
    monkeypatch.setattr(tasks, "sync_context", lambda: object())
    # eager apply() then runs each retry in turn and reports the last failure as its result
    monkeypatch.setitem(tasks.celery_app.conf, "task_eager_propagates", False)
    return attempts, recorded, failure


def run_refresh():
    return tasks.refresh_task.apply(args=("sch-1", START.isoformat(), END.isoformat()))


@pytest.mark.parametrize("budget", [0, 5])
def test_a_refresh_is_tried_exactly_one_plus_the_configured_retries(
    monkeypatch: pytest.MonkeyPatch, failing_refresh, budget: int
):
    attempts, recorded, _ = failing_refresh
    monkeypatch.setattr(tasks, "get_settings", lambda: Settings(task_max_retries=budget))
    result = run_refresh()
    assert result.failed() and "503" in str(result.result)
    assert len(attempts) == budget + 1  # Celery's own default would have stopped at 4
    assert len(recorded) == 1 and "503" in recorded[0]  # the outcome, recorded once


def test_a_permanent_failure_is_recorded_without_retrying(
    monkeypatch: pytest.MonkeyPatch, failing_refresh
):
    attempts, recorded, failure = failing_refresh
    failure[0] = EhrRejected("EHR answered 403", status=403)
    monkeypatch.setattr(tasks, "get_settings", lambda: Settings(task_max_retries=5))
    result = run_refresh()
    assert result.failed() and "403" in str(result.result)
    assert len(attempts) == 1 and len(recorded) == 1
