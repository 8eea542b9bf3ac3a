"""Routes only the plain-r4 profile serves: ``DELETE Slot/{id}``, ``PUT Slot/{id}`` and
``GET Slot/_history``.

:func:`sandbox_ehr.app.create_app` includes this router for that profile only, so
the sandbox profile answers these paths exactly as before.

``PUT Slot/{id}`` changes a slot's status (a client marking what it booked busy);
start, end and schedule must stay as they are (400 otherwise), and ``If-Match`` with
another version than the current one is a 412.

A deleted slot reads as 410 Gone and leaves searches and ground truth; deleting it
again is a 204 as well. A ``_lastUpdated`` search cannot see a deletion (as on real
servers); ``_history`` can: ``GET Slot/_history?_since=<instant>&_count=`` lists
every slot last changed at or after ``_since``, newest change first, each once in
its current version (earlier versions are not kept), a deleted one as an entry
with ``request.method`` DELETE and no resource. Keyset-paged like Slot search.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sandbox_ehr import paging, search
from sandbox_ehr.errors import FhirError, bad_request, not_found
from sandbox_ehr.fhir_render import bundle
from sandbox_ehr.listing import page_params
from sandbox_ehr.model import STATUS_NAMES, slot_id, slot_index
from sandbox_ehr.timefmt import instant_ms, to_ms
from sandbox_ehr.web import fhir_base, fhir_response, json_body, query_pairs, sandbox

router = APIRouter()


@router.delete("/fhir/Slot/{rid}")
async def delete_slot(request: Request, rid: str) -> Response:
    store = sandbox(request).store
    i = slot_index(rid)
    if i is None or not (store.exists(i) or store.was_deleted(i)):
        raise not_found(f"Slot/{rid}")
    store.delete([i])
    return Response(status_code=204)


_STATUS_CODES = {name: code for code, name in enumerate(STATUS_NAMES) if name != "held"}


@router.put("/fhir/Slot/{rid}")
async def update_slot(request: Request, rid: str) -> Response:
    sb = sandbox(request)
    store = sb.store
    i = slot_index(rid)
    if i is None or not store.exists(i):
        raise not_found(f"Slot/{rid}")
    body = await json_body(request)
    if not isinstance(body, dict) or body.get("resourceType") != "Slot" or body.get("id") != rid:
        raise bad_request(f"the body must be Slot/{rid}")
    (current,) = sb.renderer.slot_resources(store, [i])
    for element in ("start", "end", "schedule"):
        if body.get(element) != current.get(element):
            raise bad_request(f"only a slot's status can change here, not its {element}")
    status = _STATUS_CODES.get(str(body.get("status")))
    if status is None:
        raise bad_request(f"unknown slot status {body.get('status')!r}")
    wanted = request.headers.get("if-match")
    version = str(int(store.version[i]))
    if wanted is not None and wanted.strip().removeprefix("W/").strip('"') != version:
        raise FhirError(412, f"Slot/{rid} is at version {version}", "conflict")
    store.set_status([i], status)
    (updated,) = sb.renderer.slot_resources(store, [i])
    return fhir_response(updated)


@router.get("/fhir/Slot/_history")
async def slot_history(request: Request) -> Response:
    sb = sandbox(request)
    store = sb.store
    params, count, before, total = page_params(request, query_pairs(request))
    since = search.first(params, "_since")
    since_ms = to_ms(search.parse_param_datetime(since, "_since")[0]) - 1 if since else None
    page = store.history_page(since_ms, before, count, want_total=total is None)
    total = total if total is not None else page.total
    base = fhir_base(request)
    live = [i for i in page.indices if not store.was_deleted(i)]
    resources = dict(zip(live, sb.renderer.slot_resources(store, live), strict=True))
    entries = []
    for i in page.indices:
        sid, version = slot_id(i), int(store.version[i])
        e: dict[str, Any] = {"fullUrl": f"{base}/Slot/{sid}"}
        if i in resources:
            e["resource"] = resources[i]
            if version == 1:
                e["request"], status = {"method": "POST", "url": "Slot"}, "201 Created"
            else:
                e["request"], status = {"method": "PUT", "url": f"Slot/{sid}"}, "200 OK"
        else:
            e["request"] = {"method": "DELETE", "url": f"Slot/{sid}"}
            status = "204 No Content"
        e["response"] = {
            "status": status,
            "etag": f'W/"{version}"',
            "lastModified": instant_ms(int(store.updated[i])),
        }
        entries.append(e)
    next_url = None
    if page.next_key is not None:
        token = paging.encode(paging.Cursor(params, page.next_key, total, count))
        next_url = f"{base}/Slot/_history?{paging.CURSOR_PARAM}={token}"
    return fhir_response(
        bundle(
            entries,
            total=total,
            self_url=str(request.url),
            next_url=next_url,
            bundle_type="history",
        )
    )
