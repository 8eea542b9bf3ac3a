"""Patient eligibility for a visit type.

Unknown facts never exclude: a ``$find`` without a patient sees every offer, and
the booking step can check again once the patient is known.
"""

from __future__ import annotations

from datetime import date

from rules.request import PatientInfo
from rules.schema import Eligibility


def age_on(birth_date: date, day: date) -> int:
    """Completed years on ``day`` (a 29 February birthday counts from 1 March)."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def ineligible_reason(
    rule: Eligibility, patient: PatientInfo | None, first_day: date, last_day: date
) -> str | None:
    """Why ``patient`` can book no appointment of this kind between the two days, or None."""
    if patient is None:
        return None
    if rule.patient_status != "any" and patient.new_patient is not None:
        if patient.new_patient and rule.patient_status == "existing":
            return "only for existing patients"
        if not patient.new_patient and rule.patient_status == "new":
            return "only for new patients"
    if rule.genders and patient.gender and patient.gender not in rule.genders:
        return f"only for patients of gender {', '.join(rule.genders)}"
    if patient.birth_date is not None:
        # Age only grows: too young at the end or too old at the start means never.
        if rule.min_age_years is not None and age_on(patient.birth_date, last_day) < (
            rule.min_age_years
        ):
            return f"only for patients aged {rule.min_age_years} or older"
        if rule.max_age_years is not None and age_on(patient.birth_date, first_day) > (
            rule.max_age_years
        ):
            return f"only for patients aged {rule.max_age_years} or younger"
    return None


def age_allows(rule: Eligibility, patient: PatientInfo | None, day: date) -> bool:
    """Whether the patient's age on the appointment day is within the rule's range."""
    if patient is None or patient.birth_date is None:
        return True
    if rule.min_age_years is None and rule.max_age_years is None:
        return True
    age = age_on(patient.birth_date, day)
    if rule.min_age_years is not None and age < rule.min_age_years:
        return False
    return rule.max_age_years is None or age <= rule.max_age_years
