"""Production refuses development secrets, clearly and without echoing any secret."""

from __future__ import annotations

import json
import warnings
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic_settings import SettingsError
from sqlalchemy.engine import make_url

from app import settings as settings_module
from app.cli import main as cli
from app.cli.demo import demo_banner
from app.settings import (
    DEMO_API_KEY,
    DEV_PROPOSAL_SECRET,
    DEV_WEBHOOK_SECRET,
    Settings,
    UnsafeSettings,
    get_settings,
)
from tests.factories import OPEN_RULES

from .conftest import build_app

STRONG_SECRET = "w" * 32
STRONG_KEY = "k" * 32
SAFE = {
    "environment": "production",
    "webhook_secret": STRONG_SECRET,
    "proposal_secret": "p" * 32,
    "api_keys": {STRONG_KEY: ["system/Appointment.read"]},
    "ehr_base_url": "https://ehr.example.org/fhir",
    "rules_path": OPEN_RULES,
}
# The placeholders deploy/slotsync.env.example carried before secrets moved to files.
OLD_EXAMPLE_SECRET = "replace-with-a-random-secret-of-32-characters-or-more"
OLD_EXAMPLE_KEY = "replace-with-a-random-consumer-key-0000"
OLD_EXAMPLE_PASSWORD = "change-me-to-a-long-random-password"


def test_production_with_real_secrets_starts():
    settings = Settings(**SAFE)
    assert settings.environment == "production"
    assert settings.webhook_secret.get_secret_value() == STRONG_SECRET


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"webhook_secret": DEV_WEBHOOK_SECRET},
            "SLOTSYNC_WEBHOOK_SECRET still has its development default",
        ),
        ({"webhook_secret": "short-secret"}, "SLOTSYNC_WEBHOOK_SECRET is shorter than 24"),
        (
            {"proposal_secret": DEV_PROPOSAL_SECRET},
            "SLOTSYNC_PROPOSAL_SECRET still has its development default",
        ),
        ({"api_keys": {DEMO_API_KEY: ["system/Appointment.read"]}}, "still contains the demo key"),
        (
            {"api_keys": {"tiny-key": ["system/Appointment.read"]}},
            "API key in SLOTSYNC_API_KEYS is shorter",
        ),
        ({"api_keys": {}}, "no consumer credentials"),
        (
            {"jwt_jwks_url": "https://idp/jwks"},
            "needs SLOTSYNC_JWT_ISSUER and SLOTSYNC_JWT_AUDIENCE",
        ),
        (
            {"jwt_shared_key": "x" * 20, "jwt_issuer": "i", "jwt_audience": "a"},
            "SLOTSYNC_JWT_SHARED_KEY is shorter than 32",
        ),
        ({"webhook_secret": ""}, "SLOTSYNC_WEBHOOK_SECRET is empty"),
        ({"proposal_secret": "  "}, "SLOTSYNC_PROPOSAL_SECRET is empty"),
        (
            {"webhook_secret": OLD_EXAMPLE_SECRET},
            "SLOTSYNC_WEBHOOK_SECRET is a placeholder, not a secret",
        ),
        (
            {"proposal_secret": "replace-with-another-random-secret-of-32-characters"},
            "SLOTSYNC_PROPOSAL_SECRET is a placeholder, not a secret",
        ),
        (
            {"api_keys": {OLD_EXAMPLE_KEY: ["system/Appointment.read"]}},
            "an API key in SLOTSYNC_API_KEYS is a placeholder, not a secret",
        ),
        (
            {"jwt_shared_key": "change-me-" * 4, "jwt_issuer": "i", "jwt_audience": "a"},
            "SLOTSYNC_JWT_SHARED_KEY is a placeholder, not a secret",
        ),
        ({"database_password": ""}, "SLOTSYNC_DATABASE_PASSWORD is empty"),
        (
            {"database_password": OLD_EXAMPLE_PASSWORD},
            "SLOTSYNC_DATABASE_PASSWORD is a placeholder, not a secret",
        ),
        (
            {"database_url": f"postgresql+psycopg://slotsync:{OLD_EXAMPLE_PASSWORD}@db/slotsync"},
            "the password in SLOTSYNC_DATABASE_URL is a placeholder, not a secret",
        ),
        ({"redis_password": ""}, "SLOTSYNC_REDIS_PASSWORD is empty"),
        ({"redis_password": "changeme"}, "SLOTSYNC_REDIS_PASSWORD is a placeholder, not a secret"),
        ({"rules_path": None}, "SLOTSYNC_RULES_PATH is not set"),
        ({"rules_path": Path("no/such/rules.yaml")}, "SLOTSYNC_RULES_PATH names no readable file"),
        ({"ehr_base_url": " "}, "SLOTSYNC_EHR_BASE_URL is empty"),
    ],
)
def test_production_refuses_unsafe_settings(override, message):
    with pytest.raises(UnsafeSettings) as caught:
        Settings(**{**SAFE, **override})
    assert message in str(caught.value)
    assert STRONG_SECRET not in str(caught.value)
    assert STRONG_KEY not in str(caught.value)


