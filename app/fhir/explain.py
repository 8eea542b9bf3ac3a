"""The ``$find`` explain mode's OperationOutcome: one issue per group of slots not
offered, coded in slotsync's own code system (:data:`rules.explain.NOT_OFFERED_SYSTEM`).

The same JSON in STU3 and R4: issue ``details.coding``, ``diagnostics`` and
extensions are alike in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.core.times import second_instant
from rules.explain import NOT_OFFERED_SYSTEM, Reason

EXTENSION = "http://slotsync.example/fhir/StructureDefinition/not-offered-"
LISTED_SLOTS = 5  # slot ids named per issue; the count says how many in all


def explain_outcome(reasons: Sequence[Reason]) -> dict[str, Any]:
    """An OperationOutcome saying why each group of cached slots was not offered."""
    issues = [_issue(r) for r in reasons] or [
        {
            "severity": "information",
            "code": "informational",
            "diagnostics": "every cached slot in the window is part of an offer",
        }
    ]
    return {"resourceType": "OperationOutcome", "issue": issues}


def explain_entry(reasons: Sequence[Reason]) -> dict[str, Any]:
    """The Bundle entry of :func:`explain_outcome` (``search.mode`` outcome)."""
    return {"resource": explain_outcome(reasons), "search": {"mode": "outcome"}}


def _issue(reason: Reason) -> dict[str, Any]:
    ids = reason.slot_ids
    listed = ", ".join(f"Slot/{i}" for i in ids[:LISTED_SLOTS])
    if len(ids) > LISTED_SLOTS:
        listed += f" and {len(ids) - LISTED_SLOTS} more"
    rule = f" (rule {reason.rule})" if reason.rule else ""
    extensions: list[dict[str, Any]] = [
        {
            "url": EXTENSION + "schedule",
            "valueReference": {"reference": f"Schedule/{reason.schedule_id}"},
        },
        {
            "url": EXTENSION + "period",
            "valuePeriod": {
                "start": second_instant(reason.start),
                "end": second_instant(reason.end),
            },
        },
        {"url": EXTENSION + "slot-count", "valueInteger": len(ids)},
        *(
            {"url": EXTENSION + "slot", "valueReference": {"reference": f"Slot/{i}"}}
            for i in ids[:LISTED_SLOTS]
        ),
    ]
    if reason.rule:
        extensions.append({"url": EXTENSION + "rule", "valueString": reason.rule})
    if reason.visit_type:
        extensions.append({"url": EXTENSION + "visit-type", "valueString": reason.visit_type})
    return {
        "extension": extensions,
        "severity": "information",
        "code": "informational",
        "details": {
            "coding": [
                {"system": NOT_OFFERED_SYSTEM, "code": reason.code, "display": reason.display}
            ],
            "text": reason.detail or reason.display,
        },
        "diagnostics": (
            f"Schedule/{reason.schedule_id} {second_instant(reason.start)} to"
            f" {second_instant(reason.end)}: "
            + (
                f"{len(ids)} slot{'s' if len(ids) != 1 else ''} not offered, {reason.display}"
                f"{rule}: {listed}"
                if ids
                else f"{reason.display}{rule}"
            )
        ),
    }
