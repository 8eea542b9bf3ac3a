"""After each task the worker frees what the task left in reference cycles: young
generations every time, the whole heap every FULL_COLLECTION_EVERY tasks."""

from __future__ import annotations

import gc
import weakref

from workers import celery_app


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_a_cycle_that_reached_the_oldest_generation_is_freed_within_a_few_tasks():
    node = _Node()
    freed = weakref.ref(node)
    gc.collect(1)  # survives a young collection: now in the oldest generation
    del node
    ended = 0
    while freed() is not None and ended < celery_app.FULL_COLLECTION_EVERY:
        celery_app._collect_cycles()
        ended += 1
    assert freed() is None


def test_young_cycles_are_freed_after_every_task():
    for _ in range(celery_app.FULL_COLLECTION_EVERY):
        node = _Node()
        freed = weakref.ref(node)
        del node
        celery_app._collect_cycles()
        assert freed() is None
