"""`slotsync rules check` and live reload of the rules file by the API."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import yaml
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.cli.main import main
from app.settings import DEMO_API_KEY, Settings, get_settings
from app.sync.load import load_window
from tests.integration.test_find_api import BASE, OFFICE, RULES, WINDOW, slot
from tests.integration.test_load_window import ScriptedEhr, client_for
from tests.paths import EXAMPLE_RULES

EXAMPLE = EXAMPLE_RULES

AUTH = {"X-API-Key": DEMO_API_KEY}


def run_cli(args, monkeypatch, tmp_path):
    monkeypatch.setenv("SLOTSYNC_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert main(["db", "upgrade"]) == 0
        return main(args)
    finally:
        get_settings.cache_clear()


def test_rules_check_accepts_the_example(monkeypatch, tmp_path, capsys):
    assert run_cli(["rules", "check", str(EXAMPLE)], monkeypatch, tmp_path) == 0
    out = capsys.readouterr().out
    assert "is valid" in out and "Office visit" in out


def test_rules_check_reports_field_and_line(monkeypatch, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\norganization:\n  name: x\n  timezone: Mars/Base\n"
        "  opening_hours: {mon: ['08:00-12:00']}\nvisit_types: []\n"
    )
    assert run_cli(["rules", "check", str(bad)], monkeypatch, tmp_path) == 1
    err = capsys.readouterr().err
    assert "organization.timezone (line 4, column 3)" in err


def test_api_reloads_changed_rules_and_keeps_old_on_invalid(engine, tmp_path):
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(RULES))
    load_window(
        engine,
        client_for(ScriptedEhr([slot(i) for i in range(4)])),
        BASE - timedelta(hours=1),
        BASE + timedelta(days=1),
    )
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False), rules_path=rules_path
    )

    def durations(client):
        bundle = client.get(
            "/fhir/Appointment/$find", params={**WINDOW, "visit-type": OFFICE}
        ).json()
        return {
            e["resource"]["minutesDuration"]
            for e in bundle["entry"]
            if e["search"]["mode"] == "match"
        }

    with TestClient(create_app(settings), headers=AUTH) as client:
        assert durations(client) == {15}
        changed = {
            **RULES,
            "visit_types": [
                {**RULES["visit_types"][0], "duration_minutes": 30, "join_contiguous": True}
            ],
        }
        rules_path.write_text(yaml.safe_dump(changed))
        os.utime(rules_path, (time.time() + 5, time.time() + 5))
        time.sleep(1.1)  # the store looks at the file at most once a second
        assert durations(client) == {30}
        rules_path.write_text("version: 1\nvisit_types: [oops\n")
        os.utime(rules_path, (time.time() + 10, time.time() + 10))
        time.sleep(1.1)
        assert durations(client) == {30}  # invalid file rejected, previous rules in force


def test_readiness_reports_the_rules_in_force(engine, tmp_path):
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(RULES))
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False), rules_path=rules_path
    )
    with TestClient(create_app(settings), headers=AUTH) as client:
        checks = client.get("/readyz").json()["checks"]
    assert checks["rules"]["ok"] is True
    assert "2 visit types" in checks["rules"]["detail"]
