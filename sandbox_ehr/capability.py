"""The CapabilityStatement: what this sandbox really supports, per FHIR version."""

from __future__ import annotations

from typing import Any

from sandbox_ehr import codes

PATCH_FORMATS = ["application/json-patch+json", "application/fhir+json"]


def _op(name: str, definition: str, stu3: bool) -> dict[str, Any]:
    return {"name": name, "definition": {"reference": definition} if stu3 else definition}


def capability_statement(flavour: str, software_version: str, date: str) -> dict[str, Any]:
    stu3 = flavour == "stu3"

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
        ("schedule", "reference"),
        ("start", "date"),
        ("status", "token"),
        ("_lastUpdated", "date"),
        ("service-type", "token"),
        ("specialty", "token"),
        ("_count", "number"),
    )
    resources = [
        res(
            "Slot",
            ["read", "search-type"],
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
                ("_count", "number"),
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
            search(
                ("_id", "token"),
                ("patient", "reference"),
                ("status", "token"),
                ("date", "date"),
                ("practitioner", "reference"),
            ),
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
        res("Subscription", ["read", "search-type", "create", "delete"]),
    ]
    ops = [
        _op("hold", f"{codes.IG}/OperationDefinition/appointment-hold", stu3),
        _op("book", f"{codes.IG}/OperationDefinition/appointment-book", stu3),
    ]
    if stu3:
        ops.insert(0, _op("prefetch", f"{codes.IG}/OperationDefinition/slot-prefetch", stu3))
    out: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "id": f"sandbox-ehr-{flavour}",
        "status": "active",
        "date": date,
        "publisher": "slotsync sandbox EHR",
        "kind": "instance",
        "software": {"name": "slotsync sandbox EHR", "version": software_version},
        "implementation": {"description": f"Synthetic scheduling EHR ({flavour.upper()})"},
        "fhirVersion": "3.0.1" if stu3 else "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": PATCH_FORMATS,
        "rest": [{"mode": "server", "resource": resources, "operation": ops}],
    }
    if stu3:
        out["acceptUnknown"] = "no"
    return out
