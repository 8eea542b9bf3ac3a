"""Subscription create / read / search / delete and (R4) ``$status``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from sandbox_ehr.errors import not_found
from sandbox_ehr.fhir_render import bundle, entry
from sandbox_ehr.web import fhir_base, fhir_response, json_body, sandbox, subscription_resource

router = APIRouter(dependencies=[Depends(subscription_resource)])


@router.post("/fhir/Subscription")
async def create_subscription(request: Request) -> Response:
    sub = sandbox(request).notifier.create(await json_body(request))
    return fhir_response(
        sub.resource(), 201, {"Location": f"{fhir_base(request)}/Subscription/{sub.id}"}
    )


@router.get("/fhir/Subscription")
async def list_subscriptions(request: Request) -> Response:
    subs = sandbox(request).notifier.subscriptions.values()
    base = fhir_base(request)
    entries = [entry(base, s.resource()) for s in subs]
    return fhir_response(bundle(entries, total=len(entries), self_url=str(request.url)))


@router.delete("/fhir/Subscription/{rid}")
async def delete_subscription(request: Request, rid: str) -> Response:
    await sandbox(request).notifier.delete(rid)
    return Response(status_code=204)


@router.get("/fhir/Subscription/{rid}/$status")
async def subscription_status(request: Request, rid: str) -> Response:
    notifier = sandbox(request).notifier
    sub = notifier.subscriptions.get(rid)
    if sub is None:
        raise not_found(f"Subscription/{rid}")
    status = notifier.status_parameters(sub, "query-status", None, None)
    e = {"fullUrl": f"urn:uuid:{status['id']}", "resource": status, "search": {"mode": "match"}}
    return fhir_response(bundle([e], total=1, self_url=str(request.url)))
