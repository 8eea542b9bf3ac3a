"""Small helpers shared by the route modules: the sandbox from a request, FHIR responses,
and the route dependencies that hide the sandbox's own extensions in the plain-r4 profile."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from fastapi import Request
from fastapi.responses import Response

from sandbox_ehr.errors import FHIR_JSON, FhirError, bad_request

if TYPE_CHECKING:
    from sandbox_ehr.state import Sandbox


def sandbox(request: Request) -> Sandbox:
    return request.app.state.sandbox


def fhir_base(request: Request) -> str:
    """Absolute FHIR base as the client addressed it (links must be absolute)."""
    return str(request.base_url).rstrip("/") + "/fhir"


def query_pairs(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise bad_request("request body is empty")
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from exc


def fhir_response(
    resource: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        msgspec.json.encode(resource), status_code=status, media_type=FHIR_JSON, headers=headers
    )


def json_response(body: Any, status: int = 200) -> Response:
    """Plain JSON for the control API (msgspec: truth answers can be large)."""
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json")


async def sandbox_operation(request: Request) -> None:
    """Dependency of ``$prefetch``, ``$hold`` and ``$book``: a generic R4 server (plain-r4
    profile) does not know them and answers 400, as HAPI FHIR does for unknown operations."""
    if sandbox(request).plain:
        target = request.url.path.removeprefix("/fhir/")
        raise FhirError(
            400,
            f"Invalid request: this server does not know how to handle "
            f"{request.method} operation [{target}]",
            "not-supported",
        )


async def subscription_resource(request: Request) -> None:
    """Dependency of the Subscription routes: the plain-r4 profile has no such resource (404)."""
    if sandbox(request).plain:
        raise FhirError(404, "Unknown resource type 'Subscription'", "not-supported")
