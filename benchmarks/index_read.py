"""``index-read``: an API process's slot index reading a whole large cache.

Two reads cover every cached slot: the warm-up at start-up, and the catch-up after a
resync gave every schedule a new slots version (the next broad ``$find`` then reads
them all at once). Both must stay within an API process's memory: the first wave read
the rows whole, which took a process from ~170 MB to 1.4 GB for the catch-up at 1M
slots, and left the warm-up's survivors scattered over ~55 MB the process could not
give back.

A throwaway PostgreSQL cache is filled directly (as ``rules-preview`` fills it:
``--schedules`` schedules holding ``--slots`` free slots). In this process: the RSS
before, the warm-up's time and the RSS after it (after a collection and
``malloc_trim``, as the API does once warm), then every schedule's version bumped
(what a resync's writes do) and one read of a 30-day window of every schedule: its
time, the peak RSS during it (sampled every 50 ms) and the RSS after.
``python -m benchmarks index-read --slots 1000000``.
"""

from __future__ import annotations

import argparse
import gc
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.availability.service import MAX_SLOT_LENGTH
from app.availability.slot_index import SlotIndex
from app.cache import repository as repo
from app.cache.db import transaction
from app.cache.models import ScheduleRow
from app.core.heap import release_free_memory

from .rules_preview import filled_cache
from .smart_feed import _RssPeak

MB = 1024 * 1024


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slots", type=int, default=1_000_000, help="free slots to cache")
    p.add_argument("--schedules", type=int, default=600)


def _settle() -> int:
    """RSS once freed memory is handed back (what the API does after its warm-up)."""
    gc.collect()
    release_free_memory()
    return int(psutil.Process().memory_info().rss)


def run(args: argparse.Namespace) -> dict[str, Any]:
    now = datetime.now(UTC)
    with filled_cache(args.slots, args.schedules, now) as (engine, fill_seconds):
        before = _settle()
        index = SlotIndex(lookback=MAX_SLOT_LENGTH)
        started = time.perf_counter()
        with _RssPeak(psutil.Process().pid) as warm_peak:
            held = index.warm(lambda: Session(engine))
        warm_seconds = time.perf_counter() - started
        warm = _settle()
        with transaction(engine) as session:
            ids = list(session.execute(select(ScheduleRow.id)).scalars())
            repo.bump_slots_version(session, ids)
        started = time.perf_counter()
        with _RssPeak(psutil.Process().pid) as catch_up_peak, Session(engine) as session:
            read = index.read(session, ids, now, now + timedelta(days=30), now)
            in_window = sum(len(slots) for slots in read.slots.values())
        catch_up_seconds = time.perf_counter() - started
        after = _settle()
    return {
        "slots": args.slots,
        "schedules": args.schedules,
        "slots_held": held,
        "index_bytes_per_slot": round(index.nbytes / max(held, 1), 1),
        "fill_seconds": round(fill_seconds, 1),
        "rss_before_mb": round(before / MB, 1),
        "warm_up": {
            "seconds": round(warm_seconds, 1),
            "peak_rss_mb": round(warm_peak.peak / MB, 1),
            "rss_after_mb": round(warm / MB, 1),
            "rss_growth_mb": round((warm - before) / MB, 1),
        },
        "catch_up_after_resync": {
            "schedules": len(ids),
            "slots_in_window": in_window,
            "seconds": round(catch_up_seconds, 1),
            "peak_rss_mb": round(catch_up_peak.peak / MB, 1),
            "rss_after_mb": round(after / MB, 1),
        },
    }
