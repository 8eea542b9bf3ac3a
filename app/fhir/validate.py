"""Validation of resources clients write, with the fhir.resources model of the EHR's version.

Writes are low-volume, so full model validation is affordable here: it turns a
bad body into a precise 400 OperationOutcome (which element, what is wrong)
instead of an EHR rejection we would have to translate, or a half-made booking.
The models are the FHIR version's (:attr:`app.fhir.versions.FhirVersion.models`).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from pydantic import ValidationError

from app.core.errors import InvalidParameter

from .versions import FhirVersion

_MAX_PROBLEMS = 5


@cache
def _model(models: str, resource_type: str) -> Any:
    return importlib.import_module(models).get_fhir_model_class(resource_type)


def _location(loc: tuple[Any, ...], resource_type: str) -> str:
    parts = [str(p) for p in loc if not str(p).startswith("function-")]
    path = resource_type
    for part in parts:
        path += f"[{part}]" if part.isdigit() else f".{part}"
    return path


def check_resource(
    version: FhirVersion, resource: Any, resource_type: str, *, where: str | None = None
) -> dict[str, Any]:
    """``resource`` unchanged when it is a valid ``resource_type``; else InvalidParameter."""
    label = where or resource_type
    if not isinstance(resource, dict):
        raise InvalidParameter(f"{label}: expected a {resource_type} resource (a JSON object)")
    found = resource.get("resourceType")
    if found != resource_type:
        raise InvalidParameter(
            f"{label}: expected a {resource_type} resource, got {found or 'no resourceType'}",
            expression=label,
        )
    try:
        _model(version.models, resource_type).model_validate(resource)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = "; ".join(
            f"{_location(tuple(e['loc']), resource_type)}: {e['msg']}"
            for e in errors[:_MAX_PROBLEMS]
        )
        more = f" (and {len(errors) - _MAX_PROBLEMS} more)" if len(errors) > _MAX_PROBLEMS else ""
        raise InvalidParameter(
            f"{label} is not a valid FHIR {version.name.upper()} {resource_type}: {problems}{more}",
            expression=label,
        ) from None
    return resource


def require_elements(resource: dict[str, Any], label: str, *paths: str) -> None:
    """Profile rules the base model does not enforce (e.g. argo-appt's ``start`` 1..1)."""
    missing = [p for p in paths if _absent(resource, p.split("."))]
    if missing:
        names = ", ".join(f"{resource.get('resourceType', label)}.{p}" for p in missing)
        raise InvalidParameter(f"{label}: missing required element(s) {names}", expression=label)


def _absent(value: Any, path: list[str]) -> bool:
    if not path:
        return value in (None, "", [], {})
    if isinstance(value, list):
        return not value or any(_absent(item, path) for item in value)
    if not isinstance(value, dict):
        return True
    return _absent(value.get(path[0]), path[1:])
