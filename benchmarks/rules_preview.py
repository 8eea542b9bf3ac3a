"""``rules-preview``: the rules preview (``slotsync rules diff``) over a large cache.

A throwaway PostgreSQL cache is filled directly: ``--schedules`` practitioners' schedules
holding ``--slots`` free 15-minute slots in weekday clinic hours (08:00-17:00 UTC) from
tomorrow on. The rules in force offer three visit types on them (15 minutes; 30 minutes
on joined slots with a per-day cap and ``spread`` ordering; 45 minutes joined). The
``broad`` change shortens Tuesday's hours, raises the lead time to two days and puts a
15-minute buffer after the 30-minute visits (every visit type is composed under both
files); the ``one_visit_type`` change only adds the buffer (only that visit type is).

In this process the slot index is loaded first (what every API process holds anyway;
the CLI loads it per run: timed apart) and ``$find``'s offer memo warmed for the rules
in force (as an API process does at start-up; ``--no-memo``: not, as the CLI runs),
then each preview runs as ``POST /admin/rules/preview`` runs it. Per preview: wall
and CPU time, the process's RSS just before it and at its peak (sampled every 50 ms:
the growth is the preview's own memory), and the counts. Target (issue #21): at most
30 s at 1M cached slots, memory bounded (offers are compared a day at a time, never
the horizon's at once). ``python -m benchmarks rules-preview --slots 1000000``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.availability.catalog import read_catalog
from app.availability.preview import preview_rules
from app.availability.service import MAX_SLOT_LENGTH, warm_offers
from app.availability.slot_index import SlotIndex
from app.cache import repository as repo
from app.cache.db import make_engine, transaction
from app.cache.snapshot import SnapshotPlan
from app.core.domain import Actor, Schedule, Slot
from rules.loader import parse_rules
from rules.offer_memo import OfferMemo
from rules.schema import RulesFile

from .databases import throwaway_postgres
from .smart_feed import _RssPeak

TARGET_SECONDS = 30.0
BATCH = 50_000
VISIT = "http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type"
DAY_SLOTS = 36  # 08:00-17:00 in 15-minute slots


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slots", type=int, default=1_000_000)
    p.add_argument("--schedules", type=int, default=1000)
    p.add_argument(
        "--memo",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reuse $find's warm offer memo for the rules in force, as POST"
        " /admin/rules/preview does (--no-memo: as `slotsync rules diff` does)",
    )


def live_rules() -> dict[str, Any]:
    weekdays = {day: ["08:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
    practitioner = [{"kind": "practitioner"}]
    return {
        "version": 1,
        "organization": {"name": "Benchmark", "timezone": "UTC", "opening_hours": weekdays},
        "defaults": {"min_lead_minutes": 120, "max_horizon_days": 90, "join_contiguous": True},
        "visit_types": [
            {
                "code": f"{VISIT}|office-visit",
                "duration_minutes": 15,
                "slot_service_types": [],
                "assets": practitioner,
            },
            {
                "code": f"{VISIT}|follow-up",
                "duration_minutes": 30,
                "slot_service_types": [],
                "max_offers_per_day_per_practitioner": 8,
                "ordering": "spread",
                "assets": practitioner,
            },
            {
                "code": f"{VISIT}|physical",
                "duration_minutes": 45,
                "slot_service_types": [],
                "assets": practitioner,
            },
        ],
    }


def new_rules() -> dict[str, Any]:
    """A broad change: the organisation's hours and the default lead time touch every
    visit type, so every one is composed under both files."""
    data = live_rules()
    data["organization"]["opening_hours"]["tue"] = ["09:00-12:00"]
    data["defaults"]["min_lead_minutes"] = 2 * 24 * 60
    data["visit_types"][1]["buffer_after_minutes"] = 15
    return data


def one_visit_type() -> dict[str, Any]:
    """A change to one visit type (the usual edit): only it is composed."""
    data = live_rules()
    data["visit_types"][1]["buffer_after_minutes"] = 15
    return data


def _parse(data: dict[str, Any]) -> RulesFile:
    return parse_rules(yaml.safe_dump(data, sort_keys=False))


def _slot_start(n: int, schedules: int, first_day: datetime) -> datetime:
    """The ``n // schedules``-th slot of a schedule: 36 a weekday, Monday to Friday."""
    k = n // schedules
    weekday, index = divmod(k, DAY_SLOTS)
    weeks, day = divmod(weekday, 5)
    date = first_day + timedelta(days=7 * weeks + day)
    return date + timedelta(hours=8, minutes=15 * index)


