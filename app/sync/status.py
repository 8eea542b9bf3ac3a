"""The sync status report shown by ``GET /admin/sync-status`` and ``slotsync status``.

Plain JSON-ready dicts: per schedule (last confirmed, last error, slots cached,
feed state) and overall (last full load, running runs with progress, feeds).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.cache import feeds, slot_reads
from app.cache import repository as repo
from app.cache import runs as runs_repo
from app.cache.models import SubscriptionRow, SyncRunRow
from app.cache.sync_health import SyncHealth, collect_sync_health
from app.core.times import optional_instant
from app.settings import Settings
from rules.coverage import summarise_slots, uncovered_schedules
from rules.loader import RulesError, load_rules
from rules.schema import RulesFile, horizon_days

from . import capabilities

# Uncovered schedules listed in the report; the count is always whole.
UNCOVERED_LISTED = 50


def run_json(run: SyncRunRow) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind,
        "scope": run.scope,
        "status": run.status,
        "window_start": optional_instant(run.window_start),
        "window_end": optional_instant(run.window_end),
        "started_at": optional_instant(run.started_at),
        "finished_at": optional_instant(run.finished_at),
        "chunks_total": run.chunks_total,
        "chunks_done": run.chunks_done,
        "chunks_failed": run.chunks_failed,
        "slots_seen": run.slots_seen,
        "slots_upserted": run.slots_upserted,
        "slots_deleted": run.slots_deleted,
        "error": run.error,
        "token": run.token,
        "progress_at": optional_instant(run.progress_at),
        "generation": run.generation,
        "parent_run_id": run.parent_run_id,
        "due_at": optional_instant(run.due_at),
        "recovered_at": optional_instant(run.recovered_at),
    }


def next_poll_at(
    row: SubscriptionRow, poll_interval_seconds: int, now: datetime
) -> datetime | None:
    """When the watchdog polls next: never while the feed's notifications are live."""
    if row.status != "off" and row.feed_state == "live":
        return None
    if row.last_polled_at is None:
        return now
    return max(now, row.last_polled_at + timedelta(seconds=poll_interval_seconds))


def feed_json(
    row: SubscriptionRow, *, poll_interval_seconds: int | None = None, now: datetime | None = None
) -> dict[str, Any]:
    upcoming = (
        next_poll_at(row, poll_interval_seconds, now)
        if poll_interval_seconds is not None and now is not None
        else None
    )
    return {
        "id": row.id,
        "ehr_id": row.ehr_id,
        "endpoint": row.endpoint or None,
        "fhir_version": row.fhir_version,
        "status": row.status,
        "feed_state": row.feed_state,
        "heartbeat_seconds": row.heartbeat_seconds,
        "last_heard_at": optional_instant(row.last_heard_at),
        "last_event_number": row.last_event_number,
        "last_polled_at": optional_instant(row.last_polled_at),
        "poll_cursor": optional_instant(row.poll_cursor),
        "next_poll_at": optional_instant(upcoming),
        "last_error": row.last_error,
    }


def overall_feed_state(rows: list[SubscriptionRow]) -> str:
    """live: a subscription is heard from; stale: one should be but is not; catching-up:
    notifications were lost and polling makes up for them; polling: no subscription."""
    subscribed = [r for r in rows if r.status != "off"]
    if not subscribed:
        return "polling"
    states = {r.feed_state for r in subscribed}
    for state in ("live", "catching-up"):
        if state in states:
            return state
    return "stale"


def uncovered_json(
    session: Session, *, now: datetime, settings: Settings, rules: RulesFile | None = None
) -> dict[str, Any]:
    """Cached schedules the rules in force leave without offers, with the reason:
    ``count``, the first :data:`UNCOVERED_LISTED` of them, and the rules file read."""
    source = str(settings.effective_rules_path)
    if rules is None:
        try:
            rules = load_rules(settings.effective_rules_path)
        except RulesError as exc:
            return {"count": None, "schedules": [], "rules": source, "error": str(exc)}
    horizon = horizon_days(rules)
    slots = slot_reads.free_slots(session, now, now + timedelta(days=horizon + 1), now=now)
    found = uncovered_schedules(
        rules,
        repo.schedules_by_id(session),
        repo.actors_by_ref(session),
        summarise_slots(slots),
        now,
    )
    return {
        "count": len(found),
        "schedules": [item.as_json() for item in found[:UNCOVERED_LISTED]],
        "truncated": len(found) > UNCOVERED_LISTED,
        "rules": source,
    }


