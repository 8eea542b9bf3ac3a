"""Validation of resources clients send, with the fhir.resources model of our FHIR version.

Writes are low-volume, so full model validation is affordable here and gives
clients precise 400 OperationOutcomes instead of a half-stored resource.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import ValidationError

from sandbox_ehr.errors import bad_request


@cache
def _model(flavour: str, resource_type: str) -> Any:
    if flavour == "stu3":
        from fhir.resources.STU3 import get_fhir_model_class
    else:
        from fhir.resources.R4B import get_fhir_model_class
    return get_fhir_model_class(resource_type)


def check(flavour: str, resource: Any, resource_type: str) -> dict[str, Any]:
    """The resource unchanged if it is a valid ``resource_type``; else a 400 FhirError."""
    if not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
        found = (
            resource.get("resourceType") if isinstance(resource, dict) else type(resource).__name__
        )
        raise bad_request(f"expected a {resource_type} resource, got {found}")
    try:
        _model(flavour, resource_type).model_validate(resource)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise bad_request(f"invalid {resource_type} ({flavour.upper()}): {problems}") from exc
    return resource
