"""Validation of what we emit: fhir.resources models plus the IG profiles' rules."""

from __future__ import annotations

from typing import Any

import httpx
from fhir.resources.STU3.appointment import Appointment as Stu3Appointment
from fhir.resources.STU3.bundle import Bundle as Stu3Bundle
from fhir.resources.STU3.operationoutcome import OperationOutcome as Stu3OperationOutcome

ARGO_APPT = "http://fhir.org/guides/argonaut-scheduling/StructureDefinition/argo-appt"
APPOINTMENT_STATUS = {
    "proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
    "entered-in-error",
}  # fmt: skip
PARTICIPANT_STATUS = {"accepted", "declined", "tentative", "needs-action"}


def assert_argo_appt(resource: dict[str, Any]) -> Stu3Appointment:
    """argo-appt: status, start, end, participant 1..* (actor, status), requestedPeriod 1..1."""
    model = Stu3Appointment.model_validate(resource)
    assert resource["status"] in APPOINTMENT_STATUS
    assert resource["start"] and resource["end"] and resource["start"] < resource["end"]
    assert resource.get("participant"), "argo-appt requires at least one participant"
    for participant in resource["participant"]:
        assert participant.get("actor"), "participant.actor is 1..1"
        assert participant.get("status") in PARTICIPANT_STATUS
    assert len(resource.get("requestedPeriod") or []) == 1, "requestedPeriod is 1..1"
    return model


def assert_avail_bundle(bundle: dict[str, Any]) -> Stu3Bundle:
    """avail-bundle: searchset, total; Appointment match, OperationOutcome outcome, rest include."""
    model = Stu3Bundle.model_validate(bundle)
    assert bundle["type"] == "searchset"
    assert isinstance(bundle.get("total"), int)
    for entry in bundle.get("entry") or []:
        resource = entry["resource"]
        if resource["resourceType"] == "Appointment":
            assert entry["search"]["mode"] == "match"
            assert_argo_appt(resource)
        elif resource["resourceType"] == "OperationOutcome":
            assert entry["search"]["mode"] == "outcome"
        else:  # _include'd participants (the profile's slicing is open)
            assert entry["search"]["mode"] == "include"
    return model


def assert_operation_outcome(body: dict[str, Any], *, code: str | None = None) -> None:
    Stu3OperationOutcome.model_validate(body)
    assert body["issue"], "an OperationOutcome needs at least one issue"
    if code is not None:
        assert body["issue"][0]["code"] == code


def fhir_model(flavour: str, resource_type: str) -> Any:
    """The fhir.resources model of a resource type in one FHIR version."""
    if flavour == "stu3":
        from fhir.resources.STU3 import get_fhir_model_class
    else:
        from fhir.resources.R4B import get_fhir_model_class
    return get_fhir_model_class(resource_type)


def assert_valid(flavour: str, resource: dict[str, Any]) -> None:
    fhir_model(flavour, resource["resourceType"]).model_validate(resource)


def assert_outcome(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """``response`` is an OperationOutcome with this HTTP status (and first issue code)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    fhir_model("stu3", "OperationOutcome").model_validate(body)
    if code is not None:
        assert body["issue"][0]["code"] == code, body
    return body  # type: ignore[no-any-return]
