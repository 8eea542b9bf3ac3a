"""Plumbing shared by every search endpoint: page parameters and offset-paged Bundles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from sandbox_ehr import paging, search
from sandbox_ehr.fhir_render import bundle, entry
from sandbox_ehr.web import fhir_base, fhir_response, sandbox

Params = list[tuple[str, str]]


def page_params(request: Request, pairs: Params) -> tuple[Params, int, int | None, int | None]:
    """Search params, page size, cursor position and carried total (from ``_cursor`` if present)."""
    cfg = sandbox(request).config
    token = search.first(pairs, paging.CURSOR_PARAM)
    if token:
        cur = paging.decode(token)
        count = search.page_size(pairs, cur.count, cfg.max_page_size, cfg.max_count)
        return cur.params, count, cur.after, cur.total
    params = [(k, v) for k, v in pairs if k not in (paging.CURSOR_PARAM, "_count")]
    count = search.page_size(pairs, cfg.default_count(), cfg.max_page_size, cfg.max_count)
    return params, count, None, None


def offset_bundle(
    request: Request,
    path: str,
    params: Params,
    matches: list[dict[str, Any]],
    count: int,
    offset: int,
    includes: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
) -> Response:
    """A searchset page of already-filtered resources (small collections: offset paging)."""
    base = fhir_base(request)
    chosen = matches[offset : offset + count]
    entries = [entry(base, r) for r in chosen]
    if includes is not None:
        entries += [entry(base, r, "include") for r in includes(chosen)]
    next_url = None
    if count and offset + count < len(matches):
        token = paging.encode(paging.Cursor(params, offset + count, len(matches), count))
        next_url = f"{base}/{path}?{paging.CURSOR_PARAM}={token}"
    return fhir_response(
        bundle(entries, total=len(matches), self_url=str(request.url), next_url=next_url)
    )