def test_production_needs_the_ehr_base_url_set():
    values = {k: v for k, v in SAFE.items() if k != "ehr_base_url"}
    with pytest.raises(UnsafeSettings) as caught:
        Settings(**values)
    assert "SLOTSYNC_EHR_BASE_URL is not set" in str(caught.value)


def test_every_problem_is_named_at_once():
    with pytest.raises(UnsafeSettings) as caught:
        Settings(environment="production")
    message = str(caught.value)
    for name in (
        "SLOTSYNC_WEBHOOK_SECRET",
        "SLOTSYNC_PROPOSAL_SECRET",
        "SLOTSYNC_API_KEYS",
        "SLOTSYNC_EHR_BASE_URL",
        "SLOTSYNC_RULES_PATH",
    ):
        assert name in message


def test_development_defaults_are_allowed():
    settings = Settings()
    assert settings.environment == "development"
    assert DEMO_API_KEY in settings.api_keys


def test_secrets_are_not_in_repr():
    text = repr(Settings(**SAFE))
    assert STRONG_SECRET not in text
    assert STRONG_KEY not in text


def test_api_keys_from_environment_accept_scope_strings(monkeypatch):
    monkeypatch.setenv("SLOTSYNC_API_KEYS", '{"k1": "system/Appointment.read slotsync/admin"}')
    assert Settings().api_keys == {"k1": ["system/Appointment.read", "slotsync/admin"]}


def test_cli_refuses_to_start_in_production_with_defaults(monkeypatch, capsys):
    monkeypatch.setenv("SLOTSYNC_ENVIRONMENT", "production")
    monkeypatch.setenv("SLOTSYNC_API_KEYS", json.dumps({STRONG_KEY: "system/Appointment.read"}))
    get_settings.cache_clear()
    try:
        code = cli.main(["status"])
    finally:
        get_settings.cache_clear()
    assert code == 2
    err = capsys.readouterr().err
    assert "SLOTSYNC_WEBHOOK_SECRET still has its development default" in err
    assert STRONG_KEY not in err


def test_cli_names_bad_variables_without_values(monkeypatch, capsys):
    monkeypatch.setenv("SLOTSYNC_API_KEYS", "not json " + STRONG_KEY)
    get_settings.cache_clear()
    try:
        code = cli.main(["status"])
    finally:
        get_settings.cache_clear()
    assert code == 2
    err = capsys.readouterr().err
    assert "SLOTSYNC_API_KEYS" in err or "api_keys" in err.lower()
    assert STRONG_KEY not in err


def test_demo_banner_prints_the_demo_key_and_curls_that_work(tmp_path: Path):
    settings = Settings(data_dir=tmp_path)
    banner = demo_banner(
        settings, host="127.0.0.1", port=8000, start=date(2030, 1, 7), end=date(2030, 1, 8)
    )
    assert DEMO_API_KEY in banner
    assert DEV_WEBHOOK_SECRET in banner
    curls = [line.strip() for line in banner.splitlines() if line.strip().startswith("curl")]
    assert len(curls) >= 2
    assert all(f"-H 'X-API-Key: {DEMO_API_KEY}'" in c for c in curls)
    path = curls[0].split("'http://127.0.0.1:8000", 1)[1].rstrip("'")
    with TestClient(build_app(settings)) as client:
        assert client.get(path, headers={"X-API-Key": DEMO_API_KEY}).status_code == 200


