"""The C heap under a long-running process: how many glibc malloc arenas it may
make, and handing freed memory back.

Why: Python's objects of 512 bytes or less come from its own allocator, but every
larger block (a list of a day's offers, a response body, a driver's row buffer) comes
from glibc's ``malloc``, which gives each new thread that allocates an arena of its
own, up to eight per core. An API process runs requests on a pool of up to 40
threads (``$find`` then ran there too), so its freed blocks were scattered over 16
arenas that each kept what they once held: at 1M slots, 265 MB RSS against 246 MB
with two arenas, at the same latency (the GIL lets one thread allocate at a time
anyway). Elsewhere (no glibc) both functions do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

# mallopt's parameter number for the arena limit (glibc's malloc.h: M_ARENA_MAX)
_M_ARENA_MAX = -8
# Two, not one: a request's thread and the warm-up (or a sync read) allocate at once.
HEAP_ARENAS = 2


@cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_heap_arenas(arenas: int = HEAP_ARENAS) -> bool:
    """Cap the malloc arenas threads may create from now on (call it before the
    process starts its threads); whether the cap was set."""
    libc = _libc()
    return libc is not None and libc.mallopt(_M_ARENA_MAX, arenas) == 1


def release_free_memory() -> None:
    """Hand the heap's free memory back to the system (glibc's ``malloc_trim``).

    Reading every cached slot passes ~10 times the memory the slot index keeps through
    rows that are freed at once; glibc keeps such freed memory in the process, which
    then showed as tens of MB of RSS per API process that no object used."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
