"""The feed's SQL (app.cache.publish_queries) on both backends: Slot lines built by the
database are the lines the Python renderer writes, in file order, and ``_since``
selects what a refresh changed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from fhir.resources.R4B import get_fhir_model_class as r4_model
from sqlalchemy.orm import Session

from app.cache import publish_queries as q
from app.cache.db import transaction
from app.core.times import millisecond_instant
from app.publish import resources

T = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
TOKEN = "AVTBYnIO911a6JWfdD-VcEM1yDsOgCAQANG7bM0G8BPCHSzsCQVZIW6iYIB4frWwezMOSkpMEW9u3EFoY8_"
CONTACTS = [
    resources.Contact(
        identifier_system="urn:x",
        phone='555 "0100"',
        booking_link="https://app.example.org/book?slot={slot_id}&appointment={proposal_id}&x=1",
    ),
    resources.Contact(identifier_system="urn:x", booking_link="{proposal_id}"),
    resources.Contact(identifier_system="urn:x"),
]


def row(n: int, status: str, updated: datetime, week: str = "2026-W50") -> dict:
    start = T + timedelta(minutes=15 * (n // 2), microseconds=0)
    return {
        "id": f"o{n:03d}",
        "schedule": f"sch-{n % 2}.office-visit",
        "state": "MA",
        "week": week,
        "start": start,
        "end": start + timedelta(minutes=15),
        "status": status,
        "proposal_id": f"{TOKEN}{n}",
        "digest": "d",
        "updated_at": updated,
    }


def stream(engine, lines: resources.SlotLines, **kw) -> list[str]:
    args = {"week": "2026-W50", "offset": 0, "limit": 100, "since": None, **kw}
    with Session(engine) as session:
        return list(q.stream_lines(session, free=lines.free, busy=lines.busy, **args))


def test_database_lines_are_the_python_lines(engine):
    updated = T - timedelta(days=1, milliseconds=-123)
    rows = [row(n, "busy" if n % 3 == 0 else "free", updated) for n in range(7)]
    rows.append(row(99, "free", updated, week="2026-W51"))
    with transaction(engine) as session:
        q.upsert_slots(session, rows)
    for contact in CONTACTS:
        lines = resources.SlotLines(contact)
        streamed = stream(engine, lines)
        expected = [
            lines.line(
                r["id"],
                r["schedule"],
                millisecond_instant(r["start"]),
                millisecond_instant(r["end"]),
                r["status"],
                r["proposal_id"],
                millisecond_instant(r["updated_at"]),
            )
            for r in sorted(rows[:7], key=lambda r: (r["start"], r["id"]))
        ]
        assert streamed == expected
        for text in streamed:
            r4_model("Slot").model_validate(json.loads(text))
    lines = resources.SlotLines(CONTACTS[0])
    assert stream(engine, lines, offset=2, limit=3) == stream(engine, lines)[2:5]


def test_since_selects_rows_changed_after_it(engine):
    old, new = T - timedelta(hours=2), T - timedelta(hours=1)
    with transaction(engine) as session:
        q.upsert_slots(session, [row(1, "free", old), row(2, "busy", new), row(3, "free", new)])
    lines = resources.SlotLines(CONTACTS[2])
    ids = [json.loads(t)["id"] for t in stream(engine, lines, since=old)]
    assert ids == ["o002", "o003"]
    with Session(engine) as session:
        assert q.file_counts(session, old) == [q.FileCount("MA", "2026-W50", 2)]
        assert q.published_schedules(session) == {"sch-0.office-visit", "sch-1.office-visit"}
