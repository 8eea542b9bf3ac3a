"""``slotsync rules diff`` as tables: the edit, then per cohort the counts and examples."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Column, Table

if TYPE_CHECKING:
    from app.availability.preview import Preview
    from rules.preview import Change, Example, Tally

ROWS = 15  # rows per breakdown; the biggest changes first
VALUE_WIDTH = 40


def print_preview(preview: Preview, *, live: str, new: str) -> None:
    out = Console()
    out.print(
        f"rules diff: {live} (in force) -> {new}, over"
        f" {preview.start:%Y-%m-%d %H:%M} .. {preview.end:%Y-%m-%d %H:%M} UTC",
        highlight=False,
    )
    if not preview.changes:
        out.print("the files are the same rules: nothing changes")
        return
    edits = Table("path", "change", "in force", "new", title="edit", title_justify="left")
    for change in preview.changes:
        edits.add_row(change.path, change.kind, _value(change.old), _value(change.new))
    out.print(edits)
    for tally in preview.tallies:
        _print_tally(out, tally)


def _print_tally(out: Console, tally: Tally) -> None:
    label = tally.cohort.label
    if tally.cohort.visit_types is not None:
        label += " (visit types whose eligibility changed)"
    out.print(
        f"\n[bold]{label}[/bold]: {tally.offers_before} offers -> {tally.offers_after}:"
        f" +{tally.gained} gained, -{tally.lost} lost",
        highlight=False,
    )
    if not tally.gained and not tally.lost:
        return
    for title, table in (
        ("visit type", tally.visit_types),
        ("schedule", tally.schedules),
        ("day", tally.days),
    ):
        _print_counts(out, title, table)
    examples = Table(
        "",
        Column("start (UTC)", no_wrap=True),
        "visit type",
        "schedule",
        "reason",
        "rule",
        "edit",
        title="examples (the reason is the other file's)",
        title_justify="left",
    )
    for direction, sign in (("gained", "+"), ("lost", "-")):
        for example in tally.examples[direction]:
            examples.add_row(sign, *_example_row(example))
    out.print(examples)


def _print_counts(out: Console, title: str, table: dict[str, Counter[str]]) -> None:
    ranked = sorted(table.items(), key=lambda kv: (-(kv[1]["gained"] + kv[1]["lost"]), kv[0]))
    shown = Table(title, "gained", "lost", title=f"by {title}", title_justify="left")
    for key, counts in ranked if title == "day" else ranked[:ROWS]:
        shown.add_row(key.rpartition("|")[2] or key, str(counts["gained"]), str(counts["lost"]))
    if title != "day" and len(ranked) > ROWS:
        shown.add_row(f"... {len(ranked) - ROWS} more", "", "")
    out.print(shown)


def _example_row(example: Example) -> list[str]:
    o = example.offer
    return [
        f"{o.start:%Y-%m-%d %H:%M}",
        o.visit_type.rpartition("|")[2],
        o.schedule_id,
        example.reason or "-",
        example.rule or "-",
        _edit(example.cause),
    ]


def _edit(change: Change | None) -> str:
    if change is None:
        return "-"
    return f"{change.path}: {_value(change.old)} -> {_value(change.new)}"


def _value(value: object) -> str:
    text = "-" if value is None else json.dumps(value, default=str)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 3] + "..."
