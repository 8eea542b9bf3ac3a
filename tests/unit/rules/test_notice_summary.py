"""Warnings of $find: one per distinct cause, never one per visit type."""

from __future__ import annotations

from rules.request import LISTED_VISIT_TYPES, Notice, summarise_notices


def test_one_message_per_cause_naming_the_visit_types() -> None:
    late = [
        Notice("outside-bookable-window", f"vt-{n}: nothing can be booked", visit_type=f"vt-{n}")
        for n in range(17)
    ]
    unknown = Notice("unknown-visit-type", "visit type x is not offered", visit_type="x")
    messages = summarise_notices([*late, unknown])
    assert len(messages) == 2
    window, single = messages
    assert "17 visit types" in window and "vt-0" in window
    assert f"and {17 - LISTED_VISIT_TYPES} more" in window
    assert f"vt-{LISTED_VISIT_TYPES}" not in window.split("e.g.")[0]
    assert single == "visit type x is not offered"


def test_a_single_notice_keeps_its_own_words() -> None:
    notice = Notice("ineligible", "Skin check: patient is not eligible (age)", visit_type="sk")
    assert summarise_notices([notice]) == [notice.message]
    assert summarise_notices([]) == []
