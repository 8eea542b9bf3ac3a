"""Checks of the Patient and Coverage resources clients register through us."""

from __future__ import annotations

from typing import Any

from app.core.errors import InvalidParameter

from .validate import check_resource, require_elements
from .versions import FhirVersion

GENDERS = frozenset({"male", "female", "other", "unknown"})


def check_patient(version: FhirVersion, body: Any) -> dict[str, Any]:
    """A valid Patient with what US Core requires and enough to find an existing record."""
    patient = check_resource(version, body, "Patient")
    require_elements(patient, "Patient", "name", "gender")
    if patient["gender"] not in GENDERS:
        raise InvalidParameter(
            f"Patient.gender {patient['gender']!r} is not one of {', '.join(sorted(GENDERS))}",
            expression="Patient.gender",
        )
    if not patient.get("identifier") and not patient.get("birthDate"):
        raise InvalidParameter(
            "Patient needs an identifier or a birthDate, so that an existing registration "
            "can be recognised instead of creating a duplicate",
            expression="Patient.identifier",
        )
    return patient


def check_coverage(
    version: FhirVersion, body: Any, coverage_id: str | None = None
) -> dict[str, Any]:
    """A valid Coverage with argo-coverage's ``status`` and ``payor``; ids must agree on PUT."""
    coverage = check_resource(version, body, "Coverage")
    require_elements(coverage, "Coverage", "status", "payor")
    if coverage_id is not None and coverage.get("id") not in (None, coverage_id):
        raise InvalidParameter(
            f"Coverage.id {coverage.get('id')!r} does not match the URL's Coverage/{coverage_id}",
            expression="Coverage.id",
        )
    return coverage
