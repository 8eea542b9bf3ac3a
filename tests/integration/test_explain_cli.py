"""``slotsync explain``: the reasons of ``$find?_explain=true`` from the cache, as a table
or as JSON."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import yaml

from app.cli.main import main
from app.settings import get_settings
from app.sync.load import load_window
from tests.integration.test_find_api import BASE, RULES, WINDOW, slot
from tests.integration.test_load_window import ScriptedEhr, client_for

ARGS = ["explain", "--practitioner", "Practitioner/sch-1", "--start", WINDOW["start"]]


@pytest.fixture
def cache(engine, tmp_path, monkeypatch):
    """sch-1 with 15-minute slots 0-5 but the third (busy at the EHR, so not cached)."""
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(RULES))
    slots = [slot(i) for i in range(6) if i != 2] + [slot(0, "sch-2")]
    load_window(
        engine, client_for(ScriptedEhr(slots)), BASE - timedelta(hours=1), BASE + timedelta(days=1)
    )
    monkeypatch.setenv("SLOTSYNC_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("SLOTSYNC_RULES_PATH", str(rules_path))
    monkeypatch.setenv("SLOTSYNC_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield slots
    get_settings.cache_clear()


def test_explain_prints_a_table_of_reasons(cache, capsys):
    assert main([*ARGS, "--end", WINDOW["end"], "--count", "2"]) == 0
    out = capsys.readouterr().out
    assert "8 offers on 2 slots" in out  # 5 office visits, 3 consults (two slots each)
    assert "count-cap" in out and "_count" in out
    assert "busy" in out and "sch-1" in out
    assert "sch-2" not in out  # another practitioner's schedule


def test_explain_as_json_names_the_slots(cache, capsys):
    assert main([*ARGS, "--count", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["offers"] == 8 and report["offered_slots"] == 1
    capped = [r for r in report["reasons"] if r["code"] == "count-cap"]
    assert sum(r["slots"] for r in capped) == 4
    busy = [r for r in report["reasons"] if r["code"] == "busy"]
    gap = (cache[1].end, cache[2].start)  # where the busy slot was
    assert gap in [
        (datetime.fromisoformat(r["start"]), datetime.fromisoformat(r["end"])) for r in busy
    ]
    assert all(r["schedule"] == "sch-1" for r in report["reasons"])


def test_explain_refuses_a_bad_window(cache, capsys):
    assert main([*ARGS, "--end", "yesterday"]) == 2
    assert "end" in capsys.readouterr().err
