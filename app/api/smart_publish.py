"""``GET /smart/$bulk-publish`` and its NDJSON files: the SMART Scheduling Links feed.

Thin: parameters, ``Accept``, caching headers and auth here; what is published and
how lives in :mod:`app.publish`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from app.cache.db import Session, read_session
from app.cache.publish_queries import PublishState
from app.core.errors import SlotsyncError
from app.fhir.media import FHIR_JSON, PLAIN_JSON, accepted_types
from app.publish import feed
from app.publish.service import Publisher
from app.settings import Settings

from .auth import require_scopes
from .deps import autocommit_session
from .responses import outcome_response

SLOT_READ = "system/Slot.read"
NDJSON = "application/fhir+ndjson"
MANIFEST_TYPES = (PLAIN_JSON, FHIR_JSON)
FILE_TYPES = (NDJSON, "application/ndjson", "application/x-ndjson")


class NotAcceptable(SlotsyncError):
    http_status = 406
    code = "not-supported"


def _check_accept(request: Request, offered: tuple[str, ...]) -> None:
    """No Accept, ``*/*``, or any of ``offered`` (parameters aside; ``q=0`` refuses)."""
    header = request.headers.get("accept")
    if not header or not header.strip():
        return
    wildcards = {"*/*", "application/*"}
    if accepted_types(header) & (set(offered) | wildcards):
        return
    raise NotAcceptable(f"Accept {header!r} cannot be served: this answers {', '.join(offered)}")


def _publisher(request: Request) -> Publisher:
    return request.app.state.publisher  # type: ignore[no-any-return]


SINCE = {
    "name": "_since",
    "in": "query",
    "required": False,
    "description": "FHIR instant with offset: only what changed after it (a manifest's"
    " transactionTime)",
    "schema": {"type": "string", "example": "2026-12-04T18:00:00.000Z"},
}
MANIFEST_DOC: dict[str, Any] = {
    "responses": {
        200: {
            "description": "the $bulk-publish manifest",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        304: {"description": "not modified (If-None-Match or If-Modified-Since)"},
    },
    "openapi_extra": {"parameters": [SINCE]},
}
FILE_DOC: dict[str, Any] = {
    "responses": {
        200: {
            "description": "NDJSON, one FHIR R4 resource a line",
            "content": {NDJSON: {"schema": {"type": "string"}}},
        },
        304: {"description": "not modified (If-None-Match or If-Modified-Since)"},
    },
    "openapi_extra": {"parameters": [SINCE]},
}


def _not_modified(request: Request, etag: str, last_modified: datetime) -> bool:
    """``If-None-Match`` names the ETag, or (without it) ``If-Modified-Since`` is not
    before the last refresh (RFC 9110: the ETag wins when both are sent)."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag in tags
    if_modified_since = request.headers.get("if-modified-since")
    if not if_modified_since:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False  # an unreadable date is ignored, as HTTP says
    if since.tzinfo is None:
        return False
    return last_modified.replace(microsecond=0) <= since


def _not_ready(request: Request) -> Response:
    """503 with Retry-After while a deployment's first refresh is still working."""
    return outcome_response(
        503,
        "transient",
        "the feed is being worked out for the first time; retry shortly",
        request_id=getattr(request.state, "request_id", None),
        severity="error",
        headers={"Retry-After": "30"},
    )


def router(settings: Settings) -> APIRouter:
    """The feed's routes at ``SLOTSYNC_SMART_PATH``, public or behind system/Slot.read."""
    manifest_path = settings.smart_path
    files_path = manifest_path.removesuffix("$bulk-publish") + "files"
    dependencies = [] if settings.smart_public else [Depends(require_scopes(SLOT_READ))]
    routes = APIRouter(dependencies=dependencies, tags=["smart"])
    max_age = settings.smart_max_age_seconds

    base_url = settings.public_base_url.rstrip("/")

    def headers(etag: str, state: PublishState) -> dict[str, str]:
        return {
            "Cache-Control": f"max-age={max_age}",
            "ETag": etag,
            "Last-Modified": format_datetime(state.refreshed_at, usegmt=True),
        }

    @routes.get(manifest_path, summary="SMART Scheduling Links manifest", **MANIFEST_DOC)
    def bulk_publish(request: Request) -> Response:
        with autocommit_session(request) as session:
            return _manifest(request, session)

    def _manifest(request: Request, session: Session) -> Response:
        _check_accept(request, MANIFEST_TYPES)
        since = feed.parse_since(request.query_params.getlist("_since"))
        publisher = _publisher(request)
        state = publisher.current(session)
        if state is None:
            return _not_ready(request)
        if since is not None and since < state.refreshed_at - publisher.options.busy_retention:
            # busy rows older than that are forgotten: only a full download is right
            since = None
        query = f"?{request.url.query}" if request.url.query else ""
        found = publisher.manifest(
            session,
            state,
            request_url=f"{base_url}{manifest_path}{query}",
            files_url=f"{base_url}{files_path}",
            since=since,
        )
        sent = headers(found.etag, state)
        if _not_modified(request, found.etag, state.refreshed_at):
            return Response(status_code=304, headers=sent)
        return Response(found.body, media_type="application/json", headers=sent)

    @routes.get(files_path + "/{name}", summary="SMART Scheduling Links NDJSON file", **FILE_DOC)
    def bulk_file(request: Request, name: str) -> Response:
        with autocommit_session(request) as session:
            return _file(request, name, session)

    def _file(request: Request, name: str, session: Session) -> Response:
        _check_accept(request, FILE_TYPES)
        since = feed.parse_since(request.query_params.getlist("_since"))
        wanted = feed.parse_file_name(name)
        publisher = _publisher(request)
        state = publisher.current(session)
        if state is None:
            return _not_ready(request)
        etag = f'"{state.generation}-{int(state.refreshed_at.timestamp() * 1000)}-{name}'
        etag += f'-{since.timestamp()}"' if since is not None else '"'
        sent = headers(etag, state)
        if _not_modified(request, etag, state.refreshed_at):
            return Response(status_code=304, headers=sent)
        if isinstance(wanted, str):
            body = feed.small_file(publisher.directory(session, state), wanted)
            return Response(body, media_type=NDJSON, headers=sent)
        engine = request.app.state.engine

        def stream() -> Iterator[bytes]:
            # its own session: the request's closes before the body is sent
            with read_session(engine) as own:
                yield from feed.slot_lines(
                    own,
                    wanted,
                    per_file=publisher.options.per_file,
                    since=since,
                    lines=publisher.lines,
                )

        return StreamingResponse(stream(), media_type=NDJSON, headers=sent)

    return routes
