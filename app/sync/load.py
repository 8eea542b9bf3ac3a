"""One whole-window load across every schedule, without recording a run.

``load_window`` is the ``window`` chunking as one call (the window widened to whole
UTC days, every schedule, one atomic snapshot replace, see :mod:`app.sync.chunk`):
the quick way to fill a cache (the tests do). Recorded loads go through
:mod:`app.sync.runs` (chunked, here or on workers).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from app.ehr.client import EhrClient

from .chunk import Chunk, ChunkResult, sync_chunk
from .windows import day_end, day_start, utcnow


def load_window(
    engine: Engine,
    client: EhrClient,
    start: datetime,
    end: datetime,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> ChunkResult:
    """Replace every schedule's slots in the days of [start, end) with the EHR's answer."""
    return sync_chunk(engine, client, Chunk(None, day_start(start), day_end(end)), clock=clock)
