"""``GET /fhir/metadata``: the CapabilityStatement (open to every caller, as FHIR expects)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from app.fhir.capability import Security, capability_statement
from app.settings import Settings

from .body import base_url
from .deps import SettingsDep
from .openapi import RESOURCE_REF, fhir_content
from .responses import FhirResponse

router = APIRouter()

_STARTED = datetime.now(UTC).strftime("%Y-%m-%d")


def security(settings: Settings) -> Security:
    """How callers authenticate with these settings (see app.api.auth)."""
    ways = ["an API key in the X-API-Key header (or 'Authorization: ApiKey <key>')"]
    if settings.jwt_shared_key is not None or settings.jwt_jwks_url:
        ways.insert(0, "an OAuth2 bearer JWT (SMART Backend Services style)")
    return Security(
        description=(
            f"Every /fhir interaction except metadata needs {' or '.join(ways)}, granting "
            "SMART system scopes: system/Appointment.read ($find, search, read), "
            "system/Appointment.write ($hold, $book, PATCH), system/Patient.write, "
            "system/Coverage.write."
        ),
        services=("OAuth",),
    )


@router.get(
    "/metadata",
    response_class=FhirResponse,
    responses={200: fhir_content(RESOURCE_REF, "CapabilityStatement")},
)
def metadata(request: Request, settings: SettingsDep) -> FhirResponse:
    return FhirResponse(
        capability_statement(
            fhir=request.app.state.fhir_version,
            base_url=base_url(request),
            version=request.app.version,
            date=_STARTED,
            security=security(settings),
        )
    )
