"""Inputs of ``Appointment/$hold`` and ``$book`` (a ``Parameters`` body, or a bare Appointment).

The IG's operation definitions type ``appt-id``, ``patient-id`` and
``cancelled-appt-id`` as ``uri``; clients also send them as ``valueUrl``,
``valueString``, ``valueId`` or a ``valueReference``, and with or without the
``Appointment/`` prefix, so all of those are accepted. A bare Appointment body is
``appt-resource`` when it is the only input (the IG allows it). Anything else is
a 400 that names the parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.core.errors import InvalidParameter
from app.core.ids import is_fhir_id

from .validate import check_resource, require_elements
from .versions import FhirVersion

_VALUE_KEYS = ("valueUri", "valueUrl", "valueString", "valueId", "valueCanonical", "valueCode")
_ALLOWED = {
    "hold": {"appt-id", "appt-resource"},
    "book": {"appt-id", "appt-resource", "patient-id", "comment", "cancelled-appt-id"},
}
_SINGLE = {"appt-id", "appt-resource", "comment", "cancelled-appt-id"}


@dataclass(frozen=True, slots=True)
class OperationInput:
    """What the caller asked to hold or book."""

    appt_id: str | None = None  # a $find token or an EHR Appointment id, prefix removed
    appt_resource: dict[str, Any] | None = None
    patient_ids: tuple[str, ...] = ()  # "Patient/<id>"
    comment: str | None = None
    cancelled_appt_id: str | None = None  # EHR Appointment id (reschedule)


def strip_reference(value: str, resource_type: str) -> str:
    """``Appointment/x``, ``http://host/fhir/Appointment/x`` or ``x`` -> ``x``."""
    marker = f"{resource_type}/"
    if marker in value:
        value = value.rsplit(marker, 1)[1]
    return value.split("/_history/", 1)[0]


def fhir_id(value: str, resource_type: str, name: str) -> str:
    """A bare, valid FHIR id from a reference-ish string; InvalidParameter otherwise."""
    rid = strip_reference(value.strip(), resource_type)
    if not is_fhir_id(rid):
        raise InvalidParameter(
            f"{name}: {value!r} is not a {resource_type} reference or id", expression=name
        )
    return rid


def _scalar(parameter: Mapping[str, Any], name: str) -> str:
    values = [parameter[k] for k in _VALUE_KEYS if k in parameter]
    reference = parameter.get("valueReference")
    if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
        values.append(reference["reference"])
    if len(values) != 1 or not isinstance(values[0], str) or not values[0].strip():
        raise InvalidParameter(f"parameter {name} needs one non-empty value", expression=name)
    return values[0].strip()


def _collect(body: Mapping[str, Any], operation: str) -> dict[str, list[Any]]:
    # none at all is fine on an instance ($hold of Appointment/[id]); parse_operation
    # says what is missing otherwise
    params = body.get("parameter", [])
    if not isinstance(params, list):
        raise InvalidParameter("Parameters.parameter must be a list", expression="parameter")
    out: dict[str, list[Any]] = {}
    for n, parameter in enumerate(params):
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise InvalidParameter(f"Parameters.parameter[{n}] has no name")
        name = parameter["name"]
        if name not in _ALLOWED[operation]:
            raise InvalidParameter(
                f"${operation} has no input parameter {name!r}; "
                f"expected {', '.join(sorted(_ALLOWED[operation]))}",
                expression=f"Parameters.parameter[{n}]",
            )
        if name == "appt-resource":
            if "resource" not in parameter:
                raise InvalidParameter(
                    "parameter appt-resource needs a resource", expression="appt-resource"
                )
            value: Any = parameter["resource"]
        else:
            value = _scalar(parameter, name)
        out.setdefault(name, []).append(value)
    for name in _SINGLE:
        if len(out.get(name, ())) > 1:
            raise InvalidParameter(f"parameter {name} may be given only once", expression=name)
    return out


def check_appointment(
    version: FhirVersion, resource: Any, label: str = "appt-resource"
) -> dict[str, Any]:
    """A client Appointment: valid FHIR, and the argo-appt elements we need to book it."""
    check_resource(version, resource, "Appointment", where=label)
    require_elements(resource, label, "start", "end", "participant", "participant.actor")
    return resource


def _participating_patients(resource: dict[str, Any] | None) -> tuple[str, ...]:
    """The Patients an ``appt-resource`` names as participants: a client that books by
    sending the whole Appointment says who it is for there, not in ``patient-id``."""
    found = []
    for participant in (resource or {}).get("participant") or ():
        actor = participant.get("actor") if isinstance(participant, dict) else None
        ref = actor.get("reference") if isinstance(actor, dict) else None
        if isinstance(ref, str) and (ref.startswith("Patient/") or "/Patient/" in ref):
            found.append(f"Patient/{fhir_id(ref, 'Patient', 'appt-resource.participant')}")
    return tuple(found)


def parse_operation(
    body: Any, *, operation: str, instance_id: str | None, version: FhirVersion
) -> OperationInput:
    """Validate and normalise the inputs of ``$hold`` (operation ``hold``) or ``$book``."""
    if not isinstance(body, dict):
        raise InvalidParameter(f"${operation} expects a Parameters resource or an Appointment")
    kind = body.get("resourceType")
    if kind == "Appointment":
        inputs: dict[str, list[Any]] = {"appt-resource": [body]}
    elif kind == "Parameters":
        inputs = _collect(body, operation)
    else:
        raise InvalidParameter(
            f"${operation} expects a Parameters resource or an Appointment, got "
            f"{kind or 'no resourceType'}"
        )
    appt_ids = [strip_reference(v, "Appointment") for v in inputs.get("appt-id", ())]
    if instance_id is not None:
        if appt_ids and appt_ids[0] != instance_id:
            raise InvalidParameter(
                f"appt-id {appt_ids[0]!r} contradicts the URL's Appointment/{instance_id}",
                expression="appt-id",
            )
        appt_ids = [instance_id]
    resources = inputs.get("appt-resource", [])
    if len(appt_ids) + len(resources) != 1:
        raise InvalidParameter(
            f"${operation} needs exactly one of appt-id (or Appointment/[id]/${operation}) "
            "and appt-resource"
        )
    resource = check_appointment(version, resources[0]) if resources else None
    patients = tuple(
        f"Patient/{fhir_id(v, 'Patient', 'patient-id')}" for v in inputs.get("patient-id", ())
    ) + _participating_patients(resource)
    cancelled = inputs.get("cancelled-appt-id")
    comments = inputs.get("comment")
    return OperationInput(
        appt_id=appt_ids[0] if appt_ids else None,
        appt_resource=resource,
        patient_ids=tuple(dict.fromkeys(patients)),
        comment=comments[0] if comments else None,
        cancelled_appt_id=(
            fhir_id(cancelled[0], "Appointment", "cancelled-appt-id") if cancelled else None
        ),
    )
