"""Production refuses development secrets, clearly and without echoing any secret."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import cli
from app.demo import demo_banner
from app.settings import (
    DEMO_API_KEY,
    DEV_PROPOSAL_SECRET,
    DEV_WEBHOOK_SECRET,
    Settings,
    UnsafeSettings,
    get_settings,
)

from .conftest import build_app

STRONG_SECRET = "w" * 32
STRONG_KEY = "k" * 32
SAFE = {
    "environment": "production",
    "webhook_secret": STRONG_SECRET,
    "proposal_secret": "p" * 32,
    "api_keys": {STRONG_KEY: ["system/Appointment.read"]},
}


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
    ],
)
def test_production_refuses_unsafe_settings(override, message):
    with pytest.raises(UnsafeSettings) as caught:
        Settings(**{**SAFE, **override})
    assert message in str(caught.value)
    assert STRONG_SECRET not in str(caught.value)
    assert STRONG_KEY not in str(caught.value)


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
