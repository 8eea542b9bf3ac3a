"""PATCH bodies: JSON Patch (RFC 6902) and FHIRPath Patch (a ``Parameters`` resource).

The FHIRPath Patch support covers what appointment workflows use: ``replace``,
``add`` and ``delete`` on simple dotted paths (``Appointment.status``,
``Appointment.comment``), ``add`` of a value given as ``value[x]`` or as
``part``s (e.g. a status-reason extension), and ``delete`` of whole elements.
Anything else is reported as a 422 rather than half-applied.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from sandbox_ehr.errors import bad_request, unprocessable
from sandbox_ehr.search import parameter_list


def apply_json_patch(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list):
        raise bad_request("a JSON Patch body is a JSON array of operations")
    try:
        return jsonpatch.apply_patch(resource, operations, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
        raise unprocessable(f"JSON Patch cannot be applied: {exc}", "processing") from exc


def _value(parameter: dict[str, Any]) -> Any:
    for key, val in parameter.items():
        if key.startswith("value"):
            return val
    parts = parameter.get("part")
    if parts:
        return {p["name"]: _value(p) for p in parts if "name" in p}
    raise unprocessable("FHIRPath Patch operation has no value")


def apply_fhirpath_patch(resource: dict[str, Any], parameters: Any) -> dict[str, Any]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise bad_request("a FHIRPath Patch body is a Parameters resource")
    out = copy.deepcopy(resource)
    for op in parameter_list(parameters):
        if op.get("name") != "operation":
            raise bad_request(f"unexpected FHIRPath Patch parameter {op.get('name')!r}")
        parts = {p.get("name"): p for p in parameter_list(op, "part")}
        kind = (parts.get("type") or {}).get("valueCode")
        path = (parts.get("path") or {}).get("valueString")
        if not kind or not path:
            raise bad_request("each FHIRPath Patch operation needs a type and a path")
        segments = path.split(".")
        if segments[0] != resource.get("resourceType") or any(
            not s.isidentifier() for s in segments[1:]
        ):
            raise unprocessable(f"unsupported FHIRPath Patch path {path!r} (simple paths only)")
        target = out
        for seg in segments[1:-1] if kind != "add" else segments[1:]:
            nxt = target.get(seg)
            if not isinstance(nxt, dict):
                raise unprocessable(f"path {path!r} does not exist")
            target = nxt
        if kind == "replace":
            if segments[-1] not in target:
                raise unprocessable(f"cannot replace {path!r}: no such element")
            target[segments[-1]] = _value(parts.get("value") or {})
        elif kind == "delete":
            if len(segments) > 1:
                target.pop(segments[-1], None)
        elif kind == "add":
            name = (parts.get("name") or {}).get("valueString")
            if not name:
                raise bad_request("FHIRPath Patch add needs a name")
            value = _value(parts.get("value") or {})
            existing = target.get(name)
            if isinstance(existing, list):
                existing.append(value)
            elif existing is None and name in ("extension", "participant", "identifier"):
                target[name] = [value]
            else:
                target[name] = value
        else:
            raise unprocessable(f"FHIRPath Patch operation {kind!r} is not supported")
    return out
