"""What an EHR supports, read from its CapabilityStatement, whatever its version."""

from __future__ import annotations

import pytest

from app.fhir.ehr_capabilities import EhrCapabilities, parse_capability_statement
from sandbox_ehr.capability import capability_statement


@pytest.mark.parametrize(
    ("flavour", "plain", "expected"),
    [
        ("stu3", False, {"prefetch": True, "hold_and_book": True, "subscriptions": True}),
        ("r4", False, {"prefetch": False, "hold_and_book": True, "subscriptions": True}),
        ("r4", True, {"prefetch": False, "hold_and_book": False, "subscriptions": False}),
    ],
)
def test_the_sandbox_profiles_read_as_what_they_serve(flavour, plain, expected):
    found = parse_capability_statement(capability_statement(flavour, "1", "2026-12-04", plain))
    summary = found.as_json()["summary"]
    assert {k: summary[k] for k in expected} == expected
    assert found.slot_changes_since
    assert found.slot_history is plain  # only the plain-r4 profile keeps Slot history
    assert EhrCapabilities.from_json(found.as_json()) == found  # stored and read back


def test_operations_are_named_by_name_or_by_their_definition():
    statement = {
        "resourceType": "CapabilityStatement",
        "fhirVersion": "4.0.1",
        "rest": [
            {
                "mode": "server",
                "operation": [
                    {"definition": "http://fhir.org/x/OperationDefinition/appointment-hold"},
                    {"name": "$book", "definition": "http://x/book"},
                    "not an operation",
                ],
                "resource": [
                    {
                        "type": "Slot",
                        "interaction": [{"code": "search-type"}, {}],
                        "searchParam": [{"name": "_lastUpdated"}, {"type": "date"}],
                    },
                    {"no": "type"},
                ],
            },
            {"mode": "client", "operation": [{"name": "prefetch"}]},
        ],
    }
    found = parse_capability_statement(statement)
    assert found.operations == {"hold", "book"}  # client mode is not ours to call
    assert found.hold_and_book and not found.prefetch
    assert found.searches("Slot", "_lastUpdated") and found.can("Slot", "search-type")
    assert found.fhir_version == "4.0.1"


@pytest.mark.parametrize("body", [None, [], {"resourceType": "Bundle"}, "metadata"])
def test_anything_but_a_capability_statement_is_refused(body):
    with pytest.raises(ValueError):
        parse_capability_statement(body)
