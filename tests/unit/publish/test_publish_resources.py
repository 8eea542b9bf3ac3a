"""The feed's FHIR resources from plain data (app.publish.resources): valid R4, the
spec's example shapes, its timestamp rule and id rule."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fhir.resources.R4B import get_fhir_model_class as r4_model

from app.cache.publish_queries import FileCount
from app.core.domain import (
    VISIT_TYPE_SYSTEM,
    Actor,
    ContactPoint,
    Position,
    PostalAddress,
    Schedule,
)
from app.core.times import millisecond_instant
from app.publish import resources
from app.publish.feed import SlotFile, parse_file_name, slot_files
from app.publish.offers import week_of
from tests.paths import FIXTURES

EXAMPLES = FIXTURES / "smart-scheduling-links"
# specification.md: YYYY-MM-DDThh:mm:ss(.sss)+zz:zz or Z
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
FHIR_ID = re.compile(r"[A-Za-z0-9.\-]{1,64}")
CONTACT = resources.Contact(
    identifier_system="https://ehr.example.org/fhir/Location",
    phone="555-000-0100",
    location_url="https://clinics.example.org/{location_id}",
    booking_link="https://app.example.org/book?slot={slot_id}&appointment={proposal_id}",
)
NOW = datetime(2026, 12, 4, 18, 0, 0, 123456, tzinfo=UTC)
CLINIC = Actor(
    ref="Location/clinic-1",
    display="Springfield Clinic",
    address="1 Main St, Springfield, MA, 01101",
)
DOCTOR = Actor(
    ref="Practitioner/pr-1", display="Dr One", codes=("http://snomed.info/sct|394802001",)
)


def example_lines(name: str) -> list[dict]:
    return [json.loads(line) for line in (EXAMPLES / name).read_text().splitlines()]


def test_instant_has_a_full_offset_and_milliseconds():
    eastern = timezone(timedelta(hours=-5))
    stamp = millisecond_instant(datetime(2026, 3, 10, 15, 0, tzinfo=eastern))
    assert stamp == "2026-03-10T20:00:00.000Z"
    assert TIMESTAMP.fullmatch(stamp)
    # the spec's inline example breaks its own rule; ours never does
    assert not TIMESTAMP.fullmatch("2021-03-10T15:00:00-05")


def test_ids_are_valid_stable_and_distinct():
    start = datetime(2026, 12, 7, 14, tzinfo=UTC)
    end = start + timedelta(minutes=15)
    office = f"{VISIT_TYPE_SYSTEM}|office-visit"
    a = resources.slot_id(office, "sch-1", start, end)
    assert a == resources.slot_id(office, "sch-1", start.astimezone(UTC), end)
    assert a != resources.slot_id(office, "sch-2", start, end)
    assert a != resources.slot_id(f"{VISIT_TYPE_SYSTEM}|consult", "sch-1", start, end)
    assert resources.schedule_id("sch-1", office) == "sch-1.office-visit"
    odd = resources.schedule_id("x" * 60, "urn:oid:1.2|code with space")
    for value in (a, odd, resources.plain_id("Location/a_b"), resources.plain_id("Location/ok")):
        assert FHIR_ID.fullmatch(value), value
    assert odd == resources.schedule_id("x" * 60, "urn:oid:1.2|code with space")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("1 Main St, Springfield, MA, 01101", (("1 Main St",), "Springfield", "MA", "01101")),
        (
            "1 Main St, Suite 2, Albany, NY, 12207-1234",
            (("1 Main St", "Suite 2"), "Albany", "NY", "12207-1234"),
        ),
        ("Springfield, MA", ((), "Springfield", "MA", None)),
    ],
)
def test_addresses_are_read_back_into_parts(text, parsed):
    address = resources.parse_address(text)
    assert (address.line, address.city, address.state, address.postal_code) == parsed


def test_an_address_that_cannot_be_read_stays_text():
    assert resources.parse_address("somewhere downtown").as_fhir() == {"text": "somewhere downtown"}
    assert resources.state_of(Actor(ref="Location/x", address="somewhere")) == ""


def test_location_is_r4_and_has_the_example_shape():
    location = resources.location(CLINIC, CONTACT, NOW)
    r4_model("Location").model_validate(location)
    shape = set().union(*(line.keys() for line in example_lines("locations.ndjson")))
    assert shape <= set(location)
    assert location["telecom"] == [
        {"system": "phone", "value": "555-000-0100"},
        {"system": "url", "value": "https://clinics.example.org/clinic-1"},
    ]
    assert location["meta"]["lastUpdated"] == "2026-12-04T18:00:00.123Z"


def test_location_states_what_the_ehr_says_of_it():
    """The EHR's address parts, phone and url, and position; the configured phone and
    url stand in only for a system the EHR gives none of; other systems stay out."""
    clinic = replace(
        CLINIC,
        address="1 Main St, Suite 2, Springfield, Hampden County, MA, 01101",
        postal_address=PostalAddress(
            line=("1 Main St", "Suite 2"),
            city="Springfield",
            district="Hampden County",
            state="MA",
            postal_code="01101",
            country="US",
        ),
        telecom=(
            ContactPoint("email", "desk@clinic.example", "work"),
            ContactPoint("phone", "413-555-0101", "work"),
            ContactPoint("url", "https://clinic.example/springfield"),
            ContactPoint("phone", "413-555-0102", "mobile"),
        ),
        position=Position(42.101483, -72.589811),
    )
    location = resources.location(clinic, CONTACT, NOW)
    r4_model("Location").model_validate(location)
    assert location["address"] == {
        "line": ["1 Main St", "Suite 2"],
        "city": "Springfield",
        "district": "Hampden County",
        "state": "MA",
        "postalCode": "01101",
        "country": "US",
    }
    assert location["telecom"] == [
        {"system": "phone", "value": "413-555-0101"},
        {"system": "url", "value": "https://clinic.example/springfield"},
        {"system": "phone", "value": "413-555-0102"},
    ]
    assert location["position"] == {"latitude": 42.101483, "longitude": -72.589811}
    assert resources.state_of(clinic) == "MA"

    phone_only = replace(clinic, telecom=(ContactPoint("phone", "413-555-0101"),))
    assert resources.location(phone_only, CONTACT, NOW)["telecom"] == [
        {"system": "phone", "value": "413-555-0101"},
        {"system": "url", "value": "https://clinics.example.org/clinic-1"},
    ]
    url_only = replace(clinic, telecom=(ContactPoint("url", "https://clinic.example"),))
    assert resources.location(url_only, CONTACT, NOW)["telecom"] == [
        {"system": "url", "value": "https://clinic.example"},
        {"system": "phone", "value": "555-000-0100"},
    ]
    # parts in the EHR's own words win over reading the one line back
    elsewhere = replace(clinic, postal_address=PostalAddress(city="Albany", state="NY"))
    assert resources.location(elsewhere, CONTACT, NOW)["address"] == {
        "city": "Albany",
        "state": "NY",
    }
    assert resources.state_of(elsewhere) == "NY"
    # no position, no parts: as before, from the one line, and no position at all
    plain = resources.location(CLINIC, CONTACT, NOW)
    assert "position" not in plain
    assert plain["address"]["postalCode"] == "01101"


def test_schedule_and_practitioner_role_are_r4_with_the_example_shape():
    schedule = resources.schedule(
        "sch-1.office-visit",
        Schedule(id="sch-1", actor_refs=("Practitioner/pr-1", "Location/clinic-1")),
        f"{VISIT_TYPE_SYSTEM}|office-visit",
        "Office visit",
        CLINIC,
        [DOCTOR],
        NOW,
    )
    r4_model("Schedule").model_validate(schedule)
    example = example_lines("schedules.ndjson")[0]
    assert set(example) - {"extension"} <= set(schedule)
    assert schedule["actor"][0] == {
        "reference": "Location/clinic-1",
        "display": "Springfield Clinic",
    }
    assert schedule["actor"][1]["reference"] == "PractitionerRole/pr-1"
    assert schedule["serviceType"][0]["coding"][0] == {
        "system": VISIT_TYPE_SYSTEM,
        "code": "office-visit",
        "display": "Office visit",
    }
    role = resources.practitioner_role(DOCTOR, CLINIC.ref, NOW)
    r4_model("PractitionerRole").model_validate(role)
    assert role["location"] == [{"reference": "Location/clinic-1"}]


def test_slot_lines_are_r4_json_with_the_example_extensions():
    lines = resources.SlotLines(CONTACT)
    start = millisecond_instant(datetime(2026, 12, 7, 14, tzinfo=UTC))
    end = millisecond_instant(datetime(2026, 12, 7, 14, 15, tzinfo=UTC))
    now = millisecond_instant(NOW)
    free = json.loads(lines.line("o1", "sch-1.office-visit", start, end, "free", "AQ-_9z", now))
    r4_model("Slot").model_validate(free)
    example = example_lines("slots-2021-W09.ndjson")[0]
    assert set(example) <= set(free)
    assert [e["url"] for e in free["extension"]] == [
        resources.BOOKING_DEEP_LINK,
        resources.BOOKING_PHONE,
    ]
    assert free["extension"][0]["valueUrl"] == (
        "https://app.example.org/book?slot=o1&appointment=AQ-_9z"
    )
    for stamp in (free["start"], free["end"], free["meta"]["lastUpdated"]):
        assert TIMESTAMP.fullmatch(stamp)
    busy = json.loads(lines.line("o1", "s", start, end, "busy", "x", now))
    r4_model("Slot").model_validate(busy)
    assert "extension" not in busy and busy["status"] == "busy"


def test_ids_that_would_need_escaping_are_refused():
    lines = resources.SlotLines(CONTACT)
    stamp = millisecond_instant(NOW)
    with pytest.raises(ValueError):
        lines.line("o1", "s", stamp, stamp, "free", 'a"b', stamp)


def test_without_link_or_phone_a_slot_has_no_extension():
    lines = resources.SlotLines(resources.Contact(identifier_system="urn:x"))
    start = millisecond_instant(datetime(2026, 12, 7, 14, tzinfo=UTC))
    assert "extension" not in json.loads(lines.line("o1", "s", start, start, "free", "x", start))


def test_file_names_round_trip_and_files_are_split_by_size():
    assert week_of(datetime(2026, 12, 31, 23, tzinfo=UTC))[0] == "2026-W53"
    assert week_of(datetime(2027, 1, 4, tzinfo=UTC)) == (
        "2027-W01",
        datetime(2027, 1, 4, tzinfo=UTC),
    )
    counts = [
        FileCount("MA", "2026-W50", 9),
        FileCount("NY", "2026-W50", 3),
        FileCount("", "2026-W51", 3),
    ]
    split = slot_files(counts, 5)
    assert [(f.name, states) for f, states in split] == [
        ("slots-2026-W50-1.ndjson", ["MA", "NY"]),
        ("slots-2026-W50-2.ndjson", ["MA", "NY"]),
        ("slots-2026-W50-3.ndjson", ["MA", "NY"]),
        ("slots-2026-W51-1.ndjson", []),
    ]
    for slot_file, _ in split:
        assert parse_file_name(slot_file.name) == slot_file
    assert parse_file_name("slots-2026-W50-1.ndjson") == SlotFile("2026-W50", 1)
