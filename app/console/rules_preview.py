"""The Rules page's preview of an uploaded file: what ``slotsync rules diff`` says, as
plain rows for the template.

It reads what the page may show: schedule ids, practitioner references, visit type
codes, times and the rules' own text. The previewed patients are made up (an age, a
gender), never anyone's record. The template escapes every value.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from app.availability.preview import Preview
from app.cache.db import read_session
from app.sync.windows import utcnow
from rules.preview import GAINED, LOST, Change, Tally
from rules.schema import RulesFile

ROWS = 10  # per breakdown, the biggest changes first
VALUE_WIDTH = 60


def preview_context(request: Request, new: RulesFile) -> dict[str, Any]:
    """The preview of ``new`` against the rules in force, from this process's slot index."""
    with read_session(request.app.state.engine) as session:
        preview = request.app.state.finder.preview(session, new, utcnow())
    return _rows(preview)


def _rows(preview: Preview) -> dict[str, Any]:
    return {
        "start": f"{preview.start:%Y-%m-%d %H:%M}",
        "end": f"{preview.end:%Y-%m-%d %H:%M}",
        "changes": [
            {"path": c.path, "kind": c.kind, "old": _value(c.old), "new": _value(c.new)}
            for c in preview.changes
        ],
        "cohorts": [_cohort(t) for t in preview.tallies],
    }


def _cohort(tally: Tally) -> dict[str, Any]:
    examples = [
        {
            "direction": direction,
            "start": f"{e.offer.start:%Y-%m-%d %H:%M}",
            "visit_type": e.offer.visit_type.rpartition("|")[2],
            "schedule": e.offer.schedule_id,
            "reason": e.reason or "",
            "rule": e.rule or "",
            "edit": _edit(e.cause),
        }
        for direction in (GAINED, LOST)
        for e in tally.examples[direction]
    ]
    return {
        "label": tally.cohort.label,
        "before": tally.offers_before,
        "after": tally.offers_after,
        "gained": tally.gained,
        "lost": tally.lost,
        "breakdowns": [
            ("visit type", _top(tally.visit_types, short=True)),
            ("schedule", _top(tally.schedules)),
            ("day", _top(tally.days, by_key=True)),
        ],
        "examples": examples,
    }


def _top(table: dict[str, Any], *, short: bool = False, by_key: bool = False) -> list[Any]:
    ranked = sorted(
        table.items(),
        key=(lambda kv: kv[0]) if by_key else (lambda kv: (-(kv[1][GAINED] + kv[1][LOST]), kv[0])),
    )
    return [
        (key.rpartition("|")[2] if short else key, counts[GAINED], counts[LOST])
        for key, counts in ranked[: ROWS * 3 if by_key else ROWS]
    ]


def _edit(change: Change | None) -> str:
    if change is None:
        return ""
    return f"{change.path}: {_value(change.old)} -> {_value(change.new)}"


def _value(value: object) -> str:
    text = "-" if value is None else json.dumps(value, default=str)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 3] + "..."
