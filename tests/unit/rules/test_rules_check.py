"""`rules check`: what a rules file would offer against the cache."""

from __future__ import annotations

from datetime import timedelta

from rules.check import format_report, summarise
from rules.loader import load_rules
from tests.paths import EXAMPLE_RULES
from tests.unit.rules.factories import at, example_world, make_rules, visit

EXAMPLE = EXAMPLE_RULES


def test_summary_counts_bookable_starts_per_visit_type() -> None:
    rules = make_rules(
        [
            visit(minutes=20, join_contiguous=True),
            visit(
                minutes=20,
                name="capped",
                max_offers_per_day_per_practitioner=2,
                join_contiguous=True,
            ),
            visit("echo", 30),
        ]
    )
    world = example_world()  # each practitioner: 16 x 15-minute slots on 2026-03-10
    now = at("2026-03-09 12:00")
    office, capped, echo = summarise(rules, world.slots, world.schedules, world.actors, now)
    # Only the family practitioner's slots carry office-visit; 16 slots -> 15 joined starts.
    assert (office.offers, office.distinct_starts, office.practitioners) == (15, 15, 1)
    assert office.first_start == at("2026-03-10 08:00")
    assert office.last_start == at("2026-03-10 11:30")
    assert (capped.name, capped.offers) == ("capped", 2)
    assert (echo.offers, echo.first_start) == (0, None)


def test_report_lists_visit_types_and_warns_about_empty_ones() -> None:
    rules = load_rules(EXAMPLE)
    world = example_world()
    now = at("2026-03-09 12:00")
    summaries = summarise(rules, world.slots, world.schedules, world.actors, now)
    assert len(summaries) == len(rules.visit_types)
    report = format_report(rules, summaries, source="multi-clinic.yaml")
    lines = report.splitlines()
    assert lines[0] == "rules file multi-clinic.yaml is valid (version 1)"
    assert "Acme Health (America/New_York)" in lines[1]
    assert any(line.startswith("Office visit ") and " 20 " in line for line in lines)
    # minor surgery needs two days' lead: nothing on 2026-03-10 from this "now"
    assert "warning: no bookable start for:" in report
    assert "visit-type|minor-surgery" in report.split("warning:")[1]
    later = summarise(rules, world.slots, world.schedules, world.actors, now - timedelta(days=2))
    surgery = next(s for s in later if s.code.endswith("|minor-surgery"))
    assert surgery.offers > 0
