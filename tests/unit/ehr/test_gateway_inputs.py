"""Parsing what clients send to the write side: operation Parameters, PATCH bodies, searches."""

from __future__ import annotations

import re

import msgspec
import pytest

from app.core.errors import BusinessRuleViolation, InvalidParameter, UnsupportedMediaType
from app.fhir.appointment_search import parse_appointment_search
from app.fhir.media import JSON_PATCH
from app.fhir.operation_params import parse_operation
from app.fhir.patch_body import parse_cancel_patch
from app.fhir.versions import R4, STU3

APPOINTMENT = {
    "resourceType": "Appointment",
    "status": "proposed",
    "start": "2030-01-07T14:00:00Z",
    "end": "2030-01-07T14:15:00Z",
    "participant": [{"actor": {"reference": "Practitioner/p1"}, "status": "needs-action"}],
}


CANCEL = {"op": "replace", "path": "/status", "value": "cancelled"}


def _params(*parameters: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": list(parameters)}


@pytest.mark.parametrize(
    "value",
    [
        {"valueUri": "Appointment/appt-1"},
        {"valueUrl": "http://ehr.example/fhir/Appointment/appt-1"},
        {"valueString": "appt-1"},
        {"valueId": "appt-1"},
        {"valueReference": {"reference": "Appointment/appt-1"}},
    ],
)
def test_appt_id_in_any_of_its_spellings(value: dict) -> None:
    inputs = parse_operation(
        _params({"name": "appt-id", **value}), operation="hold", instance_id=None, version=STU3
    )
    assert inputs.appt_id == "appt-1" and inputs.appt_resource is None


def test_book_inputs_are_normalised() -> None:
    inputs = parse_operation(
        _params(
            {"name": "appt-resource", "resource": APPOINTMENT},
            {"name": "patient-id", "valueUri": "Patient/pat-1"},
            {"name": "patient-id", "valueString": "pat-2"},
            {"name": "patient-id", "valueUri": "Patient/pat-1"},
            {"name": "comment", "valueString": "first visit"},
            {"name": "cancelled-appt-id", "valueUri": "Appointment/old-1"},
        ),
        operation="book",
        instance_id=None,
        version=R4,
    )
    assert inputs.appt_resource == APPOINTMENT
    assert inputs.patient_ids == ("Patient/pat-1", "Patient/pat-2")
    assert (inputs.comment, inputs.cancelled_appt_id) == ("first visit", "old-1")


def test_a_bare_appointment_is_the_appt_resource_and_the_url_id_the_appt_id() -> None:
    bare = parse_operation(APPOINTMENT, operation="book", instance_id=None, version=STU3)
    assert bare.appt_resource == APPOINTMENT
    instance = parse_operation(
        _params({"name": "patient-id", "valueUri": "Patient/p"}),
        operation="book",
        instance_id="appt-9",
        version=STU3,
    )
    assert instance.appt_id == "appt-9"


@pytest.mark.parametrize(
    ("body", "instance", "message"),
    [
        (_params({"name": "appt-id", "valueUri": "a"}), "b", "contradicts the URL"),
        (
            _params({"name": "appt-id", "valueUri": "a"}, {"name": "appt-id", "valueUri": "b"}),
            None,
            "only once",
        ),
        (_params({"name": "comment", "valueString": "x"}), None, "no input parameter 'comment'"),
        (_params({"name": "appt-id", "valueBoolean": True}), None, "needs one non-empty value"),
        (_params({"name": "appt-resource", "valueString": "x"}), None, "needs a resource"),
        (
            _params({"name": "appt-resource", "resource": {**APPOINTMENT, "end": None}}),
            None,
            "missing required element(s) Appointment.end",
        ),
        (
            _params({"name": "appt-resource", "resource": {**APPOINTMENT, "minutesDuration": "x"}}),
            None,
            "is not a valid FHIR STU3 Appointment",
        ),
        ({"resourceType": "Bundle"}, None, "got Bundle"),
    ],
)
def test_bad_hold_inputs_name_the_problem(body: dict, instance: str | None, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_operation(body, operation="hold", instance_id=instance, version=STU3)


def test_cancel_patches_in_both_formats_are_forwarded_unchanged() -> None:
    json_patch = [
        {"op": "test", "path": "/status", "value": "booked"},
        {"op": "replace", "path": "/status", "value": "cancelled"},
        {"op": "add", "path": "/extension/-", "value": {"url": "x", "valueString": "y"}},
        {"op": "add", "path": "/cancelationReason", "value": {"text": "weather"}},
    ]
    patch = parse_cancel_patch(msgspec.json.encode(json_patch), JSON_PATCH)
    assert msgspec.json.decode(patch.content) == json_patch and patch.content_type == JSON_PATCH
    fhirpath = _params(
        {"name": "operation", "part": [
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Appointment.status"},
            {"name": "value", "valueCode": "cancelled"}]},
        {"name": "operation", "part": [
            {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Appointment"},
            {"name": "name", "valueString": "comment"}, {"name": "value", "valueString": "ill"}]},
    )  # fmt: skip
    patch = parse_cancel_patch(
        msgspec.json.encode(fhirpath), "application/fhir+json; charset=utf-8"
    )
    assert msgspec.json.decode(patch.content) == fhirpath
    assert patch.content_type == "application/fhir+json"


@pytest.mark.parametrize(
    ("body", "kind", "error"),
    [
        (
            [{"op": "replace", "path": "/status", "value": "booked"}],
            JSON_PATCH,
            BusinessRuleViolation,
        ),
        (
            [{"op": "replace", "path": "/start", "value": "2030-01-01"}],
            JSON_PATCH,
            BusinessRuleViolation,
        ),
        (
            [{"op": "add", "path": "/comment", "value": "no status change"}],
            JSON_PATCH,
            BusinessRuleViolation,
        ),
        ([{"op": "move", "from": "/a", "path": "/status"}], JSON_PATCH, BusinessRuleViolation),
        (
            [{"op": "replace", "path": "/status\n", "value": "booked"}, CANCEL],
            JSON_PATCH,
            BusinessRuleViolation,
        ),
        ([{"path": "/status", "value": "cancelled"}], JSON_PATCH, InvalidParameter),
        ([], JSON_PATCH, InvalidParameter),
        ({"resourceType": "Appointment"}, "application/fhir+json", InvalidParameter),
        (
            _params(
                {
                    "name": "operation",
                    "part": [
                        {"name": "type", "valueCode": "replace"},
                        {"name": "path", "valueString": "Appointment.start"},
                        {"name": "value", "valueDateTime": "2030-01-01"},
                    ],
                }
            ),
            "application/fhir+json",
            BusinessRuleViolation,
        ),
        (
            [{"op": "replace", "path": "/status", "value": "cancelled"}],
            "text/plain",
            UnsupportedMediaType,
        ),
    ],
)
def test_anything_but_a_cancel_is_refused(body: object, kind: str, error: type) -> None:
    with pytest.raises(error):
        parse_cancel_patch(msgspec.json.encode(body), kind)


OPS = "['add', 'copy', 'move', 'remove', 'replace', 'test']"


@pytest.mark.parametrize(
    ("operation", "message"),
    [
        ({**CANCEL, "op": 5}, f"'op' must be one of {OPS}, not a JSON number"),
        ({**CANCEL, "op": ["replace"]}, f"'op' must be one of {OPS}, not a JSON array"),
        ({**CANCEL, "op": {"replace": 1}}, f"'op' must be one of {OPS}, not a JSON object"),
        ({**CANCEL, "op": "cancel"}, f"'op' must be one of {OPS}, not 'cancel'"),
        (
            {"path": "/status", "value": "cancelled"},
            f"'op' must be one of {OPS}, and it is missing",
        ),
        ({**CANCEL, "path": ["status"]}, "'path' must be a JSON pointer (a string starting"),
        ({**CANCEL, "path": None}, "'path' must be a JSON pointer (a string starting"),
        (
            {"op": "replace", "value": "cancelled"},
            "(a string starting with '/'), and it is missing",
        ),
        ({"op": "move", "from": 5, "path": "/status"}, "'from' must be a JSON pointer"),
        ({**CANCEL, "value": 5}, "the value of /status must be a JSON string, not a JSON number"),
        ({**CANCEL, "value": ["cancelled"]}, "/status must be a JSON string, not a JSON array"),
        ({"op": "test", "path": "/status", "value": {}}, "/status must be a JSON string"),
        (
            {"op": "add", "path": "/cancelationReason", "value": "ill"},
            "the value of /cancelationReason must be a JSON object, not 'ill'",
        ),
        (
            {"op": "add", "path": "/extension/-", "value": [{"url": "x"}]},
            "the value of /extension/- must be a JSON object, not a JSON array",
        ),
        ("replace", "operation 0 must be a JSON object, not 'replace'"),
        (["replace", "/status"], "operation 0 must be a JSON object, not a JSON array"),
        (None, "operation 0 must be a JSON object, not a JSON null"),
    ],
)
def test_wrongly_typed_json_patch_members_are_invalid(operation: object, message: str) -> None:
    with pytest.raises(InvalidParameter, match=re.escape(message)):
        parse_cancel_patch(msgspec.json.encode([operation, CANCEL]), JSON_PATCH)


def _fhirpath(*parts: dict) -> dict:
    return _params({"name": "operation", "part": list(parts)})


TYPE = {"name": "type", "valueCode": "replace"}
STATUS = {"name": "path", "valueString": "Appointment.status"}
CANCELLED = {"name": "value", "valueCode": "cancelled"}
ADD = ({"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Appointment"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            _fhirpath({"name": "type", "valueCode": ["replace"]}, STATUS, CANCELLED),
            "type must be one of ['add', 'insert', 'delete', 'replace', 'move'], not a JSON array",
        ),
        (
            _fhirpath({"name": "type", "part": [{"name": "x"}]}, STATUS, CANCELLED),
            "type must be one of",
        ),
        (_fhirpath(STATUS, CANCELLED), "type must be one of"),
        (
            _fhirpath(TYPE, {"name": "path", "valueString": 5}, CANCELLED),
            "a path (a FHIRPath string) is required, not a JSON number",
        ),
        (
            _fhirpath(TYPE, STATUS, {"name": "value", "valueCode": 5}),
            "a status value must be a code (string), not a JSON number",
        ),
        (
            _fhirpath(*ADD, {"name": "name", "valueString": ["comment"]}, CANCELLED),
            "name must be a string, not a JSON array",
        ),
        (
            _fhirpath(*ADD, {"name": "name", "part": [{"name": "x"}]}, CANCELLED),
            "name must be a string, not a JSON array",
        ),
        (
            _fhirpath(
                *ADD, {"name": "name", "valueString": "status"}, {"name": "value", "valueCode": {}}
            ),
            "a status value must be a code (string), not a JSON object",
        ),
    ],
)
def test_wrongly_typed_fhirpath_patch_parts_are_invalid(body: dict, message: str) -> None:
    with pytest.raises(InvalidParameter, match=re.escape(message)):
        parse_cancel_patch(msgspec.json.encode(body), "application/fhir+json")


def test_appointment_search_is_normalised_for_the_ehr() -> None:
    params = parse_appointment_search(
        [
            ("patient", "1234"),
            ("status", "booked,fulfilled"),
            ("date", "ge2017-01-01"),
            ("date", "lt2018-01-01T00:00:00Z"),
            ("practitioner", "pr-1"),
            ("_format", "json"),
        ]
    )
    assert params == [
        ("patient", "Patient/1234"),
        ("status", "booked,fulfilled"),
        ("date", "ge2017-01-01"),
        ("date", "lt2018-01-01T00:00:00Z"),
        ("practitioner", "Practitioner/pr-1"),
    ]


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("status", "booked")], "patient parameter is required"),
        ([("patient", "a"), ("patient", "b")], "patient parameter is required"),
        ([("patient", "a"), ("date", "sa2017-01-01")], "prefix 'sa' is not supported"),
        ([("patient", "a"), ("date", "2017-01-01T10:00")], "with a time zone"),
        ([("patient", "a"), ("status", "later")], "not an appointment status"),
        ([("patient", "a"), ("practitioner", "Dr Y")], "not a Practitioner reference"),
        ([("patient", "a"), ("_count", "5")], "unsupported search parameter"),
    ],
)
def test_bad_appointment_searches_name_the_problem(pairs: list, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        parse_appointment_search(pairs)
