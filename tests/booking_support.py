"""The booking tests' domain: the bundled multi-clinic rules, a day they leave open, and
the pieces of the offers ``$find`` makes and of the Parameters ``$hold``/``$book`` take."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

import rules
from app.cache import claims
from app.cache.db import transaction
from app.core.domain import VISIT_TYPE_SYSTEM, Slot
from rules.loader import load_rules
from rules.schema import RulesFile

RULES_PATH = Path(rules.__file__).parent / "examples" / "multi-clinic.yaml"
SNOMED = "http://snomed.info/sct"
DERMATOLOGY = f"{SNOMED}|394582007"
FAMILY_PRACTICE = f"{SNOMED}|419772000"
OFFICE_VISIT = f"{VISIT_TYPE_SYSTEM}|office-visit"


def load_test_rules() -> RulesFile:
    return load_rules(RULES_PATH)


def bookable_day(rules_file: RulesFile) -> date:
    """The first weekday at least two days ahead that the rules do not close."""
    day = datetime.now(UTC).date() + timedelta(days=2)
    while day.weekday() >= 5 or any(c.covers(day, None) for c in rules_file.organization.closures):
        day += timedelta(days=1)
    return day


def slot_ids(appointment: dict[str, Any]) -> list[str]:
    return [s["reference"].split("/", 1)[1] for s in appointment.get("slot", [])]


def token_of(appointment: dict[str, Any]) -> str:
    return str(appointment["identifier"][0]["value"])


def params(*items: tuple[str, str, Any]) -> dict[str, Any]:
    """``Parameters`` from (name, value[x] key, value) triples; key "resource" for resources."""
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": name, key: value} for name, key, value in items],
    }


def claim_slots(
    engine: Engine,
    slots: Iterable[Slot],
    claim_id: str,
    *,
    kind: str = claims.HELD,
    ttl: timedelta = timedelta(minutes=5),
    now: datetime | None = None,
) -> None:
    """Claim ``slots`` in the cache's claims table as ``$hold``/``$book`` do, live for
    ``ttl`` from ``now`` (the present if None)."""
    now = now or datetime.now(UTC)
    with transaction(engine) as session:
        claims.insert_claims(
            session, slots, claim_id=claim_id, kind=kind, expires_at=now + ttl, now=now
        )
