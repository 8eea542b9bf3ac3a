import json
from datetime import UTC, datetime

import pytest

from app.fhir.parse import FhirParseError, parse_bundle_page, parse_slot
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
