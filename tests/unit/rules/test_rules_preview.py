"""rules.preview: the structural diff, causes, eligibility cohorts and the tally."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from app.core.domain import Actor, Schedule, Slot
from app.core.slot_columns import SlotColumns
from rules.assets import Unit
from rules.composer import compose
from rules.eligibility import ineligible_reason
from rules.loader import RulesError, RulesStore, load_rules, parse_rules, replace_rules_file
from rules.preview import (
    GAINED,
    LOST,
    Change,
    Key,
    OfferKey,
    Place,
    Tally,
    Where,
    as_offer_key,
    birth_date_for,
    cause_of,
    cohorts,
    diff_rules,
    full_key,
    offer_keys,
    patient_of,
    set_difference,
)
from rules.request import FindRequest
from rules.schema import RulesFile
from tests.paths import EXAMPLE_RULES
from tests.unit.rules.factories import at, example_world, sign
from tests.unit.rules.test_rules_offer_memo import full_lists

LIVE = yaml.safe_load(EXAMPLE_RULES.read_text())


def _rules(edit: dict | None = None, **defaults: object) -> RulesFile:
    data = copy.deepcopy(LIVE)
    data["defaults"].update(defaults)
    for path, value in (edit or {}).items():
        *parents, last = path
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
    return parse_rules(yaml.safe_dump(data, sort_keys=False))


def test_the_same_rules_have_no_change() -> None:
    assert diff_rules(_rules(), _rules()) == []


def test_changes_are_paths_in_the_file() -> None:
    new = _rules(
        {("visit_types", 1, "buffer_after_minutes"): 10, ("organization", "name"): "New name"},
        min_lead_minutes=60,
    )
    changes = {c.path: c for c in diff_rules(_rules(), new)}
    assert set(changes) == {
        "organization.name",
        "defaults.min_lead_minutes",
        "visit_types[1].buffer_after_minutes",
    }
    assert changes["defaults.min_lead_minutes"] == Change(
        "defaults.min_lead_minutes", "changed", 120, 60
    )


def test_lists_of_values_change_as_one_and_entries_are_added_or_removed() -> None:
    data = copy.deepcopy(LIVE)
    data["organization"]["opening_hours"]["tue"] = ["09:00-10:00"]
    removed = data["visit_types"].pop()
    shorter = parse_rules(yaml.safe_dump(data, sort_keys=False))
    changes = diff_rules(_rules(), shorter)
    tue = next(c for c in changes if c.path == "organization.opening_hours.tue")
    assert tue.new == ["09:00-10:00"] and tue.kind == "changed"
    last = f"visit_types[{len(data['visit_types'])}]"
    gone = next(c for c in changes if c.path == last)
    assert gone.kind == "removed" and gone.old["code"] == removed["code"] and gone.new is None
    back = next(c for c in diff_rules(shorter, _rules()) if c.path == last)
    assert back.kind == "added"


def test_the_cause_is_the_change_at_or_around_the_rule() -> None:
    changes = [
        Change("defaults.min_lead_minutes", "changed", 120, 60),
        Change("visit_types[2]", "added", None, {}),
        Change("organization.opening_hours.tue", "changed", [], []),
    ]
    assert cause_of("defaults.min_lead_minutes", changes) is changes[0]
    assert cause_of("visit_types[2].eligibility.min_age_years", changes) is changes[1]
    assert cause_of("organization.opening_hours", changes) is changes[2]
    assert cause_of("visit_types[20].buffer_after_minutes", changes) is None
    assert cause_of("defaults.min_lead", changes) is None  # a prefix of a name is no parent
    assert cause_of(None, changes) is None


def test_without_an_eligibility_change_only_the_unknown_patient_is_previewed() -> None:
    [anyone] = cohorts(_rules(), _rules(min_lead_minutes=0), date(2026, 3, 10))
    assert anyone.patient is None and anyone.visit_types is None


def test_an_eligibility_change_adds_a_patient_each_side_of_each_boundary() -> None:
    today = date(2026, 3, 10)
    old = _rules()
    new = _rules(
        {
            ("visit_types", 3, "eligibility", "min_age_years"): 21,
            ("visit_types", 1, "eligibility"): {"genders": ["female"]},
        }
    )
    found = cohorts(old, new, today)
    assert found[0].patient is None
    labels = [c.label for c in found[1:]]
    assert labels == [
        "aged 17",
        "aged 18",
        "aged 19",
        "aged 20",
        "aged 21",
        "aged 22",
        "gender female",
        "gender male",
    ]
    physical = new.visit_types[3]
    codes = {new.visit_types[1].code, physical.code}
    assert all(set(c.visit_types or ()) == codes for c in found[1:])
    # each side of the boundary: eligible under one file and not the other
    aged = {c.label: c.patient for c in found}
    last_day = today + timedelta(days=60)
    assert (
        ineligible_reason(old.visit_types[3].eligibility, aged["aged 20"], today, last_day) is None
    )
    assert ineligible_reason(physical.eligibility, aged["aged 20"], today, last_day)
    assert ineligible_reason(physical.eligibility, aged["aged 21"], today, last_day) is None


def test_new_or_existing_patient_boundaries() -> None:
    new = _rules({("visit_types", 2, "eligibility", "patient_status"): "any"})
    labels = [c.label for c in cohorts(_rules(), new, date(2026, 3, 10))]
    assert labels == ["any patient", "new patient", "existing patient"]


def test_a_given_patient_is_the_only_cohort() -> None:
    patient = patient_of(date(2026, 3, 10), age=40, gender="male")
    new = _rules({("visit_types", 3, "eligibility", "min_age_years"): 21})
    [given] = cohorts(_rules(), new, date(2026, 3, 10), patient=patient)
    assert given.patient == patient and given.visit_types is None
    assert patient.birth_date == date(1986, 3, 10) and patient.gender == "male"
    birth = birth_date_for(30, date(2024, 2, 29))
    assert birth == date(1994, 2, 28)


def _offer(hours: int, schedule: str = "sch-1", code: str = "a|office") -> Key:
    start = datetime(2026, 3, 10, 12, tzinfo=UTC) + timedelta(hours=hours)
    return (code, schedule, "Practitioner/1", start, timedelta(minutes=20), "s")


def _found(keys: set[Key]) -> dict[Place, Where]:
    """Offers as offer_keys gives them: by place, with where their slot ids are read
    (here one slot of columns holding just the key's id)."""
    out: dict[Place, Where] = {}
    for code, schedule, ref, start, length, slot_id in keys:
        assert isinstance(slot_id, str)
        held = SlotColumns.of(
            schedule,
            [
                Slot(
                    id=slot_id, schedule_id=schedule, start=start, end=start + length, status="free"
                )
            ],
        )
        unit = Unit(
            Actor(ref=ref or "", display=None),
            Schedule(id=schedule, actor_refs=(ref or "",)),
            None,
            held,
        )
        offer = (start, ref or "", unit, start.date(), 0, 1, None)
        out[code, schedule, ref, start, length, None] = (offer, ())
    return out


def test_the_tally_counts_each_way_and_keeps_the_first_examples() -> None:
    anyone = cohorts(_rules(), _rules(), date(2026, 3, 10))[0]
    tally = Tally(anyone, ZoneInfo("America/New_York"), examples_wanted=2)
    old = {_offer(0), _offer(1), _offer(30, "sch-2")}
    new = {_offer(1), _offer(2, code="a|follow"), _offer(3), _offer(14)}
    changes = list(set_difference(_found(old), _found(new)))
    assert [d for d, _ in changes] == [LOST, GAINED, GAINED, GAINED, LOST]  # in start order
    for direction, offer in changes:
        tally.add(direction, offer)
    assert (tally.gained, tally.lost) == (3, 2)
    assert tally.schedules["sch-2"] == {LOST: 1}
    assert tally.visit_types["a|follow"] == {GAINED: 1}
    # 12:00 UTC + 14 h is 22:00 in New York: still 10 March; + 30 h is 11 March
    assert tally.days["2026-03-10"] == {GAINED: 3, LOST: 1}
    assert tally.days["2026-03-11"] == {LOST: 1}
    shown = [e.offer for e in tally.examples[GAINED]]
    assert shown == [as_offer_key(_offer(2, code="a|follow")), as_offer_key(_offer(3))]
    assert shown[0] == OfferKey(
        "a|follow",
        "sch-1",
        "Practitioner/1",
        datetime(2026, 3, 10, 14, tzinfo=UTC),
        datetime(2026, 3, 10, 14, 20, tzinfo=UTC),
        ("s",),
    )
    body = tally.as_json()
    assert body["gained"] == 3 and body["by_day"][0] == {"key": "2026-03-10", GAINED: 3, LOST: 1}


def test_replacing_the_file_is_atomic_and_refuses_invalid_text(tmp_path: Path) -> None:
    live = tmp_path / "rules.yaml"
    live.write_text(EXAMPLE_RULES.read_text())
    live.chmod(0o640)
    store = RulesStore(live, check_interval=0)
    before = live.read_bytes()
    with pytest.raises(RulesError) as info:
        store.apply("version: 1\norganization: {}\n", fmt="yaml")
    assert info.value.problems[0].line is not None
    assert live.read_bytes() == before
    assert store.current == load_rules(EXAMPLE_RULES)
    text = yaml.safe_dump({**LIVE, "defaults": {**LIVE["defaults"], "min_lead_minutes": 5}})
    rules = store.apply(text, fmt="yaml")
    assert rules.defaults.min_lead_minutes == 5 and store.current is rules
    assert live.read_text() == text and (live.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["rules.yaml"]  # no temporary left
    other = RulesStore(live, check_interval=0)
    assert other.current.defaults.min_lead_minutes == 5


def test_a_json_rules_file_takes_json_only(tmp_path: Path) -> None:
    live = tmp_path / "rules.json"
    with pytest.raises(RulesError, match="is JSON: send JSON"):
        replace_rules_file(live, EXAMPLE_RULES.read_text(), fmt="yaml")
    assert not live.exists()


def test_offer_keys_are_the_composer_s_offers_from_slot_lists_and_columns() -> None:
    """The preview's keys (read from the selection, no proposal built, offers not put
    in start order) are compose's offers, and the same whether a schedule's slots come
    as a list of slots or as the slot index's columns."""
    rules = load_rules(EXAMPLE_RULES)
    world = example_world()
    lists = full_lists(world.slots)
    columns = {sid: SlotColumns.of(sid, held) for sid, held in lists.items()}
    now = at("2026-03-09 00:00")
    request = FindRequest(start=now, end=now + timedelta(days=3), count=None)
    composed = compose(request, rules, lists, world.schedules, world.actors, now, sign)
    found = offer_keys(request, rules, lists, world.schedules, world.actors, now)
    from_columns = offer_keys(request, rules, columns, world.schedules, world.actors, now)
    assert from_columns.keys() == found.keys()
    keys = {full_key(place, where) for place, where in found.items()}
    assert {full_key(place, where) for place, where in from_columns.items()} == keys
    offers = [as_offer_key(k) for k in keys]
    assert any(len(o.slot_ids) > 1 for o in offers)  # joined slots and other assets too
    assert {(o.visit_type, o.schedule_id, o.start, o.end, o.slot_ids[0]) for o in offers} == {
        (a.service_types[0], a.schedule_ids[0], a.start, a.end, a.slot_ids[0])
        for a in composed.appointments
    }
    used: dict[tuple[object, ...], set[str]] = {}
    for a in composed.appointments:
        used.setdefault((a.service_types[0], a.start, a.end, a.slot_ids[0]), set()).update(
            a.slot_ids
        )
    assert all(
        set(o.slot_ids) <= used[(o.visit_type, o.start, o.end, o.slot_ids[0])] for o in offers
    )
