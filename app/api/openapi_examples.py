"""Request bodies and search parameters of every write and search, as the OpenAPI document
shows them: what an integrator copies first, so each example is a request this server
accepts in shape (the test suite validates them with fhir.resources and sends each one).

The examples are in the IG's FHIR version (STU3); an R4 deployment takes the same
requests in R4 shapes (``Coverage.class`` for ``grouping``), as ``/fhir/metadata`` says.
"""

from __future__ import annotations

from typing import Any

from app.fhir.media import LEGACY_FHIR_JSON, PLAIN_JSON

from .responses import FHIR_JSON

JSON_PATCH = "application/json-patch+json"
PROPOSAL_SYSTEM = "urn:slotsync:proposal"

# A $find offer's identifier value (a signed proposal token; this one is expired).
OFFER_TOKEN = "p-example-offer-token"

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
    "identifier": [
        {"system": "http://hospital.smarthealthit.org", "value": "1032702"},
    ],
    "active": True,
    "name": [{"family": "Shaw", "given": ["Amy", "V"]}],
    "telecom": [
        {"system": "phone", "value": "555-555-5555", "use": "home"},
        {"system": "email", "value": "amy.shaw@example.com"},
    ],
    "gender": "female",
    "birthDate": "1987-02-20",
    "address": [{"line": ["49 Meadow St"], "city": "Mounds", "state": "OK", "postalCode": "74047"}],
}

COVERAGE: dict[str, Any] = {
    "resourceType": "Coverage",
    "meta": {
        "profile": ["http://fhir.org/guides/argonaut-scheduling/StructureDefinition/argo-coverage"]
    },
    "status": "active",
    "type": {
        "coding": [
            {
                "system": "http://hl7.org/fhir/v3/ActCode",
                "code": "HIP",
                "display": "health insurance plan policy",
            }
        ]
    },
    "subscriber": {"reference": "Patient/pat-1"},
    "subscriberId": "DZW9200000000",
    "beneficiary": {"reference": "Patient/pat-1"},
    "relationship": {
        "coding": [{"system": "http://hl7.org/fhir/policyholder-relationship", "code": "self"}]
    },
    "period": {"start": "2026-01-01"},
    "payor": [{"display": "Anthem Blue Cross of California"}],
}

CLIENT_APPOINTMENT: dict[str, Any] = {
    "resourceType": "Appointment",
    "meta": {
        "profile": ["http://fhir.org/guides/argonaut-scheduling/StructureDefinition/argo-appt"]
    },
    "status": "proposed",
    "serviceType": [
        {
            "coding": [
                {
                    "system": "http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type",
                    "code": "office-visit",
                }
            ]
        }
    ],
    "start": "2030-01-07T09:00:00Z",
    "end": "2030-01-07T09:20:00Z",
    "slot": [{"reference": "Slot/sch-pr-1-20300107-0900"}],
    "participant": [
        {"actor": {"reference": "Practitioner/pr-1"}, "required": "required", "status": "accepted"},
        {"actor": {"reference": "Patient/pat-1"}, "required": "required", "status": "needs-action"},
    ],
}


def _parameters(*parameters: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(parameters)}


HOLD_EXAMPLES: dict[str, dict[str, Any]] = {
    "offer": {
        "summary": "Hold an offer from $find by its identifier",
        "value": _parameters({"name": "appt-id", "valueString": OFFER_TOKEN}),
    },
    "client-built": {
        "summary": "Hold a client-built Argonaut Appointment",
        "value": _parameters({"name": "appt-resource", "resource": CLIENT_APPOINTMENT}),
    },
}

BOOK_EXAMPLES: dict[str, dict[str, Any]] = {
    "hold": {
        "summary": "Book a hold made here (its EHR id) for a patient",
        "value": _parameters(
            {"name": "appt-id", "valueString": "appt-123"},
            {"name": "patient-id", "valueString": "pat-1"},
            {"name": "comment", "valueString": "Prefers a morning call-back"},
        ),
    },
    "offer": {
        "summary": "Book an offer from $find directly",
        "value": _parameters(
            {"name": "appt-id", "valueString": OFFER_TOKEN},
            {"name": "patient-id", "valueString": "pat-1"},
        ),
    },
    "reschedule": {
        "summary": "Reschedule: book an offer and cancel the old appointment",
        "value": _parameters(
            {"name": "appt-id", "valueString": OFFER_TOKEN},
            {"name": "patient-id", "valueString": "pat-1"},
            {"name": "cancelled-appt-id", "valueString": "appt-122"},
        ),
    },
}

