"""Slot positions in remembered offers are shared int objects, from a table that grows
to the positions met and stays correct under concurrent growth."""

from __future__ import annotations

import threading

from rules import offers


def _made(n: int) -> int:
    """``n`` as a new int object (not a cached small int nor the table's)."""
    return int(str(n))


def test_positions_past_the_initial_table_are_shared_and_equal() -> None:
    first, stop = _made(40_000), _made(40_002)
    _, _, a, b = offers.found(0, None, first, stop)  # type: ignore[arg-type]
    _, _, c, d = offers.found(1, None, _made(40_000), _made(40_002))  # type: ignore[arg-type]
    assert (a, b) == (40_000, 40_002)
    assert a is c and b is d
    assert len(offers._POSITIONS) <= offers._POSITIONS_HELD


def test_positions_beyond_the_bound_stay_as_made() -> None:
    beyond = offers._POSITIONS_HELD + 5
    first, stop = _made(beyond - 2), _made(beyond)
    _, _, a, b = offers.found(0, None, first, stop)  # type: ignore[arg-type]
    assert (a, b) == (beyond - 2, beyond)
    assert a is first and b is stop
    assert len(offers._POSITIONS) <= offers._POSITIONS_HELD


def test_concurrent_growth_keeps_every_position_in_its_place() -> None:
    stops = list(range(1_000, offers._POSITIONS_HELD, 997))
    barrier = threading.Barrier(4)

    def grow(part: list[int]) -> None:
        barrier.wait()
        for stop in part:
            offers.found(0, None, stop - 1, stop)  # type: ignore[arg-type]

    threads = [threading.Thread(target=grow, args=(stops[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert list(range(len(offers._POSITIONS))) == offers._POSITIONS
    assert len(offers._POSITIONS) > stops[-1]
