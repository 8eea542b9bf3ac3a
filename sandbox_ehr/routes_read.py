"""Read side of the FHIR API: ``Slot/$prefetch``, Slot/Schedule/actor search, reads.

``$prefetch`` (STU3 flavour only, as in the Argonaut IG) returns free slots whose
start lies in [start, end); R4's ``GET Slot`` returns every status unless
``status`` is given, so that pollers using ``_lastUpdated`` learn about slots that
stopped being free. Both are keyset-paged with opaque ``_cursor`` next links and
may ``_include`` the page's Schedules and their actors.

Beyond the IG's ``$prefetch`` parameters the sandbox accepts ``schedule``
(``Schedule/sch-dev-1`` or ``sch-dev-1``) and ``actor`` (any actor reference, e.g.
``Device/dev-1``, which no IG parameter can name), so a client can re-fetch
exactly the schedule a notification names. A date without a time
(``start=2026-11-26``) means 00:00 UTC of that day.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from sandbox_ehr import codes, paging, search
from sandbox_ehr.errors import FhirError, not_found
from sandbox_ehr.fhir_render import bundle
from sandbox_ehr.listing import offset_bundle, page_params
from sandbox_ehr.model import slot_index
from sandbox_ehr.store import Page
from sandbox_ehr.web import (
    fhir_base,
    fhir_response,
    json_body,
    query_pairs,
    sandbox,
    sandbox_operation,
)

router = APIRouter()
OPERATION = [Depends(sandbox_operation)]
ENTITY_TYPES = ("Practitioner", "Location", "Device", "Organization")


def _slot_bundle(
    request: Request, pairs: list[tuple[str, str]], path: str, prefetch: bool
) -> Response:
    sb = sandbox(request)
    params, count, after, total = page_params(request, pairs)
    org = sb.store.org
    if prefetch:
        query = search.prefetch_query(org, params)
    else:
        query = search.slot_search_query(org, sb.config.fhir_version, params)
    if count == 0:
        page = Page([], None, sb.store.page(query, None, 1, want_total=True).total)
    else:
        page = sb.store.page(query, after, count, want_total=total is None)
    total = total if total is not None else page.total
    base = fhir_base(request)
    entries: list[Any] = sb.renderer.slot_entries(sb.store, page.indices, base)
    entries += _includes(
        request, params, sorted({int(sb.store.sched[i]) for i in page.indices}, key=lambda s: s)
    )
    next_url = None
    if page.next_key is not None:
        token = paging.encode(paging.Cursor(params, page.next_key, total, count))
        next_url = f"{base}/{path}?{paging.CURSOR_PARAM}={token}"
    profile = codes.SLOT_BUNDLE_PROFILE if prefetch else None
    return fhir_response(
        bundle(entries, total=total, self_url=str(request.url), next_url=next_url, profile=profile)
    )


def _includes(request: Request, params: list[tuple[str, str]], schedules: list[int]) -> list[Any]:
    """The page's Schedules (and their actors), as already encoded entries (see
    :meth:`~sandbox_ehr.fhir_render.Renderer.schedule_entry`)."""
    inc = search.includes(params)
    if not inc.schedules:
        return []
    sb = sandbox(request)
    base = fhir_base(request)
    out: list[Any] = []
    actors: dict[str, None] = {}
    for s in schedules:
        sd = sb.store.org.schedules[s]
        out.append(sb.renderer.schedule_entry(base, sd, int(sb.store.horizon_end[s])))
        for ref in sd.actor_refs:
            actors[ref] = None
    if inc.actors:
        for ref in actors:
            found = sb.renderer.resource_entry(base, ref)
            if found is not None:
                out.append(found)
    return out


@router.get("/fhir/metadata")
async def metadata(request: Request) -> Response:
    return fhir_response(sandbox(request).capability)


@router.get("/fhir/Slot/$prefetch", dependencies=OPERATION)
@router.post("/fhir/Slot/$prefetch", dependencies=OPERATION)
@router.get("/fhir/Slot/$find", dependencies=OPERATION)
@router.post("/fhir/Slot/$find", dependencies=OPERATION)
async def prefetch(request: Request) -> Response:
    sb = sandbox(request)
    if sb.config.fhir_version != "stu3":
        raise FhirError(
            404,
            "Slot/$prefetch is an Argonaut STU3 operation; this R4 server "
            "offers Slot search (GET Slot?schedule=&start=...)",
            "not-supported",
        )
    pairs = query_pairs(request)
    if request.method == "POST" and search.first(pairs, paging.CURSOR_PARAM) is None:
        pairs = search.parameters_to_pairs(await json_body(request)) + pairs
    return _slot_bundle(request, pairs, "Slot/$prefetch", prefetch=True)


@router.get("/fhir/Slot")
async def slot_search(request: Request) -> Response:
    return _slot_bundle(request, query_pairs(request), "Slot", prefetch=False)


@router.get("/fhir/Schedule")
async def schedule_search(request: Request) -> Response:
    sb = sandbox(request)
    org = sb.store.org
    params, count, after, _ = page_params(request, query_pairs(request))
    allowed = search.schedules_matching(org, params)
    indices = sorted(allowed) if allowed is not None else range(len(org.schedules))
    matches = [
        sb.renderer.schedule(org.schedules[s], int(sb.store.horizon_end[s]))
        for s in indices
        if s not in sb.store.removed
    ]

    def actors(chosen: list[dict[str, Any]]) -> list[dict[str, Any]]:
        refs = dict.fromkeys(a["reference"] for s in chosen for a in s["actor"])
        return [r for r in map(sb.renderer.resource, refs) if r]

    include = actors if search.includes(params).actors else None
    return offset_bundle(request, "Schedule", params, matches, count, after or 0, include)


def _entity_matches(resource: dict[str, Any], params: list[tuple[str, str]]) -> bool:
    ids = search.split_values(params, "_id")
    if ids and resource["id"] not in ids:
        return False
    for name in search.split_values(params, "name"):
        text = resource.get("name")
        text = text[0].get("text", "") if isinstance(text, list) else (text or "")
        if name.lower() not in text.lower():
            return False
    addr = search.split_values(params, "address") + search.split_values(params, "address-city")
    if addr:
        a = resource.get("address")
        a = a[0] if isinstance(a, list) else (a or {})
        terms = [
            *(a.get("line") or []),
            a.get("city", ""),
            a.get("state", ""),
            a.get("postalCode", ""),
        ]
        if not any(t.lower().startswith(q.lower()) for q in addr for t in terms):
            return False
    partof = search.split_values(params, "partof")
    if partof:
        ref = (resource.get("partOf") or {}).get("reference")
        if ref not in {search.normalise_ref(p, "Location") for p in partof}:
            return False
    return True


@router.get("/fhir/{rtype}")
async def entity_search(request: Request, rtype: str) -> Response:
    sb = sandbox(request)
    if rtype not in ENTITY_TYPES:
        raise not_found(f"resource type {rtype}")
    params, count, after, _ = page_params(request, query_pairs(request))
    refs = [ref for ref in sb.store.org.resources if ref.startswith(f"{rtype}/")]
    matches = [r for r in map(sb.renderer.resource, refs) if r and _entity_matches(r, params)]
    return offset_bundle(request, rtype, params, matches, count, after or 0)


@router.get("/fhir/{rtype}/{rid}")
async def read(request: Request, rtype: str, rid: str) -> Response:
    """Read by id; the ETag carries meta.versionId as FHIR servers do."""
    resource = _lookup(request, rtype, rid)
    version = (resource.get("meta") or {}).get("versionId")
    return fhir_response(resource, headers={"ETag": f'W/"{version}"'} if version else None)


def _lookup(request: Request, rtype: str, rid: str) -> dict[str, Any]:
    sb = sandbox(request)
    if rtype == "Slot":
        i = slot_index(rid)
        if i is not None and sb.store.was_deleted(i):
            raise FhirError(410, f"Slot/{rid} was deleted", "deleted")
        if i is None or not sb.store.exists(i):
            raise not_found(f"Slot/{rid}")
        return sb.renderer.slot_resources(sb.store, [i])[0]
    if rtype == "Schedule":
        s = sb.store.org.schedule_index.get(rid)
        if s is None or s in sb.store.removed:
            raise not_found(f"Schedule/{rid}")
        return sb.renderer.schedule(sb.store.org.schedules[s], int(sb.store.horizon_end[s]))
    if rtype in ENTITY_TYPES:
        res = sb.renderer.resource(f"{rtype}/{rid}")
        if res is None:
            raise not_found(f"{rtype}/{rid}")
        return res
    return sb.read(rtype, rid)
