"""Loading rules files: clear errors with field paths and line numbers, hot reload."""

from __future__ import annotations

import json
import logging
import os
import textwrap
import threading
from pathlib import Path

import pytest
import yaml

from rules.loader import RulesError, RulesStore, load_rules, parse_rules
from rules.schema import RulesFile
from tests.paths import EXAMPLE_RULES

EXAMPLE = EXAMPLE_RULES

GOOD = textwrap.dedent(
    """\
    version: 1
    organization:
      name: Test
      timezone: America/Chicago
      opening_hours:
        mon: ["08:00-17:00"]
    visit_types:
      - code: "http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type|office-visit"
        duration_minutes: 20
        assets:
          - kind: practitioner
            codes: ["http://snomed.info/sct|419772000"]
    """
)


def problems(text: str, fmt: str = "yaml") -> list[str]:
    with pytest.raises(RulesError) as info:
        parse_rules(text, source="rules.yaml", fmt=fmt)
    return str(info.value).splitlines()[1:]


def test_example_file_loads() -> None:
    rules = load_rules(EXAMPLE)
    codes = {vt.code.rpartition("|")[2] for vt in rules.visit_types}
    assert {"office-visit", "new-patient", "well-child", "minor-surgery", "echo", "mri"} <= codes
    flagship = rules.site("Location/clinic-1")
    assert flagship is not None and flagship.opening_hours is not None
    assert flagship.opening_hours.thu == ["08:00-12:00", "13:00-19:00"]
    assert flagship.opening_hours.sat == rules.organization.opening_hours.sat == ["09:00-12:00"]


def test_json_rules_load_like_yaml(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    assert load_rules(path) == load_rules(EXAMPLE)


def test_bad_field_is_reported_with_path_and_line() -> None:
    text = GOOD.replace("kind: practitioner", "kind: doctor")
    assert problems(text) == [
        "  visit_types[0].assets[0].kind (line 11, column 9): Input should be 'practitioner', "
        "'location', 'room', 'device' or 'service'"
    ]


def test_every_problem_is_listed_in_line_order() -> None:
    text = (
        GOOD.replace("America/Chicago", "Mars/Olympus")
        .replace("duration_minutes: 20", "duration_minutes: -5")
        .replace('["08:00-17:00"]', '["17:00-08:00"]')
    )
    assert problems(text) == [
        "  organization.timezone (line 4, column 3): unknown IANA time zone 'Mars/Olympus'",
        "  organization.opening_hours.mon[0] (line 6, column 11): opening range '17:00-08:00'"
        " ends before it starts",
        "  visit_types[0].duration_minutes (line 9, column 5): Input should be greater than 0",
    ]


def test_missing_field_points_at_its_parent() -> None:
    text = GOOD.replace("    duration_minutes: 20\n", "")
    assert problems(text) == [
        "  visit_types[0].duration_minutes (line 8, column 5): Field required"
    ]


def test_unknown_field_is_rejected_at_its_line() -> None:
    text = GOOD.replace("    duration_minutes: 20\n", "    duration_minutes: 20\n    colour: red\n")
    assert problems(text) == [
        "  visit_types[0].colour (line 10, column 5): Extra inputs are not permitted"
    ]


def test_cross_field_problems_carry_their_own_path() -> None:
    item = GOOD[GOOD.index("  - code") :]
    text = GOOD + item.replace("kind: practitioner", "kind: room\n        ids: [Practitioner/x]")
    assert problems(text) == [
        "  visit_types[1].assets[0].ids[0] (line 17, column 15): a room must be a Location"
        " reference, not 'Practitioner/x'"
    ]
    assert problems(GOOD + item) == [
        "  visit_types[1].code (line 13, column 5): duplicate visit type (also item 0);"
        " entries sharing a code need distinct names"
    ]
    named = GOOD + item.replace("duration_minutes: 20", "name: other\n    duration_minutes: 20")
    assert len(parse_rules(named).visit_types) == 2


def test_duplicate_yaml_key_is_an_error() -> None:
    text = GOOD.replace("  name: Test\n", "  name: Test\n  name: Again\n")
    assert problems(text) == ["  organization.name (line 4, column 3): duplicate key"]


def test_yaml_syntax_error_has_a_line() -> None:
    text = GOOD.replace("  name: Test", "  name: [Test")
    [line] = problems(text)
    assert line.startswith("  (document) (line ") and "YAML syntax" in line


def test_yaml_and_json_problems_carry_line_and_column() -> None:
    """The column points at the field's key (or list item) in either format."""
    text = GOOD.replace("duration_minutes: 20", "duration_minutes: 0")
    with pytest.raises(RulesError) as info:
        parse_rules(text)
    [problem] = info.value.problems
    lines = text.splitlines()
    assert lines[problem.line - 1][problem.column - 1 :].startswith("duration_minutes: 0")
    data = yaml.safe_load(text)
    as_json = json.dumps(data, indent=3)
    with pytest.raises(RulesError) as info:
        parse_rules(as_json, fmt="json")
    [problem] = info.value.problems
    assert problem.as_json()["path"] == "visit_types[0].duration_minutes"
    lines = as_json.splitlines()
    assert lines[problem.line - 1][problem.column - 1 :].startswith('"duration_minutes": 0')
    with pytest.raises(RulesError) as info:
        parse_rules("version: 1\norganization: {name: [x\n", fmt="yaml")
    [problem] = info.value.problems
    assert (problem.line, problem.column) is not None and problem.column is not None


def test_json_syntax_error_has_a_line() -> None:
    assert problems('{\n  "version": 1,\n  oops\n}', fmt="json") == [
        "  (document) (line 3, column 3): Expecting property name enclosed in double quotes"
    ]


def test_json_field_errors_have_lines() -> None:
    data = yaml.safe_load(GOOD)
    data["visit_types"][0]["duration_minutes"] = "long"
    text = json.dumps(data, indent=2)
    expected_line = text.splitlines().index('      "duration_minutes": "long",') + 1
    assert problems(text, fmt="json") == [
        f"  visit_types[0].duration_minutes (line {expected_line}, column 7): Input should be a"
        " valid integer, unable to parse string as an integer"
    ]


def test_not_a_mapping_empty_and_wrong_version() -> None:
    assert problems("- 1\n- 2\n") == [
        "  (document) (line 1, column 1): the rules file must be a mapping"
    ]
    assert problems("") == ["  (document) (line 1, column 1): the rules file is empty"]
    assert problems(GOOD.replace("version: 1", "version: 2")) == [
        "  version (line 1, column 1): Input should be 1"
    ]


def test_recursive_alias_is_an_error_not_a_crash() -> None:
    text = GOOD + "extra: &loop [1, *loop]\n"
    assert problems(text)[-1].startswith("  extra (line 13, column 1): ")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")


# ---------------------------------------------------------------- hot reload


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str, mtime: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))