def _fill(url: str, slots: int, schedules: int, now: datetime) -> None:
    engine = make_engine(url)
    tomorrow = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    monday = tomorrow + timedelta(days=(7 - tomorrow.weekday()) % 7)
    try:
        with transaction(engine) as session:
            actors = [Actor(ref=f"Practitioner/pr-{n}", display=None) for n in range(schedules)]
            repo.upsert_actors(session, actors, now)
            repo.upsert_schedules(
                session,
                [Schedule(id=f"sch-{n}", actor_refs=(a.ref,)) for n, a in enumerate(actors)],
                now,
            )
        for first in range(0, slots, BATCH):
            batch = []
            for n in range(first, min(first + BATCH, slots)):
                start = _slot_start(n, schedules, monday)
                batch.append(
                    Slot(
                        id=f"slot-{n}",
                        schedule_id=f"sch-{n % schedules}",
                        start=start,
                        end=start + timedelta(minutes=15),
                        status="free",
                        service_types=(f"{VISIT}|office-visit",),
                    )
                )
            with transaction(engine) as session:
                repo.apply_snapshot(session, SnapshotPlan(tuple(batch), (), 0), now)
    finally:
        engine.dispose()


@contextmanager
def filled_cache(slots: int, schedules: int, now: datetime) -> Iterator[tuple[Engine, float]]:
    """A throwaway PostgreSQL cache filled as the module doc says, with the seconds the
    fill took; disposed of afterwards."""
    with throwaway_postgres(migrated=True) as url:
        started = time.monotonic()
        _fill(url, slots, schedules, now)
        fill_seconds = time.monotonic() - started
        engine = make_engine(url)
        try:
            yield engine, fill_seconds
        finally:
            engine.dispose()


def run(args: argparse.Namespace) -> dict[str, Any]:
    now = datetime.now(UTC)
    old, new = _parse(live_rules()), _parse(new_rules())
    with filled_cache(args.slots, args.schedules, now) as (engine, fill_seconds):
        started = time.perf_counter()
        index = SlotIndex(lookback=MAX_SLOT_LENGTH)
        index.warm(lambda: Session(engine))
        index_seconds = time.perf_counter() - started
        memo = OfferMemo() if args.memo else None
        warm_seconds = 0.0
        if memo is not None:  # as an API process does at start-up for $find
            started = time.perf_counter()
            with Session(engine) as session:
                warm_offers(
                    session,
                    rules=old,
                    catalog=read_catalog(session),
                    slot_index=index,
                    memo=memo,
                    now=now,
                )
            warm_seconds = time.perf_counter() - started
        measured = {}
        for name, edited in (("broad", new), ("one_visit_type", _parse(one_visit_type()))):
            measured[name] = _measure(engine, index, memo, old, edited, now)
        held = index.size
    return {
        "slots": args.slots,
        "schedules": args.schedules,
        "slots_held": held,
        "fill_seconds": round(fill_seconds, 1),
        "index_load_seconds": round(index_seconds, 1),
        "find_warm_up_seconds": round(warm_seconds, 1),
        "preview_uses": "the API's warm $find memo for the rules in force"
        if args.memo
        else "no memo (as the CLI runs it)",
        **measured,
        "target_seconds": TARGET_SECONDS,
        "meets_target": {name: m["seconds"] <= TARGET_SECONDS for name, m in measured.items()},
    }


def _measure(
    engine: Any,
    index: SlotIndex,
    memo: OfferMemo | None,
    old: RulesFile,
    new: RulesFile,
    now: datetime,
) -> dict[str, Any]:
    """One preview: wall and CPU time (on a shared machine the wall time includes
    waiting for a core), the process's RSS before and at its peak, and the counts."""
    memory = _RssPeak(os.getpid())
    before = memory.now()
    with memory, Session(engine) as session:
        started, cpu_started = time.perf_counter(), time.process_time()
        preview = preview_rules(
            session,
            old=old,
            new=new,
            catalog=read_catalog(session),
            slot_index=index,
            now=now,
            memo=memo,
        )
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    [anyone] = preview.tallies
    return {
        "changes": [c.path for c in preview.changes],
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "rss_before_mb": round(before / 1024 / 1024, 1),
        "rss_peak_mb": round(memory.peak / 1024 / 1024, 1),
        "rss_growth_mb": round((memory.peak - before) / 1024 / 1024, 1),
        "offers_before": anyone.offers_before,
        "offers_after": anyone.offers_after,
        "gained": anyone.gained,
        "lost": anyone.lost,
        "examples_explained": sum(
            1 for d in anyone.examples.values() for e in d if e.reason is not None
        ),
    }
