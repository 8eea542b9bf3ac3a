"""The memo of rendered $find answers: served again only from the same inputs, within
the span the answer holds for, and within its byte bound."""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime, timedelta

from app.availability.answer_memo import AnswerMemo, FindInputs, pack, unpack
from app.availability.catalog import Catalog
from tests.unit.rules.factories import make_rules, visit

T0 = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)
UNTIL = datetime(2026, 3, 10, 12, 0, 59, 999999, tzinfo=UTC)
RULES = make_rules([visit()])
CATALOG = Catalog({}, {}, {"sch-1": T0 - timedelta(hours=1), "sch-2": T0 - timedelta(hours=2)})
SHOWN = ("sch-1",)  # the schedules of the offers the answer shows
INPUTS = FindInputs(RULES, CATALOG, generation=7, claimed=frozenset({"slot-1"}))
BODY = b'{"resourceType":"Bundle","type":"searchset","total":0}' * 20


def _got(memo: AnswerMemo, key: str, inputs: FindInputs, now: datetime) -> bytes | None:
    """The body the memo serves (it keeps and returns it packed)."""
    packed = memo.get(key, inputs, now)
    return None if packed is None else unpack(packed)


def _memo(max_bytes: int = 1 << 20) -> AnswerMemo:
    memo = AnswerMemo(max_bytes, ahead=timedelta(seconds=15))
    memo.put("a", INPUTS, T0, UNTIL, BODY, SHOWN)
    return memo


def test_the_same_inputs_within_the_span_get_the_body_back() -> None:
    memo = _memo()
    assert _got(memo, "a", INPUTS, T0) == BODY
    assert _got(memo, "a", INPUTS, UNTIL) == BODY
    assert _got(memo, "b", INPUTS, T0) is None
    assert (memo.hits, memo.misses) == (2, 1)


def test_a_catalog_read_again_with_the_same_maps_still_matches() -> None:
    memo = _memo()
    again = Catalog(CATALOG.schedules, CATALOG.actors, dict(CATALOG.confirmations))
    assert _got(memo, "a", FindInputs(RULES, again, 7, frozenset({"slot-1"})), T0) == BODY


def test_syncs_of_schedules_the_answer_does_not_show_leave_it_right() -> None:
    memo = _memo()
    confirmed = Catalog(CATALOG.schedules, CATALOG.actors, {**CATALOG.confirmations, "sch-2": T0})
    assert _got(memo, "a", FindInputs(RULES, confirmed, 7, INPUTS.claimed), T0) == BODY


def test_any_other_input_is_a_miss_and_the_answer_is_forgotten() -> None:
    changed = [
        FindInputs(RULES, CATALOG, 8, INPUTS.claimed),  # a sync wrote slots
        FindInputs(RULES, CATALOG, 7, frozenset()),  # a claim expired or was released
        FindInputs(RULES, CATALOG, 7, frozenset({"slot-1", "slot-2"})),  # a slot was held
        FindInputs(make_rules([visit()]), CATALOG, 7, INPUTS.claimed),  # rules reloaded
        FindInputs(  # a schedule shown was confirmed again: meta.lastUpdated moves
            RULES,
            Catalog(CATALOG.schedules, CATALOG.actors, {**CATALOG.confirmations, "sch-1": T0}),
            7,
            INPUTS.claimed,
        ),
        FindInputs(  # a schedule's sync failed: the answer warns of it
            RULES,
            Catalog(CATALOG.schedules, CATALOG.actors, CATALOG.confirmations, {"sch-1": "x"}),
            7,
            INPUTS.claimed,
        ),
        FindInputs(RULES, Catalog({}, {}, CATALOG.confirmations), 7, INPUTS.claimed),
    ]
    for inputs in changed:
        memo = _memo()
        assert _got(memo, "a", inputs, T0) is None
        assert len(memo) == 0 and memo.nbytes == 0
        assert _got(memo, "a", INPUTS, T0) is None  # forgotten


