"""Joined reads its parts as the one list they would make, wherever it is cut."""

from bisect import bisect_left, bisect_right

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.joined import Joined, items_from

parts_lists = st.lists(st.lists(st.integers(-5, 5), max_size=4), max_size=5)


@given(parts_lists)
def test_it_reads_as_the_concatenation(parts):
    whole = [x for part in parts for x in part]
    joined = Joined(parts)
    assert len(joined) == len(whole)
    assert list(joined) == whole
    assert [joined[i] for i in range(-len(whole), len(whole))] == whole + whole
    for i in range(len(whole) + 2):
        assert joined.head(i) == whole[:i]
        assert list(joined.from_position(i)) == whole[i:]
        assert list(items_from(joined, i)) == whole[i:] == list(items_from(whole, i))
        assert joined[i:] == whole[i:]
    with pytest.raises(IndexError):
        joined[len(whole)]
    with pytest.raises(IndexError):
        joined[-len(whole) - 1]


@given(st.lists(st.lists(st.integers(0, 9), max_size=4), max_size=5), st.integers(-1, 10))
def test_bisect_finds_the_same_position(parts, value):
    whole = sorted(x for part in parts for x in part)
    # the same values, sorted, cut into parts of the original sizes
    sized, at = [], 0
    for part in parts:
        sized.append(whole[at : at + len(part)])
        at += len(part)
    joined = Joined(sized)
    assert bisect_right(joined, value) == bisect_right(whole, value)
    assert bisect_left(joined, value, key=lambda x: x) == bisect_left(whole, value)


def test_parts_are_not_copied():
    first, second = [(1,)], [(2,), (3,)]
    joined = Joined([first, second])
    assert joined[0] is first[0] and joined[2] is second[1]
