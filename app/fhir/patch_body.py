"""``PATCH Appointment/{id}`` bodies: cancel or release a hold, and nothing else.

Both formats the IG names are accepted: JSON Patch (``application/json-patch+json``,
an array of operations) and FHIRPath Patch (a ``Parameters`` resource). The patch
must set ``status`` to ``cancelled``; besides that it may only carry a cancel
reason (the Argonaut ``status-reason`` extension, R4 ``cancelationReason``, a
``comment``) or a participant status. Any other change (a new time, booking a
proposed appointment) would bypass the slot claims that prevent double booking,
so it is refused with a 422 that points at ``$hold``/``$book``.

The checked body is forwarded to the EHR as given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from app.core.errors import BusinessRuleViolation, InvalidParameter, UnsupportedMediaType
from app.fhir.media import FHIR_JSON, JSON_PATCH, JSON_TYPES, media_type

CANCELLED = "cancelled"
STATUS_REASON_URL = (
    "http://fhir.org/guides/argonaut-scheduling/StructureDefinition/extension-status-reason"
)

_JSON_PATCH_OPS = {"add", "replace", "remove", "test", "copy", "move"}
_JSON_PATCH_PATHS = re.compile(
    r"^/(status|comment|extension(/(\d+|-)(/.*)?)?|cancelationReason(/.*)?"
    r"|participant/\d+/status)$"
)
_FHIRPATH_PATHS = re.compile(
    r"^Appointment(\.(status|comment|cancelationReason|extension)(\.[A-Za-z]+)*"
    r"|\.participant(\[\d+\])?\.status)?$"
)
_FHIRPATH_TYPES = ("add", "insert", "delete", "replace", "move")
_FHIRPATH_ADD_NAMES = {"extension", "comment", "cancelationReason"}
_NOT_A_CANCEL = (
    "PATCH here cancels an appointment or releases a hold: it must set status to "
    "'cancelled' (and may add a cancel reason); use $hold and $book for everything else"
)


@dataclass(frozen=True, slots=True)
class CancelPatch:
    """A checked cancel patch, ready to forward."""

    content: bytes
    content_type: str


def parse_cancel_patch(raw: bytes, content_type: str | None) -> CancelPatch:
    media = media_type(content_type)
    if media not in (JSON_PATCH, *JSON_TYPES):
        raise UnsupportedMediaType(
            f"PATCH content type {media or '(none)'!r} is not supported; "
            f"use {JSON_PATCH} (JSON Patch) or {FHIR_JSON} (FHIRPath Patch)"
        )
    try:
        body = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InvalidParameter(f"PATCH body is not valid JSON: {exc}") from None
    if media == JSON_PATCH or (media == "application/json" and isinstance(body, list)):
        _check_json_patch(body)
        return CancelPatch(msgspec.json.encode(body), JSON_PATCH)
    _check_fhirpath_patch(body)
    return CancelPatch(msgspec.json.encode(body), FHIR_JSON)


def _check_json_patch(ops: Any) -> None:
    if not isinstance(ops, list) or not ops:
        raise InvalidParameter("a JSON Patch body is a non-empty array of operations")
    cancels = False
    for n, op in enumerate(ops):
        where = f"JSON Patch operation {n}"
        kind, path = _json_patch_operation(op, where)
        if kind in ("copy", "move") or not _JSON_PATCH_PATHS.fullmatch(path):
            raise BusinessRuleViolation(f"{where} ({kind} {path}): {_NOT_A_CANCEL}")
        if path == "/status":
            if kind == "remove" or (kind != "test" and op["value"] != CANCELLED):
                raise BusinessRuleViolation(f"{where}: {_NOT_A_CANCEL}")
            cancels = cancels or kind in ("add", "replace")
    if not cancels:
        raise BusinessRuleViolation(_NOT_A_CANCEL)


def _json_patch_operation(op: Any, where: str) -> tuple[str, str]:
    """``op`` and ``path`` of one operation, once every member has its RFC 6902 type."""
    if not isinstance(op, dict):
        raise InvalidParameter(f"{where} must be a JSON object, {_not(op)}")
    kind = op.get("op")
    if not isinstance(kind, str) or kind not in _JSON_PATCH_OPS:
        raise InvalidParameter(
            f"{where}: 'op' must be one of {sorted(_JSON_PATCH_OPS)}, {_not(kind, 'op' in op)}"
        )
    for member in ("path", "from") if kind in ("copy", "move") else ("path",):
        pointer = op.get(member)
        if not isinstance(pointer, str) or not pointer.startswith("/"):
            raise InvalidParameter(
                f"{where}: {member!r} must be a JSON pointer (a string starting with '/'), "
                f"{_not(pointer, member in op)}"
            )
    path: str = op["path"]
    if kind in ("add", "replace", "test"):
        if "value" not in op:
            raise InvalidParameter(f"{where}: {kind} needs a value")
        expected = _value_type(path)
        if expected is not None and not isinstance(op["value"], expected):
            raise InvalidParameter(
                f"{where}: the value of {path} must be a JSON {_JSON_TYPES[expected]}, "
                f"{_not(op['value'])}"
            )
    return kind, path


_JSON_TYPES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}


def _not(value: Any, present: bool = True) -> str:
    """The end of a message saying what was sent instead."""
    if not present:
        return "and it is missing"
    if isinstance(value, str):
        return f"not {value if len(value) <= 40 else value[:37] + '...'!r}"
    return f"not a JSON {_JSON_TYPES.get(type(value), 'value')}"


def _value_type(path: str) -> type | None:
    """The JSON type of a value for a path that names a whole element we accept."""
    if path in ("/status", "/comment") or path.startswith("/participant/"):
        return str
    if path == "/extension":
        return list
    if path == "/cancelationReason" or re.fullmatch(r"/extension/(\d+|-)", path):
        return dict
    return None


def _parts(operation: dict[str, Any], n: int) -> dict[str, dict[str, Any]]:
    parts = operation.get("part")
    if operation.get("name") != "operation" or not isinstance(parts, list):
        raise InvalidParameter(
            f"FHIRPath Patch parameter {n} must be named 'operation' and have parts"
        )
    out: dict[str, dict[str, Any]] = {}
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise InvalidParameter(f"FHIRPath Patch operation {n}: every part needs a name")
        out[part["name"]] = part
    return out


def _part_value(part: dict[str, Any] | None) -> Any:
    if not part:
        return None
    for key, value in part.items():
        if key.startswith("value"):
            return value
    return part.get("part")


def _check_fhirpath_patch(body: Any) -> None:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidParameter(
            f"a FHIRPath Patch body is a Parameters resource (or send JSON Patch as {JSON_PATCH})"
        )
    operations = body.get("parameter")
    if not isinstance(operations, list) or not operations:
        raise InvalidParameter("FHIRPath Patch: Parameters.parameter is missing or empty")
    cancels = False
    for n, operation in enumerate(operations):
        if not isinstance(operation, dict):
            raise InvalidParameter(f"FHIRPath Patch parameter {n} is not an object")
        parts = _parts(operation, n)
        kind, path, name, value = _fhirpath_operation(parts, f"FHIRPath Patch operation {n}")
        if kind in ("insert", "move") or not _FHIRPATH_PATHS.fullmatch(path):
            raise BusinessRuleViolation(
                f"FHIRPath Patch operation {n} ({kind} {path}): {_NOT_A_CANCEL}"
            )
        if kind == "add" and (path != "Appointment" or name not in _FHIRPATH_ADD_NAMES):
            if name == "status" and value == CANCELLED:
                cancels = True
                continue
            raise BusinessRuleViolation(
                f"FHIRPath Patch operation {n} (add {name!r} to {path}): {_NOT_A_CANCEL}"
            )
        if path == "Appointment.status":
            if kind != "replace" or value != CANCELLED:
                raise BusinessRuleViolation(f"FHIRPath Patch operation {n}: {_NOT_A_CANCEL}")
            cancels = True
    if not cancels:
        raise BusinessRuleViolation(_NOT_A_CANCEL)


def _fhirpath_operation(parts: dict[str, dict[str, Any]], where: str) -> tuple[str, str, Any, Any]:
    """type, path, name and value of one operation, once the parts have their types."""
    kind = _part_value(parts.get("type"))
    if not isinstance(kind, str) or kind not in _FHIRPATH_TYPES:
        raise InvalidParameter(
            f"{where}: type must be one of {list(_FHIRPATH_TYPES)}, {_not(kind, 'type' in parts)}"
        )
    path = _part_value(parts.get("path"))
    if not isinstance(path, str) or not path:
        raise InvalidParameter(
            f"{where}: a path (a FHIRPath string) is required, {_not(path, 'path' in parts)}"
        )
    name = _part_value(parts.get("name"))
    if "name" in parts and not isinstance(name, str):
        raise InvalidParameter(f"{where}: name must be a string, {_not(name)}")
    value = _part_value(parts.get("value"))
    if (path == "Appointment.status" or name == "status") and not isinstance(value, str | None):
        raise InvalidParameter(f"{where}: a status value must be a code (string), {_not(value)}")
    return kind, path, name, value
