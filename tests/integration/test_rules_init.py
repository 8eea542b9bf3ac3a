"""Onboarding a new EHR: load from the sandbox, `rules init`, then `rules check` and the
sync status name the schedules an edited file leaves uncovered, with the reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.api.main import create_app
from app.cache import repository as repo
from app.cache import slot_reads
from app.cache.db import make_engine
from app.cli.main import build_parser, main
from app.core.domain import Slot
from app.settings import DEMO_API_KEY, Settings, get_settings
from rules.composer import compose
from rules.loader import load_rules
from rules.request import FindRequest
from rules.schema import RulesFile
from sandbox_ehr.process import SandboxProcess, start_sandbox

HORIZON_DAYS = 14
ADMIN = {"X-API-Key": DEMO_API_KEY}


def _start(**kwargs: object) -> SandboxProcess:
    return start_sandbox(
        size=600,
        seed=7,
        page_size=100,
        extra_args=["--horizon-days", str(HORIZON_DAYS)],
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with _start() as sp:
        yield sp


@pytest.fixture(scope="module")
def plain_r4() -> Iterator[SandboxProcess]:
    with _start(profile="plain-r4", max_count=100) as sp:
        yield sp


def cli(args: list[str], monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> int:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLOTSYNC_REDIS_URL", raising=False)
    get_settings.cache_clear()
    try:
        return main(args)
    finally:
        get_settings.cache_clear()


def load_from(
    sp: SandboxProcess, db_url: str, monkeypatch: pytest.MonkeyPatch, **extra: str
) -> dict[str, str]:
    env = {
        "SLOTSYNC_DATABASE_URL": db_url,
        "SLOTSYNC_EHR_BASE_URL": sp.base_url,
        "SLOTSYNC_HORIZON_DAYS": str(HORIZON_DAYS),
        "SLOTSYNC_LOAD_WINDOW_DAYS": "7",
        **extra,
    }
    assert cli(["db", "upgrade"], monkeypatch, env) == 0
    assert cli(["resync"], monkeypatch, env) == 0
    return env


def cache(db_url: str) -> tuple[dict, dict, list[Slot]]:
    engine = make_engine(db_url)
    now = datetime.now(UTC)
    try:
        with Session(engine) as session:
            return (
                repo.schedules_by_id(session),
                repo.actors_by_ref(session),
                slot_reads.free_slots(session, now, now + timedelta(days=HORIZON_DAYS + 2)),
            )
    finally:
        engine.dispose()


def offered(rules: RulesFile, db_url: str) -> tuple[set[str], set[str]]:
    """(schedules whose free slots can hold a visit, schedules the composer offers from).

    A schedule whose only free slots left are too short for the shortest visit, even
    back to back (a room with two 10-minute slots late on the sandbox's last day, as
    the horizon slides with the clock), has nothing any rules file could offer."""
    schedules, actors, slots = cache(db_url)
    now = datetime.now(UTC)
    request = FindRequest(start=now, end=now + timedelta(days=HORIZON_DAYS + 2))
    result = compose(request, rules, slots, schedules, actors, now, lambda _: "")
    shortest = timedelta(minutes=min(vt.duration_minutes for vt in rules.visit_types))
    return _can_hold(slots, now, shortest), {
        sid for a in result.appointments for sid in a.schedule_ids
    }


def _can_hold(slots: list[Slot], now: datetime, length: timedelta) -> set[str]:
    """Schedules with a run of back-to-back free slots, starting from ``now``, at least
    ``length`` long."""
    runs: dict[str, tuple[datetime, datetime]] = {}
    found: set[str] = set()
    for slot in sorted(slots, key=lambda s: (s.schedule_id, s.start)):
        if slot.start < now:
            continue
        run = runs.get(slot.schedule_id)
        first = run[0] if run is not None and run[1] == slot.start else slot.start
        runs[slot.schedule_id] = (first, slot.end)
        if slot.end - first >= length:
            found.add(slot.schedule_id)
    return found


def uncovered_lines(report: str) -> dict[str, str]:
    """``rules check``'s uncovered schedules: id -> reason."""
    if "no visit type covers:\n" not in report:
        return {}
    found = {}
    for line in report.split("no visit type covers:\n", 1)[1].splitlines():
        if line.startswith("  ") and ": " in line:
            head, reason = line.strip().split(": ", 1)
            found[head.split(" ")[0]] = reason
    return found


def single_type_schedule(db_url: str) -> tuple[str, set[str]]:
    """A service type some schedules carry alone, and those schedules."""
    _, _, slots = cache(db_url)
    types: dict[str, set[str]] = {}
    for slot in slots:
        types.setdefault(slot.schedule_id, set()).update(slot.service_types)
    for _, codes in sorted(types.items()):
        if len(codes) == 1:
            (code,) = codes
            return code, {s for s, c in types.items() if c == {code}}
    raise AssertionError("no schedule whose slots carry a single service type")