def test_past_its_span_an_answer_is_forgotten_and_before_it_kept() -> None:
    memo = _memo()
    assert _got(memo, "a", INPUTS, T0 - timedelta(microseconds=1)) is None  # an older request
    assert _got(memo, "a", INPUTS, T0) == BODY
    assert _got(memo, "a", INPUTS, UNTIL + timedelta(microseconds=1)) is None
    assert len(memo) == 0


def test_bodies_are_held_compressed_within_the_bound_least_recently_used_first() -> None:
    packed = len(pack(BODY))
    memo = AnswerMemo(3 * packed)
    for key in "abc":
        memo.put(key, INPUTS, T0, UNTIL, BODY, SHOWN)
    assert memo.nbytes == 3 * packed < len(BODY)
    assert _got(memo, "a", INPUTS, T0) == BODY  # "b" is now the least recently used
    memo.put("d", INPUTS, T0, UNTIL, BODY, SHOWN)
    assert _got(memo, "b", INPUTS, T0) is None
    assert [_got(memo, k, INPUTS, T0) for k in "acd"] == [BODY] * 3
    assert memo.nbytes == 3 * packed
    memo.put("e", INPUTS, T0, UNTIL, os.urandom(4 * packed), SHOWN)  # larger than the bound
    assert _got(memo, "e", INPUTS, T0) is None
    assert [_got(memo, k, INPUTS, T0) for k in "acd"] == [BODY] * 3


def test_the_next_answer_is_asked_for_once_near_the_end_and_served_after_it() -> None:
    memo = _memo()
    assert memo.due_next("a", UNTIL - timedelta(seconds=16)) is None  # not yet
    then = memo.due_next("a", UNTIL - timedelta(seconds=10))
    # past the whole minute that follows UNTIL: what holds for the rest of that minute
    assert then == UNTIL + timedelta(microseconds=2)
    assert memo.due_next("a", UNTIL - timedelta(seconds=9)) is None  # asked already
    following = b'{"resourceType":"Bundle","total":1}'
    memo.put("a", INPUTS, then, then + timedelta(seconds=59), following, SHOWN, ahead=True)
    assert _got(memo, "a", INPUTS, UNTIL) == BODY  # the current one until its end
    assert _got(memo, "a", INPUTS, then) == following
    assert memo.nbytes == len(pack(following))


def test_after_an_end_off_the_minute_the_next_answer_starts_at_the_next_instant() -> None:
    memo = AnswerMemo(1 << 20)
    until = T0 + timedelta(hours=3)  # e.g. until a lead time reaches the window
    memo.put("a", INPUTS, T0, until, BODY, SHOWN)
    assert memo.due_next("a", until - timedelta(seconds=1)) == until + timedelta(microseconds=1)


def test_an_answer_made_ahead_is_not_served_from_other_inputs() -> None:
    memo = _memo()
    then = memo.due_next("a", UNTIL - timedelta(seconds=1))
    assert then is not None
    memo.put("a", INPUTS, then, then + timedelta(seconds=59), b"{}", SHOWN, ahead=True)
    assert _got(memo, "a", FindInputs(RULES, CATALOG, 8, INPUTS.claimed), then) is None
    assert len(memo) == 0 and memo.nbytes == 0


def test_answers_are_kept_as_a_gzip_response_body_and_put_returns_them_so() -> None:
    memo = AnswerMemo(1 << 20)
    packed = memo.put("a", INPUTS, T0, UNTIL, BODY, SHOWN)
    assert memo.get("a", INPUTS, T0) == packed
    assert gzip.decompress(packed) == BODY  # any gzip decoder, as a client's, reads it
    tiny = AnswerMemo(8)
    assert gzip.decompress(tiny.put("a", INPUTS, T0, UNTIL, BODY, SHOWN)) == BODY
    assert tiny.get("a", INPUTS, T0) is None  # too large to keep, still served once
