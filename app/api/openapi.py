"""The OpenAPI document tells the truth about errors: OperationOutcome, 4xx/5xx, both JSON types.

FastAPI documents a 422 ``HTTPValidationError`` that this server never sends (the
handlers answer 400 OperationOutcome). This post-processing replaces it, adds the
OperationOutcome schema to every operation's error range, and lists
``application/json`` beside ``application/fhir+json`` (content negotiation), so
that integrators and the schemathesis run see what the server really does.
Routes added later by any router get the same treatment automatically.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from app.fhir.media import PLAIN_JSON

from .responses import FHIR_JSON

OUTCOME_REF = {"$ref": "#/components/schemas/OperationOutcome"}

OPERATION_OUTCOME_SCHEMA: dict[str, Any] = {
    "title": "OperationOutcome",
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "extension": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["url"],
                "properties": {"url": {"type": "string"}, "valueString": {"type": "string"}},
            },
        },
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {
                        "type": "string",
                        "enum": ["fatal", "error", "warning", "information"],
                    },
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}

RESOURCE_REF = {"$ref": "#/components/schemas/FhirResource"}
BUNDLE_REF = {"$ref": "#/components/schemas/Bundle"}

# Deliberately shallow: the full FHIR shapes are checked in the test suite with
# fhir.resources; these say what every integrator can rely on.
FHIR_RESOURCE_SCHEMA: dict[str, Any] = {
    "title": "FHIR resource",
    "type": "object",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"}},
}
BUNDLE_SCHEMA: dict[str, Any] = {
    "title": "Bundle",
    "type": "object",
    "required": ["resourceType", "type"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["Bundle"]},
        "type": {"type": "string"},
        "total": {"type": "integer", "minimum": 0},
        "entry": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"resource": RESOURCE_REF, "fullUrl": {"type": "string"}},
            },
        },
    },
}


def fhir_content(schema_ref: dict[str, Any], description: str) -> dict[str, Any]:
    """A ``responses=`` entry for a route answering a FHIR resource."""
    return {
        "description": description,
        "content": {FHIR_JSON: {"schema": schema_ref}, PLAIN_JSON: {"schema": schema_ref}},
    }


_ERROR_RANGES = {
    "4XX": "client error (bad parameter, credentials, scope, size, media type...)",
    "5XX": "server or EHR failure",
}
_HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def _outcome_response(description: str) -> dict[str, Any]:
    return {
        "description": f"OperationOutcome: {description}",
        "content": {
            FHIR_JSON: {"schema": OUTCOME_REF},
            PLAIN_JSON: {"schema": OUTCOME_REF},
        },
    }


def _is_fastapi_422(response: dict[str, Any]) -> bool:
    schemas = [c.get("schema", {}) for c in response.get("content", {}).values()]
    return any(s.get("$ref", "").endswith("/HTTPValidationError") for s in schemas)


def _resource_schema(media: dict[str, Any]) -> dict[str, Any]:
    """FastAPI describes a ``Response`` subclass as a string; FHIR JSON is an object."""
    schema = {k: v for k, v in media.get("schema", {}).items() if (k, v) != ("type", "string")}
    return schema or RESOURCE_REF


def refine(schema: dict[str, Any]) -> dict[str, Any]:
    """Apply the error conventions to every operation of an OpenAPI document (in place)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["OperationOutcome"] = OPERATION_OUTCOME_SCHEMA
    components["FhirResource"] = FHIR_RESOURCE_SCHEMA
    components["Bundle"] = BUNDLE_SCHEMA
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            if "422" in responses and _is_fastapi_422(responses["422"]):
                del responses["422"]
            for code, description in _ERROR_RANGES.items():
                responses.setdefault(code, _outcome_response(description))
            for response in responses.values():
                content = response.get("content", {})
                if FHIR_JSON in content:
                    content[FHIR_JSON] = {"schema": _resource_schema(content[FHIR_JSON])}
                    content.setdefault(PLAIN_JSON, content[FHIR_JSON])
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def install_openapi(app: FastAPI, docs: str = "public") -> None:
    """The refined schema; with ``docs == "admin"`` served at /openapi.json to the admin
    credential only (FastAPI serves it openly, with /docs and /redoc, when public)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = refine(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    if docs == "admin":
        from .auth import require_admin

        @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_admin)])
        def admin_openapi() -> JSONResponse:
            return JSONResponse(app.openapi())
