"""``POST /admin/rules/preview`` and ``/admin/rules/apply``, ``slotsync rules diff`` and
``rules apply``, over the sandbox organisation loaded into a cache."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.settings import Settings
from rules.loader import MAX_RULES_BYTES, load_rules
from sandbox_ehr.process import SandboxProcess
from tests.fhir_checks import assert_outcome
from tests.integration.test_rules_init import cli
from tests.integration.test_rules_preview_oracle import loaded, sandbox  # noqa: F401
from tests.paths import EXAMPLE_RULES

ADMIN_KEY = "preview-admin-key-0123456789abcdef"
READER_KEY = "preview-reader-key-0123456789abcdef"
YAML = {"Content-Type": "application/yaml"}


def _edited(**defaults: Any) -> str:
    data = yaml.safe_load(EXAMPLE_RULES.read_text())
    data = copy.deepcopy(data)
    data["defaults"].update(defaults)
    return yaml.safe_dump(data, sort_keys=False)


LATER = _edited(min_lead_minutes=3 * 24 * 60)  # nothing in the next three days
BROKEN = EXAMPLE_RULES.read_text().replace("duration_minutes: 20", "duration_minutes: -20", 1)


@pytest.fixture
def live(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    shutil.copy(EXAMPLE_RULES, path)
    return path


def _settings(db_url: str, rules_path: Path | None, ehr: SandboxProcess) -> Settings:
    return Settings(
        database_url=db_url,
        rules_path=rules_path,
        api_keys={
            ADMIN_KEY: ["slotsync/admin", "system/Appointment.read"],
            READER_KEY: ["system/Appointment.read"],
        },
        find_warm_up=False,
        ehr_base_url=ehr.base_url,
    )


@pytest.fixture
def client(
    loaded: str,  # noqa: F811
    live: Path,
    sandbox: SandboxProcess,  # noqa: F811
) -> Iterator[TestClient]:
    with TestClient(
        create_app(_settings(loaded, live, sandbox)), headers={"X-API-Key": ADMIN_KEY}
    ) as test_client:
        yield test_client


def _offer_count(client: TestClient) -> int:
    now = datetime.now(UTC)
    window = {"start": now.isoformat(), "end": (now + timedelta(days=90)).isoformat()}
    answer = client.get("/fhir/Appointment/$find", params={**window, "_count": 1})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["total"])


def test_preview_counts_and_explains_and_changes_nothing(client: TestClient, live: Path) -> None:
    before = live.read_bytes()
    offers = _offer_count(client)
    answer = client.post("/admin/rules/preview", content=LATER, headers=YAML)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["valid"] is True and body["live"] == "rules.yaml"
    assert body["changes"] == [
        {"path": "defaults.min_lead_minutes", "kind": "changed", "old": 120, "new": 4320}
    ]
    [anyone] = body["cohorts"]  # no eligibility edit: the unknown patient only
    assert anyone["cohort"]["label"] == "any patient"
    assert anyone["lost"] > 0 and anyone["gained"] == 0
    assert anyone["offers_before"] - anyone["offers_after"] == anyone["lost"]
    for breakdown in ("by_schedule", "by_visit_type", "by_day"):
        assert sum(row["lost"] for row in anyone[breakdown]) == anyone["lost"]
    lost = anyone["examples"]["lost"]
    assert 0 < len(lost) <= 5
    assert {e["reason"] for e in lost} == {"lead-time"}
    assert {e["cause"]["path"] for e in lost} == {"defaults.min_lead_minutes"}
    # the rules in force did not change
    assert live.read_bytes() == before
    assert _offer_count(client) == offers


def test_preview_for_one_patient_and_as_json(client: TestClient) -> None:
    text = json.dumps(yaml.safe_load(LATER), default=str)
    answer = client.post(
        "/admin/rules/preview?age=30&gender=male&examples=1",
        content=text,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    [cohort] = answer.json()["cohorts"]
    assert cohort["cohort"]["label"] == "the given patient"
    assert cohort["cohort"]["patient"]["gender"] == "male"
    assert len(cohort["examples"]["lost"]) == 1


def test_an_invalid_file_is_a_422_with_line_and_column(client: TestClient, live: Path) -> None:
    before = live.read_bytes()
    for path in ("/admin/rules/preview", "/admin/rules/apply"):
        body = assert_outcome(client.post(path, content=BROKEN, headers=YAML), 422, "invalid")
        [problem] = body["issue"][1:]
        assert problem["expression"] == ["visit_types[0].duration_minutes"]
        line, column = (int(n.split()[-1]) for n in problem["location"][0].split(","))
        assert BROKEN.splitlines()[line - 1][column - 1 :].startswith("duration_minutes: -20")
        assert "nothing changed" in body["issue"][0]["diagnostics"]
    broken_json = '{"version": 1,\n  oops}'
    body = assert_outcome(
        client.post(
            "/admin/rules/preview",
            content=broken_json,
            headers={"Content-Type": "application/json"},
        ),
        400,
        "structure",
    )  # refused by the JSON check every body passes, which says where
    assert "(line 2, column 3)" in body["issue"][0]["diagnostics"]
    assert live.read_bytes() == before


def test_oversized_other_media_and_non_admin_are_refused(client: TestClient) -> None:
    big = "# padding\n" * (MAX_RULES_BYTES // 10 + 1) + LATER
    assert_outcome(client.post("/admin/rules/preview", content=big, headers=YAML), 413)
    assert_outcome(
        client.post("/admin/rules/apply", content=LATER, headers={"Content-Type": "text/csv"}),
        415,
    )
    reader = {"X-API-Key": READER_KEY, **YAML}
    for path in ("/admin/rules/preview", "/admin/rules/apply"):
        assert client.post(path, content=LATER, headers=reader).status_code == 403


def test_apply_puts_the_file_in_force_and_an_invalid_one_changes_nothing(
    client: TestClient, live: Path
) -> None:
    offers = _offer_count(client)
    assert_outcome(client.post("/admin/rules/apply", content=BROKEN, headers=YAML), 422)
    assert _offer_count(client) == offers
    answer = client.post("/admin/rules/apply", content=LATER, headers=YAML)
    assert answer.status_code == 200, answer.text
    assert answer.json()["changes"][0]["path"] == "defaults.min_lead_minutes"
    assert live.read_text() == LATER
    assert load_rules(live).defaults.min_lead_minutes == 4320
    assert _offer_count(client) < offers  # in force at once in this process
    assert not list(live.parent.glob(".rules.yaml.*"))  # no temporary file left


def test_apply_needs_a_rules_file_of_our_own(
    loaded: str,  # noqa: F811
    sandbox: SandboxProcess,  # noqa: F811
) -> None:
    app = create_app(_settings(loaded, None, sandbox))
    with TestClient(app, headers={"X-API-Key": ADMIN_KEY}) as client:
        assert_outcome(client.post("/admin/rules/apply", content=LATER, headers=YAML), 409)


def test_cli_rules_diff_and_apply(
    loaded: str,  # noqa: F811
    live: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {"SLOTSYNC_DATABASE_URL": loaded, "SLOTSYNC_RULES_PATH": str(live)}
    new = tmp_path / "new.yaml"
    new.write_text(LATER)
    monkeypatch.setenv("COLUMNS", "200")  # the table's width; not cut in a capture
    assert cli(["rules", "diff", str(new)], monkeypatch, env) == 0
    table = capsys.readouterr().out
    assert "defaults.min_lead_minutes" in table and "any patient" in table
    assert "lead-time" in table and "by visit type" in table
    assert cli(["rules", "diff", str(new), "--json"], monkeypatch, env) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] and report["cohorts"][0]["lost"] > 0
    before = live.read_bytes()
    assert live.read_bytes() == before  # diff changes nothing

    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    assert cli(["rules", "diff", str(bad), "--json"], monkeypatch, env) == 1
    [problem] = json.loads(capsys.readouterr().out)["problems"]
    assert problem["path"] == "visit_types[0].duration_minutes" and problem["column"] == 5
    assert cli(["rules", "apply", str(bad)], monkeypatch, env) == 1
    assert "unchanged" in capsys.readouterr().err
    assert live.read_bytes() == before

    assert cli(["rules", "apply", str(new), "--json"], monkeypatch, env) == 0
    applied = json.loads(capsys.readouterr().out)
    assert applied["applied"] and applied["changes"][0]["new"] == 4320
    assert live.read_text() == LATER