@dataclass(frozen=True, slots=True)
class SyncVerdict:
    """Healthy, degraded or down, with every reason, and what it was judged from."""

    state: str  # ok | degraded | down
    problems: list[str]
    health: SyncHealth
    feeds: list[SubscriptionRow]
    feed_state: str


def sync_verdict(session: Session, *, now: datetime, settings: Settings) -> SyncVerdict:
    """The overall verdict of the report, alone: no scan of the slots, so it stays cheap
    at any cache size (the ops console's overview renders it on every request)."""
    feed_rows = feeds.all_feeds(session)
    feed_state = overall_feed_state(feed_rows)
    health = collect_sync_health(
        session,
        now=now,
        count_slots=False,
        stall_seconds=settings.run_stall_seconds,
        lagging_after=settings.ops_stale_after_minutes * 60,
    )
    state, problems = health.assess(
        stale_after_seconds=settings.ops_stale_after_minutes * 60,
        max_load_age_hours=settings.readiness_max_load_age_hours,
    )
    if feed_state == "stale":
        problems.append("the EHR's notifications stopped: polling")
        state = "degraded" if state == "ok" else state
    return SyncVerdict(state, problems, health, feed_rows, feed_state)


def sync_status(
    session: Session,
    *,
    now: datetime,
    settings: Settings,
    schedule_ids: Collection[str] | None = None,
    limit: int = 1000,
    rules: RulesFile | None = None,
) -> dict[str, Any]:
    """The report; ``rules`` are those in force (default: read from the rules file)."""
    verdict = sync_verdict(session, now=now, settings=settings)
    health, state, problems = verdict.health, verdict.state, verdict.problems
    feed_rows, feed_state = verdict.feeds, verdict.feed_state
    age = health.full_load_age_seconds
    schedules = repo.schedule_rows(session, schedule_ids, limit)
    counts = repo.slots_per_schedule(session)
    full = runs_repo.last_run(session, "initial-load")
    full_ok = runs_repo.last_run(session, "initial-load", "ok")
    running = runs_repo.running_runs(session)
    return {
        "generated_at": optional_instant(now),
        "overall": {
            "health": state,
            "problems": problems,
            "stuck_runs": health.stuck_runs,
            "unresolved_failed_runs": health.unresolved_runs,
            "failed_chunks": health.failed_chunks,
            "errored_schedules": health.errored_schedules,
            "stale_schedules": len(health.stale(settings.ops_stale_after_minutes * 60)),
            "follow_ups": [
                {"run_id": run_id, "due_at": optional_instant(due)}
                for run_id, due in health.follow_ups_scheduled
            ],
            "last_complete_load_at": optional_instant(health.last_full_load_at),
            "last_complete_load_age_seconds": round(age, 1) if age is not None else None,
            "ehr": capabilities.status_json(session, settings.ehr_base_url),
            "slots_cached": sum(counts.values()),
            "schedules": repo.count_schedules(session),
            "feed_state": feed_state,
            "last_full_load": run_json(full) if full else None,
            "last_complete_full_load": run_json(full_ok) if full_ok else None,
            "running": [run_json(r) for r in running],
            "feeds": [
                feed_json(r, poll_interval_seconds=settings.poll_interval_seconds, now=now)
                for r in feed_rows
            ],
            "uncovered_schedules": uncovered_json(session, now=now, settings=settings, rules=rules),
        },
        "schedules": [
            {
                "id": row.id,
                "last_confirmed_at": optional_instant(
                    row.last_confirmed_at if row.last_confirmed_at > repo.NEVER else None
                ),
                "last_error": row.last_error,
                "slots_cached": counts.get(row.id, 0),
                "covered_start": optional_instant(row.covered_start),
                "covered_end": optional_instant(row.covered_end),
                "feed_state": feed_state,
            }
            for row in schedules
        ],
        "recent_runs": [run_json(r) for r in runs_repo.recent_runs(session, 10)],
    }
