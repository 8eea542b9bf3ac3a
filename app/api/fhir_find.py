"""``GET /fhir/Appointment/$find``: proposed appointments composed from the cache."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.fhir.bundle import appointment_stu3, avail_bundle
from app.fhir.find_params import parse_find_query
from app.find import find_appointments

from .deps import SessionDep
from .responses import FhirResponse

router = APIRouter()


@router.get("/Appointment/$find", response_class=FhirResponse)
def find_get(request: Request, session: SessionDep) -> FhirResponse:
    query = parse_find_query(request.query_params.multi_items())
    result = find_appointments(session, query)
    requested = (query.start, query.end)
    bundle = avail_bundle(
        [appointment_stu3(a, requested) for a in result.appointments],
        total=result.total,
        base_url=str(request.base_url).rstrip("/") + "/fhir",
        last_updated=result.oldest_confirmation,
    )
    return FhirResponse(bundle)
