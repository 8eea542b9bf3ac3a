"""The CapabilityStatement: what this sandbox really supports, per FHIR version and profile.

The plain-r4 profile lists no operations and no Subscription (it has neither), adds
Slot delete and history-type, the Appointment search parameters a client needs to
find the Appointments that reference slots, and says nothing about the ``_count``
cap (R4 has no element for it).
"""

from __future__ import annotations

from typing import Any

from sandbox_ehr import codes

PATCH_FORMATS = ["application/json-patch+json", "application/fhir+json"]


def _op(name: str, definition: str, stu3: bool) -> dict[str, Any]:
    return {"name": name, "definition": {"reference": definition} if stu3 else definition}


def capability_statement(
    flavour: str, software_version: str, date: str, plain: bool = False
) -> dict[str, Any]:
    stu3 = flavour == "stu3"
    count = [] if plain else [("_count", "number")]

    def search(*params: tuple[str, str]) -> list[dict[str, str]]:
        return [{"name": n, "type": t} for n, t in params]

    def res(
        rtype: str,
        interactions: list[str],
        params: list[dict[str, str]] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"type": rtype, "interaction": [{"code": c} for c in interactions]}
        if params:
            out["searchParam"] = params
        out.update(extra)
        return out

    slot_params = search(
        *([("_id", "token")] if plain else []),
        ("schedule", "reference"),
        ("start", "date"),
        ("status", "token"),
        ("_lastUpdated", "date"),
        ("service-type", "token"),
        ("specialty", "token"),
        *count,
    )
    appointment_params = [
        ("_id", "token"),
        ("patient", "reference"),
        ("status", "token"),
        ("date", "date"),
        ("practitioner", "reference"),
    ]
    if plain:
        appointment_params += [
            ("actor", "reference"),
            ("location", "reference"),
            ("slot", "reference"),
            ("_lastUpdated", "date"),
        ]
    resources = [
        res(
            "Slot",
            ["read", "search-type"] + (["update", "delete", "history-type"] if plain else []),
            slot_params,
            searchInclude=["Slot:schedule", "Schedule:actor"],
        ),
        res(
            "Schedule",
            ["read", "search-type"],
            search(
                ("actor", "reference"),
                ("_id", "token"),
                ("service-type", "token"),
                ("specialty", "token"),
                *count,
            ),
            searchInclude=["Schedule:actor"],
        ),
        res("Practitioner", ["read", "search-type"], search(("_id", "token"), ("name", "string"))),
        res(
            "Location",
            ["read", "search-type"],
            search(
                ("_id", "token"), ("name", "string"), ("address", "string"), ("partof", "reference")
            ),
        ),
        res("Device", ["read", "search-type"], search(("_id", "token"))),
        res("Organization", ["read", "search-type"], search(("_id", "token"))),
        res(
            "Appointment",
            ["read", "search-type", "patch"] + ([] if stu3 else ["create", "update"]),
            search(*appointment_params),
        ),
        res(
            "Patient",
            ["read", "search-type", "create"],
            search(
                ("identifier", "token"),
                ("family", "string"),
                ("given", "string"),
                ("birthdate", "date"),
                ("gender", "token"),
            ),
        ),
        res("Coverage", ["read", "create", "update"]),
    ]
    rest: dict[str, Any] = {"mode": "server", "resource": resources}
    if not plain:
        resources.append(res("Subscription", ["read", "search-type", "create", "delete"]))
        ops = [
            _op("hold", f"{codes.IG}/OperationDefinition/appointment-hold", stu3),
            _op("book", f"{codes.IG}/OperationDefinition/appointment-book", stu3),
        ]
        if stu3:
            ops.insert(0, _op("prefetch", f"{codes.IG}/OperationDefinition/slot-prefetch", stu3))
        rest["operation"] = ops
    name = "plain-r4" if plain else flavour
    description = "Synthetic scheduling EHR (plain FHIR R4)" if plain else None
    out: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "id": f"sandbox-ehr-{name}",
        "status": "active",
        "date": date,
        "publisher": "slotsync sandbox EHR",
        "kind": "instance",
        "software": {"name": "slotsync sandbox EHR", "version": software_version},
        "implementation": {
            "description": description or f"Synthetic scheduling EHR ({flavour.upper()})"
        },
        "fhirVersion": "3.0.1" if stu3 else "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": PATCH_FORMATS,
        "rest": [rest],
    }
    if stu3:
        out["acceptUnknown"] = "no"
    return out
