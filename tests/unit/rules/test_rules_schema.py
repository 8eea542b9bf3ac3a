"""The published JSON Schema matches the models and accepts what the loader accepts."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from rules.schema import (
    SCHEMA_PATH,
    RulesFile,
    effective_rules,
    horizon_days,
    json_schema,
    render_json_schema,
)
from tests.paths import EXAMPLE_RULES

EXAMPLE = EXAMPLE_RULES


def test_published_schema_is_up_to_date() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_json_schema(), (
        "rules/rules.schema.json is stale: run `python -m rules.schema`"
    )


def test_published_schema_accepts_the_example_and_rejects_bad_input() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    example = json.loads(json.dumps(yaml.safe_load(EXAMPLE.read_text()), default=str))
    assert list(validator.iter_errors(example)) == []
    example["visit_types"][0]["assets"][0]["kind"] = "doctor"
    example["visit_types"][1]["code"] = "no-system"
    example["organization"]["opening_hours"]["mon"] = ["8-5"]
    paths = sorted(list(e.absolute_path) for e in validator.iter_errors(example))
    assert paths == [
        ["organization", "opening_hours", "mon", 0],
        ["visit_types", 0, "assets", 0, "kind"],
        ["visit_types", 1, "code"],
    ]


def test_schema_describes_the_root_model() -> None:
    schema = json_schema()
    assert schema["title"] == "slotsync rules file"
    assert schema["required"] == ["version", "organization", "visit_types"]
    assert schema["properties"]["version"]["const"] == 1


@pytest.mark.parametrize(
    ("hours", "ok"),
    [(["08:00-12:00", "13:00-24:00"], True), (["08:00-12:00", "11:00-13:00"], False)],
)
def test_opening_ranges_of_a_day_must_not_overlap(hours: list[str], ok: bool) -> None:
    data = {
        "version": 1,
        "organization": {"name": "x", "timezone": "UTC", "opening_hours": {"mon": hours}},
        "visit_types": [
            {"code": "|v", "duration_minutes": 10, "assets": [{"kind": "practitioner"}]}
        ],
    }
    if ok:
        assert RulesFile.model_validate(data).organization.opening_hours.intervals(0)[-1] == (
            780,
            1440,
        )
    else:
        with pytest.raises(ValueError, match="overlap"):
            RulesFile.model_validate(data)


def _two_visit_types() -> RulesFile:
    return RulesFile.model_validate(
        {
            "version": 1,
            "organization": {"name": "x", "timezone": "UTC", "opening_hours": {}},
            "defaults": {"min_lead_minutes": 90, "join_contiguous": True},
            "visit_types": [
                {"code": "|a", "duration_minutes": 10, "assets": [{"kind": "practitioner"}]},
                {
                    "code": "|b",
                    "duration_minutes": 10,
                    "min_lead_minutes": 0,
                    "join_contiguous": False,
                    "slot_service_types": [],
                    "assets": [{"kind": "practitioner"}],
                },
            ],
        }
    )


def test_defaults_are_inherited_unless_overridden() -> None:
    rules = _two_visit_types()
    a, b = (rules.effective(vt) for vt in rules.visit_types)
    assert (a.min_lead_minutes, a.join_contiguous, a.slot_service_types) == (90, True, ("|a",))
    assert (b.min_lead_minutes, b.join_contiguous, b.slot_service_types) == (0, False, ())


def test_effective_rules_are_worked_out_once_per_rules_file_and_anew_for_a_changed_copy() -> None:
    rules = _two_visit_types()
    first = effective_rules(rules)
    assert first == tuple(rules.effective(vt) for vt in rules.visit_types)
    assert effective_rules(rules) is first  # kept, not recomputed
    assert horizon_days(rules) == rules.defaults.max_horizon_days

    # a copy with other defaults (as `rules check` makes with other visit types) is a
    # new file: its values, not the kept ones
    longer = rules.defaults.model_copy(
        update={"min_lead_minutes": 5, "max_horizon_days": rules.defaults.max_horizon_days + 30}
    )
    changed = rules.model_copy(update={"defaults": longer})
    assert [e.min_lead_minutes for e in effective_rules(changed)] == [5, 0]
    assert horizon_days(changed) == rules.defaults.max_horizon_days + 30
    # and the first file's, asked again, are its own
    assert [e.min_lead_minutes for e in effective_rules(rules)] == [90, 0]