# On an instance (Appointment/[id]/$hold, /$book) the URL names the appointment.
HOLD_INSTANCE_EXAMPLES: dict[str, dict[str, Any]] = {
    "hold": {
        "summary": "Hold the offer or appointment the URL names",
        "value": {"resourceType": "Parameters"},
    },
}
BOOK_INSTANCE_EXAMPLES: dict[str, dict[str, Any]] = {
    "book": {
        "summary": "Book the hold or offer the URL names, for a patient",
        "value": _parameters(
            {"name": "patient-id", "valueString": "pat-1"},
            {"name": "comment", "valueString": "Prefers a morning call-back"},
        ),
    },
}

_FIND_WINDOW = (
    {"name": "start", "valueDateTime": "2030-01-07T00:00:00Z"},
    {"name": "end", "valueDateTime": "2030-01-08T00:00:00Z"},
)
FIND_EXAMPLES: dict[str, dict[str, Any]] = {
    "tokens": {
        "summary": "The IG's token strings",
        "value": _parameters(
            *_FIND_WINDOW,
            {
                "name": "visit-type",
                "valueString": "http://fhir.org/guides/argonaut-scheduling/CodeSystem/"
                "visit-type|office-visit",
            },
            {"name": "patient-reference", "valueString": "Patient/pat-1"},
            {"name": "_count", "valueInteger": 5},
        ),
    },
    "codings": {
        "summary": "Typed R4 values: a Coding and a Reference",
        "value": _parameters(
            *_FIND_WINDOW,
            {
                "name": "visit-type",
                "valueCoding": {
                    "system": "http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type",
                    "code": "office-visit",
                },
            },
            {"name": "practitioner", "valueReference": {"reference": "Practitioner/pr-1"}},
        ),
    },
}

CANCEL_EXAMPLES: dict[str, dict[str, dict[str, Any]]] = {
    JSON_PATCH: {
        "cancel": {
            "summary": "Cancel (JSON Patch)",
            "value": [{"op": "replace", "path": "/status", "value": "cancelled"}],
        }
    },
    FHIR_JSON: {
        "cancel": {
            "summary": "Cancel with a reason (FHIRPath Patch)",
            "value": _parameters(
                {
                    "name": "operation",
                    "part": [
                        {"name": "type", "valueCode": "replace"},
                        {"name": "path", "valueString": "Appointment.status"},
                        {"name": "value", "valueCode": "cancelled"},
                    ],
                }
            ),
        }
    },
}

_OBJECT = {"type": "object", "required": ["resourceType"]}


def request_body(
    examples: dict[str, dict[str, Any]], description: str, *, required: bool = True
) -> dict[str, Any]:
    """An ``openapi_extra`` for a route taking a FHIR resource, in either JSON type."""
    media = {"schema": _OBJECT, "examples": examples}
    return {
        "requestBody": {
            "required": required,
            "description": description,
            "content": {
                FHIR_JSON: media,
                PLAIN_JSON: media,
                LEGACY_FHIR_JSON: media,
            },
        }
    }


def resource_body(resource: dict[str, Any], summary: str) -> dict[str, Any]:
    return request_body({"example": {"summary": summary, "value": resource}}, summary)


def patch_body() -> dict[str, Any]:
    content = {
        JSON_PATCH: {"schema": {"type": "array"}, "examples": CANCEL_EXAMPLES[JSON_PATCH]},
        FHIR_JSON: {"schema": _OBJECT, "examples": CANCEL_EXAMPLES[FHIR_JSON]},
    }
    return {
        "requestBody": {
            "required": True,
            "description": "set status to cancelled (a hold is released the same way)",
            "content": content,
        }
    }


def query_parameter(
    name: str, description: str, example: str, *, required: bool = False, **schema: object
) -> dict[str, Any]:
    """A documented query parameter (string-typed, as FHIR search parameters arrive)."""
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "example": example,
        "schema": {"type": "string", **schema},
    }


APPOINTMENT_SEARCH_PARAMETERS = [
    query_parameter(
        "patient", "Patient/<id> or <id>: whose appointments", "Patient/pat-1", required=True
    ),
    query_parameter("status", "booked, pending, cancelled...; comma = OR", "booked"),
    query_parameter("date", "ge/le/gt/lt + FHIR date; repeat for a range", "ge2030-01-01"),
    query_parameter("practitioner", "Practitioner/<id>", "Practitioner/pr-1"),
]
