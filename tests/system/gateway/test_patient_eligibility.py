"""``$find`` with ``patient-reference``: the patient's age and gender come from the EHR's
Patient (read over HTTP, kept briefly), so eligibility rules apply; an unknown patient
is a 4xx; an EHR that cannot answer only costs the eligibility check, with a warning."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from app.core.domain import VISIT_TYPE_SYSTEM
from tests.booking_support import bookable_day
from tests.fhir_checks import assert_outcome
from tests.system.gateway.support import Gateway, http

OFFICE = f"{VISIT_TYPE_SYSTEM}|office-visit"
PAEDIATRICS = "http://snomed.info/sct|394537008"  # its office visits: max_age_years 17
ADULT, CHILD = "Patient/pat-1", "Patient/pat-5"  # sandbox patients born 1964 and 2018


def _find(stack: Gateway, day: date, patient: str | None) -> dict:
    """Paediatric office visits on ``day``, for ``patient`` if given."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    query = {
        "start": start.isoformat(),
        "end": (start + timedelta(days=1)).isoformat(),
        "visit-type": OFFICE,
        "specialty": PAEDIATRICS,
        "_count": "50",
    }
    if patient:
        query["patient-reference"] = patient
    response = http.get(f"{stack.api}/Appointment/$find", params=query)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _appointments(bundle: dict) -> list[dict]:
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if e["resource"]["resourceType"] == "Appointment"
    ]


def _warnings(bundle: dict) -> list[str]:
    return [
        issue["diagnostics"]
        for e in bundle.get("entry", [])
        if e["resource"]["resourceType"] == "OperationOutcome"
        for issue in e["resource"]["issue"]
        if issue["severity"] == "warning"
    ]


def test_age_rules_apply_to_a_referenced_patient(stack: Gateway) -> None:
    day = bookable_day(stack.rules)
    anyone = _appointments(_find(stack, day, None))
    assert anyone, "offers exist when the patient is not known"
    assert len(_appointments(_find(stack, day, CHILD))) == len(anyone)
    assert _appointments(_find(stack, day, ADULT)) == []


def test_the_patient_is_read_once_and_kept(stack: Gateway) -> None:
    day = bookable_day(stack.rules)
    before = stack.requests("GET", "/fhir/{rtype}/{rid}")
    for _ in range(3):
        _find(stack, day, "Patient/pat-4")
    read = stack.requests("GET", "/fhir/{rtype}/{rid}") - before
    assert read == 1, f"{read} reads of one patient (used by no other test) in the cache time"


def test_an_unknown_patient_is_a_clear_4xx(stack: Gateway) -> None:
    day = bookable_day(stack.rules)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    response = http.get(
        f"{stack.api}/Appointment/$find",
        params={
            "start": start.isoformat(),
            "end": (start + timedelta(days=1)).isoformat(),
            "patient-reference": "Patient/no-such-patient",
        },
    )
    outcome = assert_outcome(response, 400, "not-found")
    assert outcome["issue"][0]["expression"] == ["patient-reference"]
    assert "Patient/no-such-patient" in outcome["issue"][0]["diagnostics"]


def test_an_unreadable_patient_skips_eligibility_with_a_warning(stack: Gateway) -> None:
    day = bookable_day(stack.rules)
    stack.fault(kind="error", status=503, method="GET", path="/fhir/Patient/pat-3")
    bundle = _find(stack, day, "Patient/pat-3")
    assert _appointments(bundle), "the cache still answers"
    assert any("Patient/pat-3 could not be read" in w for w in _warnings(bundle))
