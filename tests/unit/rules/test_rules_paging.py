"""Property test: a page of ``$find`` merged from each visit type's ordered offers is
the page that ordering every offer of the window gives.

:func:`rules.selection.choose_page` merges lazily (a broad request has tens of
thousands of offers and shows a hundred); the reference orders them all. Random
organisations from the composer's property tests, with a second visit type and a
second variant of the first (whose offers coincide and count once), every ordering
but ``practitioner-preference`` (which orders every offer itself), random page sizes,
walked page by page to the end.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from rules.assets import AssetIndex
from rules.request import Page
from rules.schema import RulesFile
from rules.selection import _page_merged, _page_sorted, _selections
from tests.unit.rules.factories import vt
from tests.unit.rules.test_rules_properties import PROPERTY, Case, cases


def _with_variants(rules: RulesFile, ordering: str, cap: int | None) -> RulesFile:
    first = rules.visit_types[0].model_copy(
        update={"ordering": ordering, "max_offers_per_day_per_practitioner": cap}
    )
    variant = first.model_copy(update={"duration_minutes": first.duration_minutes + 5})
    other = first.model_copy(update={"code": vt("follow-up"), "ordering": "earliest"})
    return rules.model_copy(update={"visit_types": [first, variant, other]})


def _walk(page_of: Any, chosen: Any, size: int) -> tuple[list[tuple[Any, ...]], list[int]]:
    shown: list[tuple[Any, ...]] = []
    totals: list[int] = []
    after = None
    while True:
        candidates, total, after = page_of(chosen, Page(size=size, after=after))
        shown += [(c.start, c.pref, c.primary.ref, c.end, c.slot_ids) for c in candidates]
        totals.append(total)
        if after is None:
            return shown, totals


@PROPERTY
@given(
    cases(),
    st.sampled_from(["earliest", "spread"]),
    st.sampled_from([None, 1, 2]),
    st.integers(1, 7),
)
def test_merged_pages_are_the_pages_of_every_offer_ordered(
    case: Case, ordering: str, cap: int | None, size: int
) -> None:
    rules = _with_variants(case.rules, ordering, cap)
    index = AssetIndex(case.slots, case.schedules, case.actors)
    request = replace(case.request, count=None)  # as choose_page asks
    chosen, _ = _selections(request, rules, index, case.actors, case.now, None)
    assert _walk(_page_merged, chosen, size) == _walk(_page_sorted, chosen, size)
