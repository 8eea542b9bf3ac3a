"""`--json` with real processes after a real load: stdout is one JSON document and nothing
else (no progress bar, no colour, no log line), written to a pipe as a script reads it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.databases import throwaway_redis_db
from benchmarks.processes import process_env, run_slotsync
from sandbox_ehr.process import start_sandbox
from tests.paths import EXAMPLE_RULES

HORIZON_DAYS = 5


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("cli-json")
    with start_sandbox(size=300, extra_args=("--horizon-days", str(HORIZON_DAYS))) as sandbox:
        values = process_env(
            {
                "SLOTSYNC_DATA_DIR": str(tmp),
                "SLOTSYNC_EHR_BASE_URL": sandbox.base_url,
                "SLOTSYNC_HORIZON_DAYS": str(HORIZON_DAYS),
            }
        )
        assert slotsync(values, "db", "upgrade").returncode == 0
        yield values


def slotsync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_slotsync(*args, env=env)


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert "Traceback" not in done.stderr, done.stderr
    assert "\x1b" not in done.stdout
    return json.loads(done.stdout)


def test_resync_then_status_as_json(env):
    done = slotsync(env, "resync", "--json")
    summary = as_json(done)
    assert done.returncode == 0, done.stderr
    assert summary["status"] == "ok" and summary["seen"] > 0
    assert set(summary) == {"run_id", "status", "chunks", "failed", "seen", "upserted", "deleted"}
    assert "free slots in" not in done.stderr  # the summary is the JSON, not a message

    done = slotsync(env, "status", "--json")
    status = as_json(done)
    assert done.returncode in (0, 1) and status["health"] in ("ok", "degraded")
    assert status["runs"][0]["id"] == summary["run_id"]
    assert status["runs"][0]["seen"] == summary["seen"]

    done = slotsync(env, "sync-status", "--json")
    report = as_json(done)
    assert report["recent_runs"][0]["id"] == summary["run_id"]
    assert report["overall"]["slots_cached"] > 0


def test_resync_to_a_pipe_has_no_progress_bar(env):
    done = slotsync(env, "resync", "--schedule", "does-not-exist")
    assert done.stdout == ""
    assert "━" not in done.stderr and "\r" not in done.stderr
    assert "free slots in" in done.stderr  # the one summary line


def test_rules_check_and_config_as_json(env):
    rules = EXAMPLE_RULES
    report = as_json(slotsync(env, "rules", "check", str(rules), "--json"))
    assert report["valid"] is True and report["cached"]["schedules"] > 0
    config = as_json(slotsync(env, "config", "--json"))
    assert config["settings"]["horizon_days"] == {
        "env": "SLOTSYNC_HORIZON_DAYS",
        "value": HORIZON_DAYS,
        "source": "environment",
        "secret": False,
    }


def test_enqueued_resync_as_json_without_a_worker(env):
    """Queued for workers none of which runs: --no-wait says queued; watching ends at
    --timeout with exit status 1, the run going on."""
    with throwaway_redis_db() as redis_url:
        broker = {**env, "SLOTSYNC_REDIS_URL": redis_url}
        done = slotsync(broker, "resync", "--enqueue", "--no-wait", "--json")
        queued = as_json(done)
        assert done.returncode == 0 and queued["status"] == "queued" and queued["token"]
        done = slotsync(broker, "resync", "--enqueue", "--timeout", "1", "--json")
        waited = as_json(done)
        assert done.returncode == 1 and waited["status"] == "timeout"
        assert "did not finish within 1s" in done.stderr
