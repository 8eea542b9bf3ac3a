"""PatientLookup: what eligibility learns from the EHR's Patient, and how long it keeps it."""

from __future__ import annotations

from datetime import date

import pytest

from app.availability.patients import PatientLookup, UnknownPatient
from app.ehr.errors import EhrRejected, EhrUnavailable
from rules.request import PatientInfo


class Ehr:
    def __init__(self, patients: dict[str, dict]) -> None:
        self.patients = patients
        self.reads: list[str] = []
        self.down = False

    def read(self, patient_id: str) -> dict:
        self.reads.append(patient_id)
        if self.down:
            raise EhrUnavailable("EHR answered 503", status=503)
        if patient_id not in self.patients:
            raise EhrRejected("EHR answered 404", status=404)
        return self.patients[patient_id]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ehr() -> Ehr:
    return Ehr(
        {
            "a": {"resourceType": "Patient", "birthDate": "2018-09-30", "gender": "female"},
            "b": {"resourceType": "Patient", "birthDate": "1980"},  # partial date
        }
    )


def test_birth_date_and_gender_come_from_the_ehr(ehr: Ehr) -> None:
    lookup = PatientLookup(ehr.read, ttl=60)
    got = lookup.resolve(PatientInfo(ref="Patient/a", new_patient=False))
    assert got is not None and got.warning is None
    assert got.patient.birth_date == date(2018, 9, 30)
    assert got.patient.gender == "female"


def test_a_partial_birth_date_is_unknown_not_an_error(ehr: Ehr) -> None:
    got = PatientLookup(ehr.read, ttl=60).resolve(PatientInfo(ref="Patient/b"))
    assert got is not None and got.patient.birth_date is None and got.warning is None


def test_kept_for_ttl_then_read_again(ehr: Ehr) -> None:
    clock = Clock()
    lookup = PatientLookup(ehr.read, ttl=60, clock=clock)
    lookup.resolve(PatientInfo(ref="Patient/a"))
    clock.now = 59
    lookup.resolve(PatientInfo(ref="Patient/a"))
    assert ehr.reads == ["a"]
    clock.now = 61
    lookup.resolve(PatientInfo(ref="Patient/a"))
    assert ehr.reads == ["a", "a"]


def test_unknown_patient_raises_a_not_found_parameter_error(ehr: Ehr) -> None:
    lookup = PatientLookup(ehr.read, ttl=60)
    with pytest.raises(UnknownPatient) as caught:
        lookup.resolve(PatientInfo(ref="Patient/zz"))
    assert caught.value.http_status == 400 and caught.value.code == "not-found"
    assert caught.value.expression == "patient-reference"
    with pytest.raises(UnknownPatient):
        lookup.resolve(PatientInfo(ref="Patient/zz"))
    assert ehr.reads == ["zz"], "the refusal is remembered briefly too"


def test_an_ehr_outage_warns_and_is_remembered_briefly(ehr: Ehr) -> None:
    clock = Clock()
    lookup = PatientLookup(ehr.read, ttl=300, failure_ttl=10, clock=clock)
    ehr.down = True
    got = lookup.resolve(PatientInfo(ref="Patient/a"))
    assert got is not None and got.patient.birth_date is None
    assert got.warning and "Patient/a could not be read" in got.warning
    lookup.resolve(PatientInfo(ref="Patient/a"))
    assert ehr.reads == ["a"]
    ehr.down = False
    clock.now = 11
    got = lookup.resolve(PatientInfo(ref="Patient/a"))
    assert got is not None and got.warning is None and got.patient.gender == "female"


def test_a_given_patient_resource_is_not_read(ehr: Ehr) -> None:
    lookup = PatientLookup(ehr.read, ttl=60)
    given = PatientInfo(ref="Patient/a", birth_date=date(2000, 1, 1), new_patient=False)
    new = PatientInfo(gender="male", new_patient=True)
    assert lookup.resolve(given).patient is given  # type: ignore[union-attr]
    assert lookup.resolve(new).patient is new  # type: ignore[union-attr]
    assert lookup.resolve(None) is None
    assert ehr.reads == []


def test_bounded(ehr: Ehr) -> None:
    ehr.patients.update({f"p{i}": {"resourceType": "Patient"} for i in range(5)})
    lookup = PatientLookup(ehr.read, ttl=60, max_entries=2)
    for i in range(5):
        lookup.resolve(PatientInfo(ref=f"Patient/p{i}"))
    lookup.resolve(PatientInfo(ref="Patient/p0"))
    assert ehr.reads == ["p0", "p1", "p2", "p3", "p4", "p0"]
