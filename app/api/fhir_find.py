"""``GET /fhir/Appointment/$find``: proposed appointments composed from the cache."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from app.fhir.bundle import appointment_stu3, avail_bundle
from app.fhir.find_params import parse_find_query
from app.find import find_appointments

from .auth import APPOINTMENT_READ, require_scopes
from .deps import SessionDep
from .openapi import BUNDLE_REF, fhir_content
from .responses import FhirResponse

router = APIRouter()


def _query(name: str, description: str, example: str, **schema: object) -> dict[str, object]:
    return {
        "name": name,
        "in": "query",
        "required": name in ("start", "end"),
        "description": description,
        "example": example,
        "schema": {"type": "string", **schema},
    }


# Documented for integrators (and fuzzed by the test suite); parsed by parse_find_query.
FIND_PARAMETERS = [
    _query("start", "FHIR date or dateTime with offset: the earliest start", "2030-01-07"),
    _query("end", "FHIR date or dateTime with offset: after start", "2030-01-08T00:00:00Z"),
    _query("practitioner", "Practitioner/<id>; comma = OR (alias: provider)", "Practitioner/pr-1"),
    _query(
        "location-reference", "Location/<id>; comma = OR (alias: location)", "Location/clinic-1"
    ),
    _query("_count", "at most this many appointments (1-1000)", "10", pattern="^[0-9]+$"),
]


@router.get(
    "/Appointment/$find",
    response_class=FhirResponse,
    dependencies=[Depends(require_scopes(APPOINTMENT_READ))],
    openapi_extra={"parameters": FIND_PARAMETERS},
    responses={200: fhir_content(BUNDLE_REF, "avail-bundle of proposed appointments")},
)
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
