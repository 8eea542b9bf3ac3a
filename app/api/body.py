"""Reading FHIR JSON request bodies with clear 4xx answers for what is not."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import Request

from app.core.errors import InvalidParameter, UnsupportedMediaType
from app.fhir.media import JSON_TYPES
from app.fhir.media import media_type as _media_type


def media_type(request: Request) -> str:
    return _media_type(request.headers.get("content-type"))


async def json_body(request: Request, *, types: tuple[str, ...] = JSON_TYPES) -> Any:
    """The decoded JSON body; 415 for another content type, 400 for invalid JSON."""
    kind = media_type(request)
    if kind and kind not in types:
        raise UnsupportedMediaType(
            f"content type {kind!r} is not supported here; send {' or '.join(types)}"
        )
    raw = await request.body()
    if not raw.strip():
        raise InvalidParameter("the request body is empty")
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InvalidParameter(f"the request body is not valid JSON: {exc}") from None


def base_url(request: Request) -> str:
    """Our FHIR base URL as the caller sees it (for fullUrl and Location)."""
    return str(request.base_url).rstrip("/") + "/fhir"
