"""Patients and their Coverage as clients write them: registration with matching, coverage writes.

Apart from appointments because they have no slot state: a Patient POST returns
the existing patient on an identifier or demographics match, a Coverage PUT may
not change its type or beneficiary. Five patients (pat-1..pat-5) are registered
from the start, so a fresh sandbox can book at once.
"""

from __future__ import annotations

import copy
from typing import Any

from sandbox_ehr import codes, validate
from sandbox_ehr.config import SandboxConfig
from sandbox_ehr.errors import unprocessable
from sandbox_ehr.versions import IdSequence, stamp


class PatientRecords:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.clear()

    def clear(self) -> None:
        self.patients: dict[str, dict[str, Any]] = {}
        self.coverages: dict[str, dict[str, Any]] = {}
        self._patient_ids = IdSequence("pat")
        self._coverage_ids = IdSequence("cov")
        for p in _seed_patients():
            self.patients[p["id"]] = self._stamp(p, 1)

    def _stamp(
        self, resource: dict[str, Any], version: int, profile: str | None = None
    ) -> dict[str, Any]:
        return stamp(resource, version, stu3=self.config.fhir_version == "stu3", profile=profile)

    def register_patient(self, resource: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Return the matching patient (by identifier, else demographics) or create one."""
        validate.check(self.config.fhir_version, resource, "Patient")
        match = self._match_patient(resource)
        if match is not None:
            return match, False
        body = copy.deepcopy(resource)
        body["id"] = self._patient_ids.next(self.patients)
        body.setdefault("identifier", []).append(
            {"system": codes.MRN_SYSTEM, "value": f"MRN{body['id']}"}
        )
        self.patients[body["id"]] = self._stamp(body, 1)
        return body, True

    def _match_patient(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        wanted = {
            (i.get("system"), i.get("value"))
            for i in resource.get("identifier") or []
            if i.get("value")
        }
        for p in self.patients.values():
            if wanted & {(i.get("system"), i.get("value")) for i in p.get("identifier") or []}:
                return p
        key = _demographics(resource)
        if key is None:
            return None
        for p in self.patients.values():
            other = _demographics(p)
            if (
                other
                and other[:3] == key[:3]
                and (not key[3] or not other[3] or key[3] == other[3])
            ):
                return p
        return None

    def put_coverage(
        self, rid: str | None, resource: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        validate.check(self.config.fhir_version, resource, "Coverage")
        for field_ in ("beneficiary", "subscriber", "policyHolder"):
            ref = (resource.get(field_) or {}).get("reference")
            if ref and ref.startswith("Patient/") and ref.split("/", 1)[1] not in self.patients:
                raise unprocessable(f"Coverage.{field_} {ref} is not a registered patient")
        body = copy.deepcopy(resource)
        existing = self.coverages.get(rid) if rid else None
        if existing is not None:
            if _codes(existing.get("type")) != _codes(body.get("type")):
                raise unprocessable(
                    "Coverage.type cannot be changed; end this coverage and create a new one"
                )
            for field_ in ("beneficiary", "subscriber"):
                if (existing.get(field_) or {}).get("reference") != (body.get(field_) or {}).get(
                    "reference"
                ):
                    raise unprocessable(f"Coverage.{field_} cannot be changed")
            version = int(existing["meta"]["versionId"]) + 1
        else:
            version = 1
        body["id"] = rid or self._coverage_ids.next(self.coverages)
        self.coverages[body["id"]] = self._stamp(
            body, version, f"{codes.IG}/StructureDefinition/argo-coverage"
        )
        return body, existing is None


def _codes(cc: Any) -> set[tuple[str | None, str | None]]:
    return {(c.get("system"), c.get("code")) for c in (cc or {}).get("coding") or []}


def _demographics(p: dict[str, Any]) -> tuple[str, str, str, str | None] | None:
    names = p.get("name") or []
    if not names or not p.get("birthDate"):
        return None
    family = (names[0].get("family") or "").strip().lower()
    given = ((names[0].get("given") or [""])[0]).strip().lower()
    if not family or not given:
        return None
    return family, given, p["birthDate"], p.get("gender")


def _seed_patients() -> list[dict[str, Any]]:
    people = [
        ("LastName", "First", "male", "1964-06-19"),
        ("Wayne", "Bruce", "male", "1972-02-19"),
        ("Smith", "Hal", "male", "1958-11-03"),
        ("Garcia", "Maria", "female", "1990-04-12"),
        ("Nguyen", "Lan", "female", "2018-09-30"),
    ]
    return [
        {
            "resourceType": "Patient",
            "id": f"pat-{n}",
            "identifier": [{"system": codes.MRN_SYSTEM, "value": f"MRN{1000 + n}"}],
            "active": True,
            "name": [{"family": family, "given": [given]}],
            "gender": gender,
            "birthDate": birth,
        }
        for n, (family, given, gender, birth) in enumerate(people, start=1)
    ]
