"""Initial load: fetch every free slot of the horizon, one window at a time.

Each window is an atomic snapshot replace across all schedules: the EHR's whole
answer for the window is read first (a failure part-way leaves the cache as it
was), then merged in one transaction. Windows are independent, so they can run
in parallel on several workers and a failed window is retried alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from app.cache import repository as repo
from app.cache.db import transaction
from app.cache.snapshot import plan_snapshot
from app.domain import Actor, Schedule, Slot
from app.ehr.client import EhrClient
from app.fhir.parse import parse_bundle_page, parse_schedule

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class WindowResult:
    start: datetime
    end: datetime
    seen: int
    upserted: int
    deleted: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class FetchedWindow:
    slots: list[Slot]
    schedules: dict[str, Schedule]
    actors: dict[str, Actor]


def horizon_windows(
    start: datetime, horizon_days: int, window_days: int
) -> Iterator[tuple[datetime, datetime]]:
    """Consecutive half-open windows covering [start, start + horizon)."""
    end = start + timedelta(days=horizon_days)
    step = timedelta(days=window_days)
    cursor = start
    while cursor < end:
        yield cursor, min(cursor + step, end)
        cursor += step


def day_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def fetch_window(client: EhrClient, start: datetime, end: datetime) -> FetchedWindow:
    """Read the EHR's complete answer for one window (all pages) into memory."""
    slots: list[Slot] = []
    schedules: dict[str, Schedule] = {}
    actors: dict[str, Actor] = {}
    for bundle in client.prefetch_pages(start, end):
        page = parse_bundle_page(bundle)
        slots.extend(page.slots)
        schedules.update((s.id, s) for s in page.schedules)
        actors.update((a.ref, a) for a in page.actors)
    return FetchedWindow(slots=slots, schedules=schedules, actors=actors)


def _read_missing_schedules(
    client: EhrClient, engine: Engine, fetched: FetchedWindow
) -> dict[str, Schedule]:
    """Schedules referenced by slots but neither included in the answer nor cached."""
    wanted = {s.schedule_id for s in fetched.slots} - set(fetched.schedules)
    if not wanted:
        return {}
    with transaction(engine) as session:
        known = set(repo.schedules_by_id(session, wanted))
    return {
        sid: parse_schedule(client.get_json(f"/Schedule/{sid}")) for sid in sorted(wanted - known)
    }


def load_window(
    engine: Engine,
    client: EhrClient,
    start: datetime,
    end: datetime,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> WindowResult:
    """Replace the cached window [start, end) of every schedule with the EHR's answer."""
    confirmed_at = clock()  # when the EHR was asked: data is at least this fresh
    fetched = fetch_window(client, start, end)
    schedules = {**fetched.schedules, **_read_missing_schedules(client, engine, fetched)}
    with transaction(engine) as session:
        repo.upsert_actors(session, fetched.actors.values(), confirmed_at)
        repo.upsert_schedules(session, schedules.values(), confirmed_at)
        cached = repo.cached_slots(session, None, start, end)
        plan = plan_snapshot(cached, fetched.slots)
        repo.apply_snapshot(session, plan, confirmed_at)
        repo.confirm_window(session, None, start, end, confirmed_at)
    return WindowResult(
        start=start,
        end=end,
        seen=len(fetched.slots),
        upserted=len(plan.upserts),
        deleted=len(plan.deletes),
        unchanged=plan.unchanged,
    )


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
    on_window: Callable[[WindowResult], None] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> LoadResult:
    """Load the whole horizon window by window, recording the run in ``sync_runs``."""
    windows = list(horizon_windows(start, horizon_days, window_days))
    with transaction(engine) as session:
        run_id = repo.start_run(
            session,
            kind="initial-load",
            scope="*",
            window=(windows[0][0], windows[-1][1]),
            started_at=clock(),
        )
    seen = upserted = deleted = 0
    try:
        for w_start, w_end in windows:
            result = load_window(engine, client, w_start, w_end, clock=clock)
            seen += result.seen
            upserted += result.upserted
            deleted += result.deleted
            if on_window:
                on_window(result)
    except Exception as exc:
        with transaction(engine) as session:
            repo.finish_run(
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
        repo.finish_run(
            session,
            run_id,
            status="ok",
            finished_at=clock(),
            seen=seen,
            upserted=upserted,
            deleted=deleted,
        )
    return LoadResult(windows=len(windows), seen=seen, upserted=upserted, deleted=deleted)
