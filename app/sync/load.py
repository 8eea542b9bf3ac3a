"""Whole-window loads across every schedule: the original entry points, kept for callers.

``load_window`` is the ``window`` chunking as one call (the window widened to whole
UTC days, every schedule, one atomic snapshot replace, see :mod:`app.sync.chunk`);
``initial_load`` runs such windows one after the other in this process and records
the run. Production loads go through :mod:`app.sync.runs` (chunked, on workers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from app.cache import runs as runs_repo
from app.cache.db import transaction
from app.ehr.client import EhrClient

from .chunk import Chunk, ChunkResult, sync_chunk
from .windows import day_end, day_start, horizon_windows, utcnow

__all__ = ["LoadResult", "day_start", "initial_load", "load_window"]


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


@dataclass(frozen=True, slots=True)
class LoadResult:
    windows: int
    seen: int
    upserted: int
    deleted: int


def initial_load(
    engine: Engine,
    client: EhrClient,
    *,
    start: datetime,
    horizon_days: int,
    window_days: int,
    on_window: Callable[[ChunkResult], None] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> LoadResult:
    """Every schedule over the horizon, window by window here, recorded in ``sync_runs``."""
    windows = list(horizon_windows(day_start(start), horizon_days, window_days))
    with transaction(engine) as session:
        run_id = runs_repo.start_run(
            session,
            kind="initial-load",
            scope="*:window",
            window=(windows[0][0], windows[-1][1]),
            started_at=clock(),
        )
    seen = upserted = deleted = 0
    try:
        for w_start, w_end in windows:
            result = load_window(engine, client, w_start, w_end, clock=clock)
            seen, upserted, deleted = (
                seen + result.seen,
                upserted + result.upserted,
                deleted + result.deleted,
            )
            if on_window is not None:
                on_window(result)
    except Exception as exc:
        with transaction(engine) as session:
            runs_repo.finish_run(
                session,
                run_id,
                status="failed",
                finished_at=clock(),
                seen=seen,
                upserted=upserted,
                deleted=deleted,
                error=f"{exc.__class__.__name__}: {exc}"[:2000],
            )
        raise
    with transaction(engine) as session:
        runs_repo.finish_run(
            session,
            run_id,
            status="ok",
            finished_at=clock(),
            seen=seen,
            upserted=upserted,
            deleted=deleted,
        )
    return LoadResult(windows=len(windows), seen=seen, upserted=upserted, deleted=deleted)