def test_demo_banner_never_echoes_configured_secrets(tmp_path: Path):
    settings = Settings(
        data_dir=tmp_path,
        api_keys={STRONG_KEY: ["system/Appointment.read"]},
        webhook_secret=STRONG_SECRET,
    )
    banner = demo_banner(
        settings, host="127.0.0.1", port=8000, start=date(2030, 1, 7), end=date(2030, 1, 8)
    )
    assert STRONG_KEY not in banner
    assert STRONG_SECRET not in banner
    assert "$SLOTSYNC_KEY" in banner


# -- secrets as files (compose secrets) ----------------------------------------------


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    monkeypatch.setenv("SLOTSYNC_SECRETS_DIR", str(directory))
    return directory


def test_secrets_are_read_from_files_named_for_the_prefix(secrets_dir: Path):
    (secrets_dir / "slotsync_webhook_secret").write_text(STRONG_SECRET + "\n")
    (secrets_dir / "slotsync_api_keys").write_text(json.dumps({STRONG_KEY: "slotsync/admin"}))
    settings = Settings()
    assert settings.webhook_secret.get_secret_value() == STRONG_SECRET
    assert settings.api_keys == {STRONG_KEY: ["slotsync/admin"]}


def test_an_environment_variable_wins_over_a_secret_file(secrets_dir: Path, monkeypatch):
    (secrets_dir / "slotsync_webhook_secret").write_text(STRONG_SECRET)
    monkeypatch.setenv("SLOTSYNC_WEBHOOK_SECRET", "e" * 32)
    assert Settings().webhook_secret.get_secret_value() == "e" * 32


def test_an_absent_default_secrets_dir_is_silently_skipped(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("SLOTSYNC_SECRETS_DIR", raising=False)
    monkeypatch.setattr(settings_module, "DEFAULT_SECRETS_DIR", tmp_path / "absent")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Settings().webhook_secret.get_secret_value() == DEV_WEBHOOK_SECRET


def test_a_configured_secrets_dir_must_exist(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SLOTSYNC_SECRETS_DIR", str(tmp_path / "absent"))
    with pytest.raises(SettingsError, match="SLOTSYNC_SECRETS_DIR is not a directory"):
        Settings()


def test_an_empty_secret_file_is_refused_in_production(secrets_dir: Path):
    (secrets_dir / "slotsync_webhook_secret").write_text("\n")
    with pytest.raises(UnsafeSettings, match="SLOTSYNC_WEBHOOK_SECRET is empty"):
        Settings(**{k: v for k, v in SAFE.items() if k != "webhook_secret"})


def test_an_empty_api_keys_file_names_the_setting(secrets_dir: Path):
    (secrets_dir / "slotsync_api_keys").write_text("")
    with pytest.raises(SettingsError, match="api_keys"):
        Settings()


def test_passwords_go_into_the_urls(secrets_dir: Path):
    password = "p@ss/w:rd " + "x" * 20
    (secrets_dir / "slotsync_database_password").write_text(password)
    (secrets_dir / "slotsync_redis_password").write_text(password)
    settings = Settings(
        database_url="postgresql+psycopg://slotsync@postgres:5432/slotsync",
        redis_url="redis://redis:6379/0",
    )
    assert make_url(settings.effective_database_url).password == password
    assert make_url(settings.effective_database_url).username == "slotsync"
    import redis

    parsed = redis.connection.parse_url(settings.effective_redis_url)
    assert (parsed["password"], parsed["host"], parsed["db"]) == (password, "redis", 0)
    assert password not in repr(settings)


def test_urls_are_unchanged_without_passwords():
    settings = Settings(database_url="postgresql://u:pw@db/x", redis_url="redis://r:6379/1")
    assert settings.effective_database_url == "postgresql://u:pw@db/x"
    assert settings.effective_redis_url == "redis://r:6379/1"
    assert Settings().effective_redis_url is None
