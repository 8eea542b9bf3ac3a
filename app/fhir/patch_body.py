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

import orjson

from app.errors import BusinessRuleViolation, InvalidParameter, UnsupportedMediaType

JSON_PATCH = "application/json-patch+json"
FHIR_JSON = "application/fhir+json"
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


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_cancel_patch(raw: bytes, content_type: str | None) -> CancelPatch:
    media = _media_type(content_type)
    if media not in (JSON_PATCH, FHIR_JSON, "application/json"):
        raise UnsupportedMediaType(
            f"PATCH content type {media or '(none)'!r} is not supported; "
            f"use {JSON_PATCH} (JSON Patch) or {FHIR_JSON} (FHIRPath Patch)"
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidParameter(f"PATCH body is not valid JSON: {exc}") from None
    if media == JSON_PATCH or (media == "application/json" and isinstance(body, list)):
        _check_json_patch(body)
        return CancelPatch(orjson.dumps(body), JSON_PATCH)
    _check_fhirpath_patch(body)
    return CancelPatch(orjson.dumps(body), FHIR_JSON)


def _check_json_patch(ops: Any) -> None:
    if not isinstance(ops, list) or not ops:
        raise InvalidParameter("a JSON Patch body is a non-empty array of operations")
    cancels = False
    for n, op in enumerate(ops):
        where = f"operation {n}"
        if not isinstance(op, dict) or op.get("op") not in _JSON_PATCH_OPS:
            raise InvalidParameter(
                f"JSON Patch {where}: 'op' must be one of {sorted(_JSON_PATCH_OPS)}"
            )
        path = op.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise InvalidParameter(f"JSON Patch {where}: 'path' must be a JSON pointer")
        if op["op"] in ("add", "replace", "test") and "value" not in op:
            raise InvalidParameter(f"JSON Patch {where}: {op['op']} needs a value")
        if op["op"] in ("copy", "move") or not _JSON_PATCH_PATHS.match(path):
            raise BusinessRuleViolation(f"JSON Patch {where} ({op['op']} {path}): {_NOT_A_CANCEL}")
        if path == "/status":
            if op["op"] == "remove" or (op["op"] != "test" and op.get("value") != CANCELLED):
                raise BusinessRuleViolation(f"JSON Patch {where}: {_NOT_A_CANCEL}")
            cancels = cancels or op["op"] in ("add", "replace")
    if not cancels:
        raise BusinessRuleViolation(_NOT_A_CANCEL)


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
        kind = _part_value(parts.get("type"))
        path = _part_value(parts.get("path"))
        if kind not in ("add", "insert", "delete", "replace", "move"):
            raise InvalidParameter(f"FHIRPath Patch operation {n}: unknown type {kind!r}")
        if not isinstance(path, str) or not path:
            raise InvalidParameter(f"FHIRPath Patch operation {n}: a path is required")
        if kind in ("insert", "move") or not _FHIRPATH_PATHS.match(path):
            raise BusinessRuleViolation(
                f"FHIRPath Patch operation {n} ({kind} {path}): {_NOT_A_CANCEL}"
            )
        if kind == "add":
            name = _part_value(parts.get("name"))
            if path != "Appointment" or name not in _FHIRPATH_ADD_NAMES:
                if name == "status" and _part_value(parts.get("value")) == CANCELLED:
                    cancels = True
                    continue
                raise BusinessRuleViolation(
                    f"FHIRPath Patch operation {n} (add {name!r} to {path}): {_NOT_A_CANCEL}"
                )
        if path == "Appointment.status":
            if kind != "replace" or _part_value(parts.get("value")) != CANCELLED:
                raise BusinessRuleViolation(f"FHIRPath Patch operation {n}: {_NOT_A_CANCEL}")
            cancels = True
    if not cancels:
        raise BusinessRuleViolation(_NOT_A_CANCEL)
