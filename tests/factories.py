"""Small builders of domain objects and FHIR JSON for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.core.domain import VISIT_TYPE_SYSTEM, Slot
from tests.paths import FIXTURES


def _next_monday(days_ahead: int = 7) -> datetime:
    day = datetime.now(UTC).date() + timedelta(days=days_ahead)
    day += timedelta(days=-day.weekday() % 7)
    return datetime(day.year, day.month, day.day, 14, 0, tzinfo=UTC)


# A Monday 14:00 UTC (09:00 in New York) one to two weeks ahead: inside every booking
# horizon the rules allow, so test data stays bookable whatever day the suite runs.
T0 = _next_monday()
T0_DAY = T0.date().isoformat()
T0_NEXT_DAY = (T0.date() + timedelta(days=1)).isoformat()
OPEN_RULES = FIXTURES / "open-rules.yaml"


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
