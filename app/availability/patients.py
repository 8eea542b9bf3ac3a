"""What eligibility needs of a patient named by ``patient-reference``: read from the EHR,
kept briefly.

``$find`` answers from the cache, so one EHR read per patient per few minutes is the
whole cost of age and gender rules. The EHR owns the record: a reference it does not
know is the caller's error (a 4xx), while an EHR that cannot answer right now must not
stop ``$find``: the answer then says that eligibility was not checked, and booking
still goes through the EHR.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from app.core.errors import InvalidParameter
from app.ehr.errors import EhrError, EhrRejected
from rules.request import PatientInfo

GONE = (404, 410)


class UnknownPatient(InvalidParameter):
    """``patient-reference`` names a patient the EHR does not have."""

    code = "not-found"


@dataclass(frozen=True, slots=True)
class Resolved:
    patient: PatientInfo
    warning: str | None = None  # eligibility could not be checked, and why


def facts(ref: str, resource: dict[str, Any]) -> PatientInfo:
    """Birth date and gender of an EHR Patient; a malformed value counts as unknown."""
    birth: date | None = None
    try:
        birth = date.fromisoformat(str(resource.get("birthDate")))
    except ValueError:
        birth = None  # absent, partial ("1980") or broken: the EHR's data, not the caller's
    gender = resource.get("gender")
    return PatientInfo(
        ref=ref,
        birth_date=birth,
        gender=gender if isinstance(gender, str) else None,
        new_patient=False,
    )


class PatientLookup:
    """Patients by reference, each read at most once per ``ttl`` seconds.

    Bounded (least recently used first out): a burst of distinct patients costs at most
    ``max_entries`` small records. Failures are remembered for ``failure_ttl`` seconds,
    so an EHR outage costs one slow read, not one per ``$find``.
    """

    def __init__(
        self,
        read: Callable[[str], dict[str, Any]],
        *,
        ttl: float,
        failure_ttl: float = 10.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read  # Patient id -> the EHR's Patient resource
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._known: OrderedDict[str, tuple[float, Resolved | UnknownPatient]] = OrderedDict()

    def resolve(self, patient: PatientInfo | None) -> Resolved | None:
        """``patient`` with its birth date and gender filled in from the EHR, when it is
        a reference only. A given ``patient-resource`` speaks for itself."""
        if patient is None:
            return None
        if patient.ref is None or patient.new_patient or self._ttl <= 0:
            return Resolved(patient)
        if patient.birth_date is not None or patient.gender is not None:
            return Resolved(patient)
        answer = self._cached(patient.ref)
        if answer is None:
            answer, keep = self._fetch(patient.ref)
            with self._lock:
                self._known[patient.ref] = (self._clock() + keep, answer)
                self._known.move_to_end(patient.ref)
                while len(self._known) > self._max:
                    self._known.popitem(last=False)
        if isinstance(answer, UnknownPatient):
            raise answer
        return replace(answer, patient=replace(answer.patient, display=patient.display))

    def _cached(self, ref: str) -> Resolved | UnknownPatient | None:
        with self._lock:
            entry = self._known.get(ref)
            if entry is None or entry[0] <= self._clock():
                return None
            self._known.move_to_end(ref)
            return entry[1]

    def _fetch(self, ref: str) -> tuple[Resolved | UnknownPatient, float]:
        try:
            resource = self._read(ref.split("/", 1)[1])
        except EhrRejected as exc:
            if exc.status in GONE:
                return UnknownPatient(
                    f"{ref} is not known to the EHR", expression="patient-reference"
                ), self._failure_ttl
            return self._unchecked(ref, f"the EHR refused to read it ({exc.status})")
        except EhrError as exc:
            return self._unchecked(ref, str(exc))
        return Resolved(facts(ref, resource)), self._ttl

    def _unchecked(self, ref: str, why: str) -> tuple[Resolved, float]:
        warning = (
            f"{ref} could not be read from the EHR ({why}); age and gender rules were"
            " not applied, so some offers may not suit this patient"
        )
        return Resolved(PatientInfo(ref=ref, new_patient=False), warning), self._failure_ttl
