"""Small builders of domain objects and FHIR JSON for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.domain import VISIT_TYPE_SYSTEM, Slot

T0 = datetime(2030, 1, 7, 14, 0, tzinfo=UTC)  # a Monday, 09:00 in New York


def slot(
    n: int, *, schedule: str = "sch-1", minutes: int = 15, status: str = "free", **kw: Any
) -> Slot:
    start = T0 + timedelta(minutes=minutes * n)
    return Slot(
        id=f"{schedule}-s{n}",
        schedule_id=schedule,
        start=start,
        end=start + timedelta(minutes=minutes),
        status=status,
        service_types=kw.pop("service_types", (f"{VISIT_TYPE_SYSTEM}|office-visit",)),
        **kw,
    )


def slot_json(s: Slot, *, offset: str = "-05:00") -> dict[str, Any]:
    """A prefetch-slot resource for a domain slot, with local-offset times like an EHR."""
    hours = int(offset[:3])
    local = lambda t: (t + timedelta(hours=hours)).replace(tzinfo=None).isoformat() + offset  # noqa: E731
    return {
        "resourceType": "Slot",
        "id": s.id,
        "schedule": {"reference": f"Schedule/{s.schedule_id}"},
        "status": s.status,
        "start": local(s.start),
        "end": local(s.end),
        "serviceType": [
            {"coding": [{"system": t.rsplit("|", 1)[0], "code": t.rsplit("|", 1)[1]}]}
            for t in s.service_types
        ],
    }


def schedule_json(sid: str, actors: list[str]) -> dict[str, Any]:
    return {
        "resourceType": "Schedule",
        "id": sid,
        "actor": [{"reference": a} for a in actors],
    }


def practitioner_json(pid: str, name: str) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "id": pid, "name": [{"text": name}]}


def bundle(resources: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": sum(1 for r in resources if r["resourceType"] == "Slot"),
        "entry": [
            {
                "resource": r,
                "search": {"mode": "match" if r["resourceType"] == "Slot" else "include"},
            }
            for r in resources
        ],
    }
    if next_url:
        b["link"] = [{"relation": "next", "url": next_url}]
    return b
