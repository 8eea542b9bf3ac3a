"""Patient registration, Coverage and appointment retrieval: forwarded to the EHR.

Thin on purpose: the EHR owns these records. What slotsync adds is checking the
request before the EHR sees it, finding an existing patient first, and turning a
lost answer into a definite one where the EHR's state can be read back.
"""

from __future__ import annotations

from typing import Any

from app.core.errors import EhrBadAnswer, EhrNoAnswer, SlotsyncError
from app.ehr.errors import EhrOutcomeUnknown, EhrTimeout

from .context import BookingContext

SEARCH_LIMIT = 1000


def _lost(exc: EhrOutcomeUnknown, known: str) -> SlotsyncError:
    """504 when the EHR timed out, 502 when it failed; the diagnostics say what is known."""
    kind = EhrNoAnswer if isinstance(exc, EhrTimeout) else EhrBadAnswer
    return kind(f"the EHR did not give an answer ({exc}); {known}")


def search_appointments(
    ctx: BookingContext, params: list[tuple[str, str]]
) -> tuple[list[dict[str, Any]], bool]:
    """Every page of the EHR's answer, up to :data:`SEARCH_LIMIT`; (appointments, truncated)."""
    return ctx.gateway.search("Appointment", params, limit=SEARCH_LIMIT)


def read_appointment(ctx: BookingContext, appointment_id: str) -> dict[str, Any]:
    return ctx.gateway.read_appointment(appointment_id)


def _identifier_params(patient: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("identifier", f"{i['system']}|{i['value']}" if i.get("system") else str(i["value"]))
        for i in patient.get("identifier") or ()
        if isinstance(i, dict) and i.get("value")
    ]


def _demographic_params(patient: dict[str, Any]) -> list[tuple[str, str]]:
    names = patient.get("name") or [{}]
    family = names[0].get("family")
    given = (names[0].get("given") or [None])[0]
    if not (family and given and patient.get("birthDate")):
        return []
    return [("family", family), ("given", given), ("birthdate", patient["birthDate"])]


def _find_patient(ctx: BookingContext, params: list[tuple[str, str]]) -> dict[str, Any] | None:
    found, _ = ctx.gateway.search("Patient", params, limit=2)
    return found[0] if len(found) == 1 else None


def register_patient(ctx: BookingContext, patient: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The EHR's existing Patient (by identifier) or a new registration; (patient, created).

    Never sends ``If-None-Exist`` (the IG forbids it): an identifier search comes
    first, then a plain create, which an Argonaut EHR answers with the existing
    patient when it recognises one.
    """
    for param in _identifier_params(patient):
        existing = _find_patient(ctx, [param])
        if existing is not None:
            return existing, False
    try:
        return ctx.gateway.register_patient(patient)
    except EhrOutcomeUnknown as exc:
        params = _identifier_params(patient)[:1] or _demographic_params(patient)
        found = _find_patient(ctx, params) if params else None
        if found is not None:
            return found, False
        raise _lost(
            exc,
            "a search shows no such patient, so nothing was registered: it is safe to retry"
            if params
            else "whether the patient was registered is unknown",
        ) from None


def create_coverage(ctx: BookingContext, coverage: dict[str, Any]) -> dict[str, Any]:
    try:
        return ctx.gateway.create_coverage(coverage)
    except EhrOutcomeUnknown as exc:
        raise _lost(
            exc,
            "whether the Coverage was created is unknown; PUT Coverage/[id] is safe to repeat",
        ) from None


def update_coverage(
    ctx: BookingContext, coverage_id: str, coverage: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    return ctx.gateway.update_coverage(coverage_id, coverage)
