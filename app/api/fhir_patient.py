"""Patient registration and Coverage, forwarded to the EHR (Use Case 2 registration steps)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from app.booking import records
from app.fhir.record_input import check_coverage, check_patient

from . import auth, convertors  # noqa: F401 (registers the fhirid path type)
from .body import base_url, json_body
from .deps import BookingDep
from .openapi import RESOURCE_REF, fhir_content
from .openapi_examples import COVERAGE, PATIENT, resource_body
from .responses import FhirResponse

router = APIRouter()

CREATED_OR_FOUND: dict[int | str, dict[str, Any]] = {
    200: fhir_content(RESOURCE_REF, "the EHR's existing or updated resource"),
    201: fhir_content(RESOURCE_REF, "the resource the EHR created"),
}

# Route access control: one dependency list per kind of route.
PATIENT_WRITE: list[Any] = [Depends(auth.require_scopes(auth.PATIENT_WRITE))]
COVERAGE_WRITE: list[Any] = [Depends(auth.require_scopes(auth.COVERAGE_WRITE))]


@router.post(
    "/Patient",
    dependencies=PATIENT_WRITE,
    response_class=FhirResponse,
    responses=CREATED_OR_FOUND,
    openapi_extra=resource_body(PATIENT, "a US Core Patient to register or find"),
)
async def register_patient(request: Request, ctx: BookingDep) -> FhirResponse:
    """Register, or get back the EHR's existing record of this patient (200)."""
    patient = check_patient(ctx.version, await json_body(request))
    result, created = await run_in_threadpool(records.register_patient, ctx, patient)
    headers = {"Location": f"{base_url(request)}/Patient/{result.get('id')}"}
    return FhirResponse(result, status_code=201 if created else 200, headers=headers)


@router.post(
    "/Coverage",
    dependencies=COVERAGE_WRITE,
    response_class=FhirResponse,
    responses=CREATED_OR_FOUND,
    openapi_extra=resource_body(COVERAGE, "an Argonaut Coverage for the patient"),
)
async def create_coverage(request: Request, ctx: BookingDep) -> FhirResponse:
    coverage = check_coverage(ctx.version, await json_body(request))
    result = await run_in_threadpool(records.create_coverage, ctx, coverage)
    headers = {"Location": f"{base_url(request)}/Coverage/{result.get('id')}"}
    return FhirResponse(result, status_code=201, headers=headers)


@router.put(
    "/Coverage/{coverage_id:fhirid}",
    dependencies=COVERAGE_WRITE,
    response_class=FhirResponse,
    responses=CREATED_OR_FOUND,
    openapi_extra=resource_body(COVERAGE, "the Coverage in full (its id is the path's)"),
)
async def update_coverage(request: Request, coverage_id: str, ctx: BookingDep) -> FhirResponse:
    coverage = check_coverage(ctx.version, await json_body(request), coverage_id)
    result, created = await run_in_threadpool(records.update_coverage, ctx, coverage_id, coverage)
    return FhirResponse(result, status_code=201 if created else 200)
