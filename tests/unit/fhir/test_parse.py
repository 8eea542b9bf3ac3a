import json
from datetime import UTC, date, datetime

import pytest

from app.core.domain import ContactPoint, Position, PostalAddress
from app.fhir.fastpage import decode_bundle_page
from app.fhir.parse import FhirParseError, parse_actor, parse_bundle_page, parse_slot
from sandbox_ehr.fhir_render import Renderer
from sandbox_ehr.org import generate
from tests.paths import FHIR_EXAMPLES


def test_ig_slot_example_parses():
    data = json.loads((FHIR_EXAMPLES / "Slot-arg-s-6.json").read_text())
    slot = parse_slot(data)
    assert slot.schedule_id == data["schedule"]["reference"].split("/")[1]
    assert slot.start.tzinfo is UTC
    assert slot.status == data["status"]
    assert slot.service_types == tuple(
        f"{c.get('system', '')}|{c['code']}" for st in data["serviceType"] for c in st["coding"]
    )


def test_ig_slot_bundle_example_parses_every_slot():
    data = json.loads((FHIR_EXAMPLES / "Bundle-slot-bundle-example.json").read_text())
    page = parse_bundle_page(data)
    # The IG example's end times carry bogus offsets (+08:15) that put most ends before
    # their starts: those slots are rejected with a reason, the rest are kept.
    assert len(page.slots) + len(page.rejected) == data["total"] == 8
    assert all("end is not after start" in r for r in page.rejected)
    assert all(s.end > s.start for s in page.slots)
    assert page.warnings  # the example carries an OperationOutcome entry


def test_local_offsets_normalised():
    slot = parse_slot(
        {
            "resourceType": "Slot",
            "id": "a",
            "schedule": {"reference": "https://ehr/fhir/Schedule/x"},
            "status": "free",
            "start": "2030-01-07T09:00:00-05:00",
            "end": "2030-01-07T09:15:00-05:00",
        }
    )
    assert slot.start == datetime(2030, 1, 7, 14, 0, tzinfo=UTC)
    assert slot.schedule_id == "x"


@pytest.mark.parametrize(
    "patch",
    [
        {"start": "not a date"},
        {"start": "2030-01-07T09:00:00"},
        {"end": "2030-01-07T08:00:00-05:00"},
        {"schedule": None},
        {"id": None},
    ],
)
def test_broken_slots_raise_typed_errors(patch):
    res = {
        "resourceType": "Slot",
        "id": "a",
        "schedule": {"reference": "Schedule/x"},
        "status": "free",
        "start": "2030-01-07T09:00:00-05:00",
        "end": "2030-01-07T09:15:00-05:00",
        **patch,
    }
    with pytest.raises(FhirParseError):
        parse_slot(res)


# -- a Location's address parts, telecom and position --------------------------------


@pytest.mark.parametrize("flavour", ["stu3", "r4"])
def test_a_location_keeps_its_address_telecom_and_position(flavour):
    org, _ = generate(11, 600, date(2026, 11, 26), 7)
    renderer = Renderer(org, flavour, 0)
    for clinic in org.clinics:
        actor = parse_actor(renderer.clinic(clinic))
        assert actor.postal_address == PostalAddress(
            line=(clinic.line,),
            city=clinic.city,
            district=clinic.county,
            state=clinic.state,
            postal_code=clinic.postal_code,
            country="US",
        )
        assert actor.telecom == (
            ContactPoint("phone", clinic.phone, "work"),
            ContactPoint("url", clinic.website, "work"),
            ContactPoint("email", clinic.email, "work"),
        )
        assert actor.position == Position(clinic.latitude, clinic.longitude)
        assert actor.address == f"{clinic.line}, {clinic.city}, {clinic.county}, " + (
            f"{clinic.state}, {clinic.postal_code}"
        )
    # a room states its building's address, and no telecom or position of its own
    room = parse_actor(renderer.room(org.rooms[0]))
    assert room.postal_address is not None and room.postal_address.city == org.clinics[0].city
    assert (room.telecom, room.position) == ((), None)


def test_a_location_without_them_has_none():
    actor = parse_actor({"resourceType": "Location", "id": "x", "name": "X"})
    assert (actor.postal_address, actor.telecom, actor.position) == (None, (), None)
    text_only = parse_actor(
        {"resourceType": "Location", "id": "x", "address": {"text": "behind the old bank"}}
    )
    assert text_only.postal_address is None and text_only.address == "behind the old bank"


def test_unusable_parts_are_left_out_and_the_location_kept():
    actor = parse_actor(
        {
            "resourceType": "Location",
            "id": "x",
            "name": "X",
            "address": {"line": "1 Main St", "city": "Springfield", "state": 7},
            "telecom": [
                {"system": "phone", "value": "413-555-0101", "use": "old"},
                {"system": "phone"},
                {"value": "no system"},
                "not a contact point",
                {"system": "phone", "value": "413-555-0102"},
            ],
            "position": {"latitude": "42.1", "longitude": -72.5},
        }
    )
    assert actor.postal_address == PostalAddress(city="Springfield")
    assert actor.telecom == (ContactPoint("phone", "413-555-0102"),)
    assert actor.position is None
    for position in ({"latitude": 91, "longitude": 0}, {"latitude": True, "longitude": 0}, []):
        res = {"resourceType": "Location", "id": "x", "position": position}
        assert parse_actor(res).position is None
    whole = {"resourceType": "Location", "id": "x", "position": {"latitude": 42, "longitude": -72}}
    assert parse_actor(whole).position == Position(42.0, -72.0)


def test_the_fast_page_decoder_keeps_them_too():
    location = {
        "resourceType": "Location",
        "id": "clinic-1",
        "telecom": [{"system": "url", "value": "https://clinic.example"}],
        "address": {"line": ["1 Main St"], "city": "Springfield", "state": "MA"},
        "position": {"latitude": 42.1015, "longitude": -72.5898},
    }
    page = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": location}]}
    fast = decode_bundle_page(json.dumps(page).encode()).actors
    assert fast == parse_bundle_page(page).actors == [parse_actor(location)]
    assert fast[0].position == Position(42.1015, -72.5898)
