"""Small helpers shared by the route modules: the sandbox from a request, FHIR responses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from sandbox_ehr.errors import FHIR_JSON, bad_request

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
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from exc


def fhir_response(
    resource: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(resource), status_code=status, media_type=FHIR_JSON, headers=headers
    )


def json_response(body: Any, status: int = 200) -> Response:
    """Plain JSON for the control API (orjson: truth answers can be large)."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
