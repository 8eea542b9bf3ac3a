"""The msgspec page decoder gives exactly what the dict parser gives, faster."""

from __future__ import annotations

import json

import msgspec
import pytest

from app.fhir.fastpage import decode_bundle_page
from app.fhir.parse import FhirParseError, parse_bundle_page
from tests.factories import bundle, practitioner_json, schedule_json, slot, slot_json
from tests.paths import FHIR_EXAMPLES

DATA = FHIR_EXAMPLES


def both(page: dict) -> tuple:
    fast = decode_bundle_page(msgspec.json.encode(page))
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
        {"start": 20300107},
        {"serviceType": "office-visit"},  # not a list of CodeableConcepts
        {"appointmentType": [{"coding": []}]},  # a list where one concept belongs
        {"meta": {"lastUpdated": "yesterday"}},
    ],
)
def test_a_malformed_slot_is_rejected_alone(broken):
    good = slot_json(slot(1))
    bad = {**slot_json(slot(2)), **broken}
    fast = decode_bundle_page(msgspec.json.encode(bundle([good, bad])))
    assert [s.id for s in fast.slots] == [good["id"]]
    assert len(fast.rejected) == 1


def test_repeated_null_and_differing_values_decode_like_the_dict_parser():
    # times and code lists are parsed once per distinct value: repeats, nulls and
    # near-identical values must still come out exactly as the dict parser has them
    one = slot_json(slot(1, specialties=("http://snomed.info/sct|394814009",)))
    same_times = {**slot_json(slot(2)), "start": one["start"], "end": one["end"]}
    utc_start = slot(1).start.strftime("%Y-%m-%dT%H:%M:%SZ")  # same instant, other spelling
    other_offset = {**same_times, "id": "s-utc", "start": utc_start}
    nulls = {
        **slot_json(slot(3)),
        "serviceType": None,
        "specialty": None,
        "appointmentType": None,
        "meta": {"lastUpdated": None},
    }
    typed = {**slot_json(slot(4)), "appointmentType": {"coding": [{"code": "ROUTINE"}]}}
    fast, slow = both(bundle([one, same_times, other_offset, nulls, typed, one]))
    assert fast == slow and not fast.rejected
    assert fast.slots[1].start == fast.slots[2].start == fast.slots[0].start
    assert fast.slots[3].service_types == () and fast.slots[3].last_updated is None
    assert fast.slots[4].appointment_types == ("|ROUTINE",)


def test_a_malformed_value_is_rejected_every_time_it_occurs():
    bad = {**slot_json(slot(1)), "start": "not a time"}
    again = {**slot_json(slot(2)), "start": "not a time"}
    fast = decode_bundle_page(msgspec.json.encode(bundle([bad, again, slot_json(slot(3))])))
    assert [s.id for s in fast.slots] == [slot(3).id] and len(fast.rejected) == 2


@pytest.mark.parametrize("content", [b"{", b'{"resourceType": "Patient"}', b"[]"])
def test_not_a_bundle(content):
    with pytest.raises(FhirParseError):
        decode_bundle_page(content)


def test_includes_repeated_across_pages_decode_like_the_dict_parser_every_time():
    # included resources are remembered by their bytes: a repeat is the same value, a
    # changed one (same id) is decoded anew, a malformed one is rejected on every page
    first = [schedule_json("sch-1", ["Practitioner/p1"]), practitioner_json("p1", "Dr One")]
    moved = [schedule_json("sch-1", ["Practitioner/p2"]), practitioner_json("p1", "Dr Uno")]
    broken = {"resourceType": "Schedule", "id": "sch-2", "actor": []}
    pages = [
        bundle([slot_json(slot(1)), *first, broken]),
        bundle([slot_json(slot(2)), *first, broken]),
        bundle([slot_json(slot(3)), *moved]),
    ]
    for page in pages:
        fast, slow = both(page)
        assert fast == slow
    assert both(pages[1])[0].schedules[0].actor_refs == ("Practitioner/p1",)
    assert both(pages[1])[0].rejected == both(pages[0])[0].rejected != []
    assert both(pages[2])[0].schedules[0].actor_refs == ("Practitioner/p2",)
    assert both(pages[2])[0].actors[0].display == "Dr Uno"


def test_a_slot_whose_fields_come_in_another_order_is_still_a_slot():
    # slots whose resourceType is not written first miss the fast path, not the page
    reordered = {k: v for k, v in reversed(slot_json(slot(1)).items())}
    fast, slow = both(bundle([reordered, slot_json(slot(2))]))
    assert fast == slow and len(fast.slots) == 2
