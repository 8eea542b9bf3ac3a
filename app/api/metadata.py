"""``GET /fhir/metadata``: the CapabilityStatement (open to every caller, as FHIR expects)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from app.fhir.capability import NO_AUTH, Security, capability_statement

from .body import base_url
from .deps import SettingsDep
from .responses import FhirResponse

router = APIRouter()

_STARTED = datetime.now(UTC).strftime("%Y-%m-%d")


@router.get("/metadata", response_class=FhirResponse)
def metadata(request: Request, settings: SettingsDep) -> FhirResponse:
    security: Security = getattr(request.app.state, "capability_security", NO_AUTH)
    return FhirResponse(
        capability_statement(
            flavour=settings.ehr_fhir_version,
            base_url=base_url(request),
            version=request.app.version,
            date=_STARTED,
            security=security,
        )
    )
