"""Bundles the write side answers with: the ``$hold``/``$book`` result and searchsets.

``$hold`` and ``$book`` return their ``return`` output parameter, a Bundle
(avail-bundle where the FHIR version profiles Bundles) holding the EHR's Appointment, plus an
OperationOutcome entry when there is something to say (the EHR's warnings, a
read-back after a lost answer, a reschedule's cancelled appointment).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .versions import FhirVersion

AVAIL_BUNDLE = "http://fhir.org/guides/argonaut-scheduling/StructureDefinition/avail-bundle"


def _entry(base_url: str, resource: dict[str, Any], mode: str) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if resource.get("id"):
        entry["fullUrl"] = f"{base_url}/{resource['resourceType']}/{resource['id']}"
    entry["resource"] = resource
    entry["search"] = {"mode": mode}
    return entry


def _outcome(issues: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


def operation_result(
    appointment: dict[str, Any],
    issues: Sequence[dict[str, Any]],
    *,
    version: FhirVersion,
    base_url: str,
) -> dict[str, Any]:
    entries = [_entry(base_url, appointment, "match")]
    if issues:
        entries.append(_entry(base_url, _outcome(issues), "outcome"))
    bundle: dict[str, Any] = {"resourceType": "Bundle"}
    if version.profiles_bundles:
        bundle["meta"] = {"profile": [AVAIL_BUNDLE]}
    bundle.update({"type": "searchset", "total": 1, "entry": entries})
    return bundle


def searchset(
    resources: Sequence[dict[str, Any]],
    *,
    base_url: str,
    self_url: str,
    warning: str | None = None,
) -> dict[str, Any]:
    """A searchset of ``resources``; ``warning`` (the answer is cut short) drops ``total``."""
    entries = [_entry(base_url, r, "match") for r in resources]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if warning:
        issue = {"severity": "warning", "code": "too-costly", "diagnostics": warning}
        entries.append(_entry(base_url, _outcome([issue]), "outcome"))
    else:
        bundle["total"] = len(resources)
    bundle["link"] = [{"relation": "self", "url": self_url}]
    bundle["entry"] = entries
    return bundle
