"""Appointment writes and reads forwarded to the EHR: ``$hold``, ``$book``, PATCH, search, read.

HTTP only: parse, call the booking service (blocking: in the thread pool), render.
Each route's access control is the one dependency list named in its decorator.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from email.utils import format_datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from app.booking import records, service
from app.booking.context import BookingContext
from app.booking.service import BookingOutcome
from app.fhir.appointment_search import parse_appointment_search
from app.fhir.operation_params import OperationInput, parse_operation
from app.fhir.patch_body import parse_cancel_patch
from app.fhir.results import operation_result, searchset

from . import auth, convertors  # noqa: F401 (registers the fhirid path type)
from .body import base_url, json_body
from .deps import BookingDep
from .openapi import BUNDLE_REF, RESOURCE_REF, fhir_content
from .openapi_examples import (
    APPOINTMENT_SEARCH_PARAMETERS,
    BOOK_EXAMPLES,
    BOOK_INSTANCE_EXAMPLES,
    HOLD_EXAMPLES,
    HOLD_INSTANCE_EXAMPLES,
    patch_body,
    request_body,
)
from .responses import FhirResponse

router = APIRouter()

# What each kind of route answers besides the OperationOutcome errors (see app.api.openapi).
OPERATION_RESULT: dict[int | str, dict[str, Any]] = {
    200: fhir_content(BUNDLE_REF, "the EHR's Appointment, changed (Bundle, avail-bundle)"),
    201: fhir_content(BUNDLE_REF, "the EHR's new Appointment (Bundle, avail-bundle)"),
}
APPOINTMENT: dict[int | str, dict[str, Any]] = {
    200: fhir_content(RESOURCE_REF, "the EHR's Appointment")
}
SEARCHSET: dict[int | str, dict[str, Any]] = {
    200: fhir_content(BUNDLE_REF, "searchset of the patient's appointments")
}

# Route access control: one dependency list per kind of route.
APPOINTMENT_WRITE: list[Any] = [Depends(auth.require_scopes(auth.APPOINTMENT_WRITE))]
APPOINTMENT_READ: list[Any] = [Depends(auth.require_scopes(auth.APPOINTMENT_READ))]


def _result(request: Request, ctx: BookingContext, outcome: BookingOutcome) -> FhirResponse:
    base = base_url(request)
    body = operation_result(outcome.appointment, outcome.issues, version=ctx.version, base_url=base)
    headers = {}
    rid = outcome.appointment.get("id")
    if outcome.created and rid:
        headers["Location"] = f"{base}/Appointment/{rid}"
    if outcome.expires is not None:
        headers["Expires"] = format_datetime(outcome.expires.astimezone(UTC), usegmt=True)
    return FhirResponse(body, status_code=201 if outcome.created else 200, headers=headers)


Operation = Callable[[BookingContext, OperationInput], BookingOutcome]


def _add_operation(
    name: str, run: Operation, body: dict[str, Any], instance_body: dict[str, Any]
) -> None:
    """``POST $name`` on the type and on an instance; the route names keep the operation
    ids (``hold``, ``hold_instance``) that clients and the fuzzing tests know."""

    async def respond(request: Request, ctx: BookingContext, instance: str | None) -> FhirResponse:
        inputs = parse_operation(
            await json_body(request), operation=name, instance_id=instance, version=ctx.version
        )
        return _result(request, ctx, await run_in_threadpool(run, ctx, inputs))

    async def on_type(request: Request, ctx: BookingDep) -> FhirResponse:
        return await respond(request, ctx, None)

    async def on_instance(request: Request, appointment_id: str, ctx: BookingDep) -> FhirResponse:
        return await respond(request, ctx, appointment_id)

    for path, endpoint, route_name, documented in (
        (f"/Appointment/${name}", on_type, name, body),
        (
            f"/Appointment/{{appointment_id:fhirid}}/${name}",
            on_instance,
            f"{name}_instance",
            instance_body,
        ),
    ):
        router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            name=route_name,
            dependencies=APPOINTMENT_WRITE,
            response_class=FhirResponse,
            responses=OPERATION_RESULT,
            openapi_extra=documented,
        )


_add_operation(
    "hold",
    service.hold,
    request_body(HOLD_EXAMPLES, "Parameters: appt-id (a $find offer) or appt-resource"),
    request_body(HOLD_INSTANCE_EXAMPLES, "Parameters (none needed: the URL names the offer)"),
)
_add_operation(
    "book",
    service.book,
    request_body(
        BOOK_EXAMPLES,
        "Parameters: appt-id (a $find offer or a hold's EHR id) or appt-resource,"
        " patient-id, comment, cancelled-appt-id",
    ),
    request_body(BOOK_INSTANCE_EXAMPLES, "Parameters: patient-id, comment, cancelled-appt-id"),
)


@router.patch(
    "/Appointment/{appointment_id:fhirid}",
    dependencies=APPOINTMENT_WRITE,
    response_class=FhirResponse,
    responses=APPOINTMENT,
    openapi_extra=patch_body(),
)
async def cancel(request: Request, appointment_id: str, ctx: BookingDep) -> FhirResponse:
    """Cancel an appointment or release a hold (JSON Patch or FHIRPath Patch)."""
    patch = parse_cancel_patch(await request.body(), request.headers.get("content-type"))
    return FhirResponse(await run_in_threadpool(service.cancel, ctx, appointment_id, patch))


@router.get(
    "/Appointment",
    dependencies=APPOINTMENT_READ,
    response_class=FhirResponse,
    responses=SEARCHSET,
    openapi_extra={"parameters": APPOINTMENT_SEARCH_PARAMETERS},
)
def search(request: Request, ctx: BookingDep) -> FhirResponse:
    params = parse_appointment_search(request.query_params.multi_items())
    found, truncated = records.search_appointments(ctx, params)
    warning = (
        f"more than {records.SEARCH_LIMIT} appointments match; narrow the search with date"
        if truncated
        else None
    )
    bundle = searchset(
        found, base_url=base_url(request), self_url=str(request.url), warning=warning
    )
    return FhirResponse(bundle)


@router.get(
    "/Appointment/{appointment_id:fhirid}",
    dependencies=APPOINTMENT_READ,
    response_class=FhirResponse,
)
def read(appointment_id: str, ctx: BookingDep) -> FhirResponse:
    return FhirResponse(records.read_appointment(ctx, appointment_id))
