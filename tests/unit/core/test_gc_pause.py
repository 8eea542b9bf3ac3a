"""The collector is off while any pause lasts and back as it was after the last."""

from __future__ import annotations

import gc
import threading

from app.core.gc_pause import collector_paused


def test_a_pause_turns_the_collector_off_and_back_on() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_collector_resumes_only_when_the_last_overlapping_pause_ends() -> None:
    first_in, release = threading.Event(), threading.Event()

    def other() -> None:
        with collector_paused():
            first_in.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    assert first_in.wait(5)
    with collector_paused():
        with collector_paused():  # nested
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert not gc.isenabled(), "the other thread's pause still runs"
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_error_in_the_block_still_resumes_the_collector() -> None:
    try:
        with collector_paused():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.isenabled()


def test_tuning_freezes_the_heap_and_makes_young_collections_rarer() -> None:
    from app.core.gc_pause import GC_GEN0_THRESHOLD, tune_collector

    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's default (an app in this process may have tuned)
    kept = [object() for _ in range(10)]  # noqa: F841  alive through the freeze
    try:
        tune_collector()
        assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD > 700
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
