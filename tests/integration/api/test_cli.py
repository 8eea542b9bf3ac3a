"""The `slotsync` command in process: every help shows examples and exit statuses, `--json`
prints one JSON document and nothing else, `config` shows every setting with secrets
masked."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from app.cli.exit_codes import EXIT_CODES
from app.cli.main import build_parser, main
from app.runtime import engine_for
from app.settings import Settings, get_settings
from benchmarks.processes import free_port
from tests.paths import EXAMPLE_RULES

from .conftest import now, record_full_load, seed
from .test_readme_cli import commands

RULES = str(EXAMPLE_RULES)


def every_parser() -> list[str]:
    """Every command path, the groups too: `slotsync`, `slotsync rules`, `slotsync rules init`."""
    found = {"slotsync"}
    for path in commands(build_parser()):
        words = path.split()
        found.update(" ".join(words[:n]) for n in range(2, len(words) + 1))
    return sorted(found)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    get_settings.cache_clear()
    try:
        code = main(list(args))
    finally:
        get_settings.cache_clear()
    out, err = capsys.readouterr()
    return code, out, err


def help_text(capsys: pytest.CaptureFixture[str], path: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*path.split()[1:], "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def exit_statuses(text: str) -> dict[int, str]:
    """The numbered lines under "exit status:" (continuation lines joined)."""
    section = text.split("\nexit status:\n", 1)[1].split("\n\n", 1)[0]
    found: dict[int, str] = {}
    last = None
    for line in section.splitlines():
        numbered = re.match(r"^  (\d+)\s+(.*)$", line)
        if numbered:
            last = int(numbered[1])
            found[last] = numbered[2]
        elif last is not None and line.startswith("        "):
            found[last] += " " + line.strip()
    return found


# -- help ----------------------------------------------------------------------------


def test_the_command_list_covers_groups_and_the_new_commands():
    paths = every_parser()
    assert {"slotsync rules", "slotsync rules check", "slotsync db upgrade"} <= set(paths)
    assert {"slotsync config", "slotsync sync-status", "slotsync sandbox-ehr"} <= set(paths)


@pytest.mark.parametrize("path", every_parser())
def test_every_help_shows_examples_and_exit_statuses(path, capsys):
    text = help_text(capsys, path)
    examples = text.split("\nexamples:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    # each example runs the command (a group's, one of its commands)
    assert examples and all(f"{path} " in line or line.endswith(path) for line in examples)
    statuses = exit_statuses(text)
    assert 2 in statuses and statuses.keys() <= EXIT_CODES.keys(), statuses


def test_the_top_level_help_lists_every_exit_status(capsys):
    text = " ".join(help_text(capsys, "slotsync").split())
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {' '.join(meaning.split())}" in text
    assert "--json" in text


def test_status_commands_document_their_verdicts(capsys):
    for path in ("slotsync status", "slotsync sync-status"):
        statuses = exit_statuses(help_text(capsys, path))
        assert statuses[0] == "ok"
        assert statuses[1].startswith("degraded") and statuses[2].startswith("down")


# -- --json --------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A migrated SQLite cache in tmp_path, made by `slotsync db upgrade`."""
    for name in ("SLOTSYNC_DATABASE_URL", "SLOTSYNC_REDIS_URL", "SLOTSYNC_RULES_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLOTSYNC_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    assert main(["db", "upgrade"]) == 0
    settings = get_settings()
    get_settings.cache_clear()
    yield settings
    engine_for(settings.effective_database_url).dispose()


def loaded(settings: Settings) -> None:
    engine = engine_for(settings.effective_database_url)
    seed(engine, confirmed_at=now() - timedelta(minutes=5))
    record_full_load(engine, finished_at=now() - timedelta(hours=1))


def test_status_json(cache, capsys):
    capsys.readouterr()
    code, out, _ = run(capsys, "status", "--json")
    report = json.loads(out)
    assert code == 2 and report["health"] == "down"  # nothing loaded yet
    loaded(cache)
    code, out, _ = run(capsys, "status", "--json")
    report = json.loads(out)
    assert set(report) == {"healthy", "health", "checks", "lagging", "runs"}
    assert code == 0 and report["healthy"] is True and report["health"] == "ok"
    assert {c["name"] for c in report["checks"]} >= {"database", "broker", "full load", "cache"}
    [run_row] = report["runs"]
    assert run_row["kind"] == "initial-load" and run_row["status"] == "ok"
    assert "\x1b" not in out  # no colour


def test_sync_status_json_has_the_runs_the_table_shows(cache, capsys):
    loaded(cache)
    capsys.readouterr()
    code, out, _ = run(capsys, "sync-status", "--json", "--schedules")
    report = json.loads(out)
    assert set(report) >= {"generated_at", "overall", "schedules", "recent_runs"}
    assert code == 0 and report["overall"]["health"] == "ok"
    assert [r["kind"] for r in report["recent_runs"]] == ["initial-load"]
    assert {s["id"] for s in report["schedules"]} == {"sch-0", "sch-1"}
    code, text, _ = run(capsys, "sync-status", "--schedules")
    assert code == 0 and "sync: ok" in text and "sch-1" in text


def test_rules_check_json(cache, capsys, tmp_path):
    loaded(cache)
    capsys.readouterr()
    code, out, _ = run(capsys, "rules", "check", RULES, "--json")
    report = json.loads(out)
    assert code == 0 and report["valid"] is True
    assert set(report) >= {"file", "version", "visit_types", "cached", "uncovered"}
    assert report["cached"]["schedules"] == 2
    assert {"code", "offers", "first_start"} <= set(report["visit_types"][0])
    broken = tmp_path / "broken.yaml"
    broken.write_text("visit_types: 3\n")
    code, out, _ = run(capsys, "rules", "check", str(broken), "--json")
    assert code == 1 and json.loads(out)["valid"] is False


def test_resync_json_prints_nothing_on_stdout_when_the_ehr_is_away(cache, capsys, monkeypatch):
    monkeypatch.setenv("SLOTSYNC_EHR_BASE_URL", f"http://127.0.0.1:{free_port()}/fhir")
    monkeypatch.setenv("SLOTSYNC_EHR_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("SLOTSYNC_TASK_MAX_RETRIES", "0")
    capsys.readouterr()
    code, out, err = run(capsys, "resync", "--json")
    assert code == 3 and out == ""
    assert "SLOTSYNC_EHR_BASE_URL" in err


# -- config ----------------------------------------------------------------------------

SECRETS = {
    "SLOTSYNC_WEBHOOK_SECRET": "hook-Secret-0123456789abcdefXYZ",
    "SLOTSYNC_PROPOSAL_SECRET": "proposal-Secret-0123456789abcdefXYZ",
    "SLOTSYNC_EHR_BEARER_TOKEN": "bearer-Token-0123456789abcdefXYZ",
    "SLOTSYNC_EHR_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nMIIEvQpemBodyXYZ\n-----END",
    "SLOTSYNC_JWT_SHARED_KEY": "jwt-Shared-Key-0123456789abcdefghijXYZ",
}
API_KEY = "api-Key-0123456789abcdefghijXYZ"
DB_PASSWORD = "db-Pass-w0rd/with@odd?chars"
REDIS_PASSWORD = "redis-Pass-0123XYZ"
TOKEN_PARAM = "query-Token-0123XYZ"


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Every kind of secret set through the environment; the values that must not show."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLOTSYNC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SLOTSYNC_API_KEYS", json.dumps({API_KEY: "system/Appointment.read"}))
    monkeypatch.setenv(
        "SLOTSYNC_DATABASE_URL", f"postgresql+psycopg://slotsync:{DB_PASSWORD}@db:5432/slotsync"
    )
    monkeypatch.setenv("SLOTSYNC_REDIS_URL", f"redis://:{REDIS_PASSWORD}@redis:6379/0")
    monkeypatch.setenv("SLOTSYNC_JWT_JWKS_URL", f"https://idp.test/jwks?access_token={TOKEN_PARAM}")
    return [
        *SECRETS.values(),
        "MIIEvQpemBodyXYZ",
        API_KEY,
        DB_PASSWORD,
        REDIS_PASSWORD,
        TOKEN_PARAM,
    ]


def squeezed(text: str) -> str:
    """Without whitespace, so a value wrapped over lines would still be found."""
    return "".join(text.split())


@pytest.mark.parametrize("as_json", [False, True])
def test_config_never_shows_a_secret(secret_env, capsys, as_json):
    code, out, err = run(capsys, "config", *(["--json"] if as_json else []))
    assert code == 0
    for secret in secret_env:
        for part in secret.split("\n"):
            assert squeezed(part) not in squeezed(out + err), part
    assert "slotsync:********@db:5432/slotsync" in out
    assert "redis://:********@redis:6379/0" in out
    assert "access_token=********" in out


def test_config_json_lists_every_setting_with_its_source(secret_env, capsys):
    code, out, _ = run(capsys, "config", "--json")
    config = json.loads(out)
    assert code == 0 and set(config) == {"settings", "derived"}
    settings = config["settings"]
    assert list(settings) == list(Settings.model_fields)
    assert settings["webhook_secret"] == {
        "env": "SLOTSYNC_WEBHOOK_SECRET",
        "value": "********",
        "source": "environment",
        "secret": True,
    }
    assert settings["api_keys"]["value"] == [
        {"key": "********", "scopes": ["system/Appointment.read"]}
    ]
    assert settings["horizon_days"] == {
        "env": "SLOTSYNC_HORIZON_DAYS",
        "value": 30,
        "source": "default",
        "secret": False,
    }
    assert settings["metrics_multiproc_dir"]["env"] == "PROMETHEUS_MULTIPROC_DIR"
    assert config["derived"]["mode"] == "broker"
    assert "********" in config["derived"]["database_url"]


def test_config_lines_group_the_environment_first(capsys, monkeypatch, tmp_path):
    for name in ("SLOTSYNC_DATABASE_URL", "SLOTSYNC_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLOTSYNC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SLOTSYNC_HORIZON_DAYS", "9")
    code, out, _ = run(capsys, "config")
    assert code == 0
    from_env, defaults = out.split("# defaults:")
    assert "SLOTSYNC_HORIZON_DAYS=9\n" in from_env
    assert "SLOTSYNC_REDIS_URL=\n" in defaults and "SLOTSYNC_EHR_MARK_SLOTS_BUSY=false" in defaults
    lines = [line for line in out.splitlines() if line and not line.startswith("#")]
    assert len(lines) == len(Settings.model_fields)
    assert "# mode: embedded" in out