def test_reload_if_changed_picks_up_a_valid_new_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    write(path, GOOD, 1)
    clock = FakeClock()
    store = RulesStore(path, clock=clock)
    assert store.current.organization.name == "Test"
    write(path, GOOD.replace("name: Test", "name: Renamed"), 2)
    assert store.reload_if_changed() is False  # checked at most once per second
    clock.now += 1.0
    assert store.reload_if_changed() is True
    assert store.current.organization.name == "Renamed"
    clock.now += 1.0
    assert store.reload_if_changed() is False  # nothing changed since


def test_a_request_during_a_reload_waits_for_the_new_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests check the file concurrently: one that arrives while another is loading
    the changed file must get the new rules, not the old ones (an API worker answered
    $find under the old rules more than a second after an apply)."""
    path = tmp_path / "rules.yaml"
    write(path, GOOD, 1)
    clock = FakeClock()
    store = RulesStore(path, clock=clock)
    write(path, GOOD.replace("name: Test", "name: Renamed"), 2)
    clock.now += 1.0
    parsing, release = threading.Event(), threading.Event()
    parse = store._parse

    def slow_parse(data: bytes) -> RulesFile:
        parsing.set()
        release.wait(5)
        return parse(data)

    monkeypatch.setattr(store, "_parse", slow_parse)
    loader = threading.Thread(target=store.reload_if_changed)
    loader.start()
    assert parsing.wait(5)
    seen: list[str] = []
    other = threading.Thread(
        target=lambda: (store.reload_if_changed(), seen.append(store.current.organization.name))
    )
    other.start()
    other.join(0.2)
    assert seen == [], "answered before the new rules were in force"
    release.set()
    loader.join(5)
    other.join(5)
    assert seen == ["Renamed"]


def test_invalid_new_file_keeps_old_rules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "rules.yaml"
    write(path, GOOD, 1)
    clock = FakeClock()
    store = RulesStore(path, clock=clock)
    old = store.current
    write(path, GOOD.replace("duration_minutes: 20", "duration_minutes: zero"), 2)
    clock.now += 5
    with caplog.at_level(logging.ERROR, logger="rules.loader"):
        assert store.reload_if_changed() is False
    assert store.current is old
    assert "visit_types[0].duration_minutes (line 9, column 5)" in caplog.text
    assert store.last_error is not None
    caplog.clear()
    clock.now += 5
    assert store.reload_if_changed() is False and caplog.text == ""  # not logged again
    with pytest.raises(RulesError):
        store.reload()
    assert store.current is old
    write(path, GOOD.replace("name: Test", "name: Fixed"), 3)
    clock.now += 5
    assert store.reload_if_changed() is True
    assert store.current.organization.name == "Fixed" and store.last_error is None


def test_deleted_file_keeps_old_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    write(path, GOOD, 1)
    clock = FakeClock()
    store = RulesStore(path, clock=clock)
    path.unlink()
    clock.now += 5
    assert store.reload_if_changed() is False
    assert store.current.organization.name == "Test"


def test_reload_forces_a_read_even_with_the_same_mtime(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    write(path, GOOD, 1)
    store = RulesStore(path, clock=FakeClock())
    write(path, GOOD.replace("name: Test", "name: Same"), 1)  # same mtime, same size
    assert store.reload().organization.name == "Same"


def test_initial_invalid_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\n")
    with pytest.raises(RulesError, match="organization"):
        RulesStore(path)


def test_concurrent_readers_see_whole_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    write(path, GOOD, 1)
    store = RulesStore(path, check_interval=0.0)
    seen: list[RulesFile] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(200):
                store.reload_if_changed()
                seen.append(store.current)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for n in range(2, 12):
        write(path, GOOD.replace("name: Test", f"name: T{n}"), n)
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert {r.organization.name for r in seen} <= {"Test", *(f"T{n}" for n in range(2, 12))}
    store.reload_if_changed()
    assert store.current.organization.name == "T11"
