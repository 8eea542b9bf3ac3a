"""slotsync's CapabilityStatement: what this server really does, in the EHR's FHIR version.

Kept next to the routes it describes (tests compare it with the live API), so it
can only claim what is there: the Argonaut operations (``$find`` answered here,
``$hold``/``$book`` forwarded), Appointment read/search/patch with the search
parameters and patch formats the write side accepts, Patient create and
Coverage create/update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.fhir.media import FHIR_JSON, JSON_PATCH
from app.fhir.versions import STU3, FhirVersion

IG = "http://fhir.org/guides/argonaut-scheduling"
PATCH_FORMATS = (JSON_PATCH, FHIR_JSON)
SECURITY_SERVICE = "http://hl7.org/fhir/restful-security-service"


@dataclass(frozen=True, slots=True)
class Security:
    """How callers authenticate, as the CapabilityStatement must say."""

    description: str
    services: tuple[str, ...] = ()  # restful-security-service codes, e.g. "OAuth", "SMART-on-FHIR"


def _param(name: str, kind: str, doc: str) -> dict[str, str]:
    return {"name": name, "type": kind, "documentation": doc}


def capability_statement(
    *, fhir: FhirVersion, base_url: str, version: str, date: str, security: Security
) -> dict[str, Any]:
    stu3 = fhir is STU3  # STU3 spells definitions and profiles as References

    def definition(url: str) -> Any:
        return {"reference": url} if stu3 else url

    def profile(resource: dict[str, Any], name: str) -> dict[str, Any]:
        if stu3:
            resource["profile"] = {"reference": f"{IG}/StructureDefinition/{name}"}
        return resource

    appointment = profile(
        {
            "type": "Appointment",
            "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "patch"}],
            "searchParam": [
                _param("patient", "reference", "required: the patient's appointments"),
                _param("status", "token", "appointment status; comma-separated values OR"),
                _param(
                    "date",
                    "date",
                    "appointment start; prefixes ge, le, gt, lt (eq by default); repeat the "
                    "parameter for a range",
                ),
                _param("practitioner", "reference", "a practitioner participant"),
            ],
            "documentation": (
                "PATCH cancels an appointment or releases a hold: it must set status to "
                "cancelled and may add a cancel reason (status-reason extension, "
                "cancelationReason, comment). Held and booked slots leave $find at once."
            ),
        },
        "argo-appt",
    )
    patient = {
        "type": "Patient",
        "interaction": [{"code": "create"}],
        "conditionalCreate": False,
        "documentation": (
            "Registration returns the EHR's existing patient (200) when it has one, without "
            "If-None-Exist; otherwise creates it (201)."
        ),
    }
    coverage = profile(
        {
            "type": "Coverage",
            "interaction": [{"code": "create"}, {"code": "update"}],
            "updateCreate": True,
            "documentation": "Forwarded to the EHR; its refusals come back as OperationOutcome.",
        },
        "argo-coverage",
    )
    operations = [
        {"name": "find", "definition": definition(f"{IG}/OperationDefinition/appointment-find")},
        {"name": "hold", "definition": definition(f"{IG}/OperationDefinition/appointment-hold")},
        {"name": "book", "definition": definition(f"{IG}/OperationDefinition/appointment-book")},
    ]
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": (
            "Argonaut Scheduling Use Case 3: $find is answered from prefetched slots and the "
            "organisation's business rules; everything that changes the EHR is forwarded to it."
        ),
        "security": _security(security),
        "resource": [appointment, patient, coverage],
        "operation": operations,
    }
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "slotsync",
        "kind": "instance",
        "software": {"name": "slotsync", "version": version},
        "implementation": {"description": "slotsync application server", "url": base_url},
        "fhirVersion": fhir.release,
    }
    if stu3:
        statement["acceptUnknown"] = "no"
        statement["implementationGuide"] = [f"{IG}/ImplementationGuide/ig"]
    statement["format"] = ["application/fhir+json", "json"]
    statement["patchFormat"] = list(PATCH_FORMATS)
    statement["rest"] = [rest]
    return statement


def _security(security: Security) -> dict[str, Any]:
    out: dict[str, Any] = {"cors": False, "description": security.description}
    if security.services:
        out["service"] = [
            {"coding": [{"system": SECURITY_SERVICE, "code": code}]} for code in security.services
        ]
    return out
