"""CPython's cyclic garbage collector: tuned for long-lived processes, paused around bulk work.

Our processes hold a large heap that lives as long as they do (a worker's imports, an
API process's slot index and offer memo) and make many short-lived containers per
task or request. :func:`tune_collector` freezes the first out of the collector's way
and makes young collections rarer; :func:`collector_paused` turns it off around one
bulk computation.

The rules preview composes millions of offers as short-lived tuples, and the memo
keeps many of them alive a while. With the collector's default thresholds, young
collections walk every surviving tuple again and again: measured at a million
cached slots, 45 % of a preview (25.4 s with it, 14.1 s without). The preview makes
no reference cycles of its own (its tuples, lists and dicts are freed by their
reference counts), so the collector is paused while it runs and resumed after,
when whatever cycles other threads made meanwhile are collected as usual.

Process-wide, as the collector is: nested and concurrent pauses count, and the
collector runs again when the last one ends, unless it was off before the first.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Objects allocated (net) between young collections; CPython's default is 700. A
# worker's chunk allocates a page of slots at a time and a broad $find tens of
# thousands of offer tuples: at 700 the collector walks the survivors again every few
# hundred objects. In workers it cost more than the parsing. In the API, two runs each
# of `benchmarks find` at 1M slots gave broad p99 17.9 / 28.9 ms with this against
# 29.5 / 39.6 ms with 700, but run-to-run spread was as large as the difference.
GC_GEN0_THRESHOLD = 50_000


def tune_collector() -> None:
    """Freeze every object alive now out of the collector's way (and, before a prefork
    pool forks, out of the pages its children would otherwise copy), and make young
    collections rarer. Called once a process has built what it keeps."""
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)


_lock = threading.Lock()
_pauses = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off (reference counting still frees)."""
    global _pauses, _was_enabled
    with _lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()