def test_rules_init_covers_the_ehr_then_check_and_status_name_what_an_edit_uncovers(
    sandbox, engine, tmp_path, monkeypatch, capsys
):
    db_url = engine.url.render_as_string(hide_password=False)
    env = load_from(sandbox, db_url, monkeypatch)
    out = tmp_path / "rules.yaml"
    assert cli(["rules", "init", "--out", str(out)], monkeypatch, env) == 0
    assert f"wrote {out}" in capsys.readouterr().out

    rules = load_rules(out)
    with_free, from_offers = offered(rules, db_url)
    assert with_free and from_offers == with_free
    schedules, actors, free = cache(db_url)
    text = out.read_text()
    assert all(sid in text for sid in schedules) and all(ref in text for ref in actors)

    # Only schedules with nothing free are left out, and they say so.
    idle = set(schedules) - {slot.schedule_id for slot in free}
    assert cli(["rules", "check", str(out)], monkeypatch, env) == 0
    assert uncovered_lines(capsys.readouterr().out) == {
        sid: f"no free slots cached in the next {rules.defaults.max_horizon_days} days"
        for sid in idle
    }

    # Refuses to overwrite the edited file unless told to.
    assert cli(["rules", "init", "--out", str(out)], monkeypatch, env) == 1
    assert "--force" in capsys.readouterr().err

    code, alone = single_type_schedule(db_url)
    data = yaml.safe_load(text)
    data["visit_types"] = [vt for vt in data["visit_types"] if vt["code"] != code]
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    edited = load_rules(out)
    with_free, from_offers = offered(edited, db_url)
    assert with_free - from_offers == alone
    reason = f"service type {code.rpartition('|')[2]} not offered by any visit type"

    assert cli(["rules", "check", str(out)], monkeypatch, env) == 0
    found = uncovered_lines(capsys.readouterr().out)
    assert {sid: found[sid] for sid in alone} == {sid: reason for sid in alone}
    assert set(found) == alone | idle

    status_env = {**env, "SLOTSYNC_RULES_PATH": str(out)}
    cli(["sync-status", "--json"], monkeypatch, status_env)
    uncovered = json.loads(capsys.readouterr().out)["overall"]["uncovered_schedules"]
    assert uncovered["count"] == len(alone | idle) and uncovered["rules"] == str(out)
    listed = {u["id"]: (u["reason_code"], u["reason"]) for u in uncovered["schedules"]}
    assert set(listed) == alone | idle
    assert {listed[sid] for sid in alone} == {("service-type", reason)}
    cli(["sync-status"], monkeypatch, status_env)
    assert f"schedules no rule covers: {len(alone | idle)}" in capsys.readouterr().out

    settings = Settings(database_url=db_url, rules_path=out, ehr_base_url=sandbox.base_url)
    with TestClient(create_app(settings), headers=ADMIN) as client:
        overall = client.get("/admin/sync-status").json()["overall"]
    by_id = {u["id"]: u["reason"] for u in overall["uncovered_schedules"]["schedules"]}
    assert {sid: by_id[sid] for sid in alone} == {sid: reason for sid in alone}

    assert cli(["rules", "init", "--out", str(out), "--force"], monkeypatch, env) == 0
    assert code in {vt.code for vt in load_rules(out).visit_types}


def test_rules_init_from_the_plain_r4_profile(plain_r4, tmp_path, monkeypatch, capsys):
    """A generic R4 server: no $prefetch, `_count` capped at 100."""
    db_url = f"sqlite:///{tmp_path / 'cache.sqlite3'}"
    env = load_from(
        plain_r4, db_url, monkeypatch, SLOTSYNC_EHR_FHIR_VERSION="r4", SLOTSYNC_EHR_PAGE_SIZE="100"
    )
    out = tmp_path / "rules.yaml"
    assert cli(["rules", "init", "--out", str(out)], monkeypatch, env) == 0
    with_free, from_offers = offered(load_rules(out), db_url)
    assert with_free and from_offers == with_free
    assert cli(["rules", "check", str(out)], monkeypatch, env) == 0
    found = uncovered_lines(capsys.readouterr().out)
    schedules, _, free = cache(db_url)
    assert set(found) == set(schedules) - {slot.schedule_id for slot in free}
    assert set(found.values()) <= {"no free slots cached in the next 30 days"}


def test_rules_init_on_an_empty_cache_says_to_load_first(tmp_path, monkeypatch, capsys):
    env = {"SLOTSYNC_DATA_DIR": str(tmp_path)}
    monkeypatch.delenv("SLOTSYNC_DATABASE_URL", raising=False)
    out = tmp_path / "rules.yaml"
    # before `db upgrade` (no tables), then migrated but never loaded
    assert cli(["rules", "init", "--out", str(out)], monkeypatch, env) == 3
    assert cli(["db", "upgrade"], monkeypatch, env) == 0
    capsys.readouterr()
    assert cli(["rules", "init", "--out", str(out)], monkeypatch, env) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0
    assert "the cache holds no schedules" in err and "slotsync resync" in err
    assert not out.exists()


def test_rules_init_help_documents_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["rules", "init", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 written" in text and "3 the cache holds no schedules" in text
