"""The CLI on a fresh database or with a dependency away: one line saying what to do,
exit status 3, never a traceback (the real command, in a subprocess)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks.databases import throwaway_postgres
from benchmarks.processes import free_port, process_env, run_slotsync


def slotsync(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    values = {
        "SLOTSYNC_DATA_DIR": str(tmp),
        "SLOTSYNC_DATABASE_URL": f"sqlite:///{tmp / 'cache.db'}",
        "SLOTSYNC_EHR_TIMEOUT_SECONDS": "1",
        "SLOTSYNC_TASK_MAX_RETRIES": "0",
        **env,
    }
    return run_slotsync(*args, env=process_env(values), timeout=120)


@pytest.mark.parametrize("command", [["status"], ["sync-status"], ["rules", "init"]])
def test_a_fresh_database_says_run_db_upgrade(tmp_path, command):
    done = slotsync(tmp_path, *command)
    assert done.returncode == 3, done.stderr
    assert "slotsync db upgrade" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_postgres_database_without_schema_says_run_db_upgrade(tmp_path):
    with throwaway_postgres() as url:
        done = slotsync(tmp_path, "sync-status", SLOTSYNC_DATABASE_URL=url)
    assert done.returncode == 3, done.stderr
    assert "slotsync db upgrade" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_missing_postgres_database_is_not_a_missing_schema(tmp_path):
    """PostgreSQL says "does not exist" of a database as of a table: `db upgrade` cannot
    create a database, so the line must not send the operator there."""
    with throwaway_postgres() as url:
        missing = url.rsplit("/", 1)[0] + "/slotsync_no_such_database"
    done = slotsync(tmp_path, "sync-status", SLOTSYNC_DATABASE_URL=missing)
    assert done.returncode == 3, done.stderr
    assert "cannot use the cache database" in done.stderr
    assert "db upgrade" not in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_an_unreachable_ehr_is_one_line_with_the_next_step(tmp_path):
    assert slotsync(tmp_path, "db", "upgrade").returncode == 0
    nowhere = f"http://127.0.0.1:{free_port()}/fhir"
    done = slotsync(tmp_path, "resync", SLOTSYNC_EHR_BASE_URL=nowhere)
    assert done.returncode == 3, done.stderr
    assert f"the EHR at {nowhere}" in done.stderr and "SLOTSYNC_EHR_BASE_URL" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_an_unreachable_database_is_one_line(tmp_path):
    port = free_port()
    done = slotsync(
        tmp_path,
        "sync-status",
        SLOTSYNC_DATABASE_URL=f"postgresql+psycopg://nobody@127.0.0.1:{port}/none",
    )
    assert done.returncode == 3, done.stderr
    assert "cannot use the cache database" in done.stderr and "SLOTSYNC_DATABASE_URL" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_help_documents_the_exit_statuses(tmp_path):
    done = slotsync(tmp_path, "--help")
    assert done.returncode == 0
    assert "3 a dependency" in " ".join(done.stdout.split())
