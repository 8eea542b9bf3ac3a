"""The msgspec page decoder gives exactly what the dict parser gives, faster."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from app.fhir.fastpage import decode_bundle_page
from app.fhir.parse import FhirParseError, parse_bundle_page
from tests.factories import bundle, practitioner_json, schedule_json, slot, slot_json

DATA = Path(__file__).parent / "data"


def both(page: dict) -> tuple:
    fast = decode_bundle_page(orjson.dumps(page))
    slow = parse_bundle_page(page)
    return fast, slow


def test_ig_examples_decode_like_the_dict_parser():
    page = json.loads((DATA / "Bundle-slot-bundle-example.json").read_text())
    fast, slow = both(page)
    assert fast == slow and fast.warnings
    assert fast.rejected  # the IG's example slots end where they start: rejected by both
    single = bundle([json.loads((DATA / "Slot-arg-s-6.json").read_text())])
    fast, slow = both(single)
    assert fast == slow and len(fast.slots) == 1


def test_page_with_includes_next_link_and_codes():
    slots = [slot(i, specialties=("http://snomed.info/sct|394814009",)) for i in range(5)]
    resources = [
        {**slot_json(s), "meta": {"versionId": "3", "lastUpdated": "2030-01-01T10:00:00.120Z"}}
        for s in slots
    ]
    resources += [schedule_json("sch-1", ["Practitioner/p1"]), practitioner_json("p1", "Dr One")]
    page = bundle(resources, next_url="http://ehr/fhir/Slot?page=2")
    fast, slow = both(page)
    assert fast == slow
    assert fast.next_url == "http://ehr/fhir/Slot?page=2" and fast.total == 5
    assert fast.slots[0].version_id == "3" and fast.slots[0].last_updated is not None


@pytest.mark.parametrize(
    "broken",
    [
        {"start": "2030-01-07T09:00:00"},  # no offset
        {"end": slot_json(slot(2))["start"]},  # not after start
        {"schedule": {"display": "no reference"}},
        {"status": 5},
        {"start": "tomorrow"},
    ],
)
def test_a_malformed_slot_is_rejected_alone(broken):
    good = slot_json(slot(1))
    bad = {**slot_json(slot(2)), **broken}
    fast = decode_bundle_page(orjson.dumps(bundle([good, bad])))
    assert [s.id for s in fast.slots] == [good["id"]]
    assert len(fast.rejected) == 1


@pytest.mark.parametrize("content", [b"{", b'{"resourceType": "Patient"}', b"[]"])
def test_not_a_bundle(content):
    with pytest.raises(FhirParseError):
        decode_bundle_page(content)
