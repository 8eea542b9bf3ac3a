"""Sample the cache's size and freshness every minute (the periodic ``slotsync.sample``).

Nothing here scans the slots: the slot count is maintained per schedule and recounted
only where a schedule's slots changed (:mod:`app.cache.slot_counts`), and the
schedules are read as one aggregate plus the few that lag. That keeps the sampler
cheap at a million slots, and the ops console's overview, which reads the samples,
free of scans however large the cache is.
"""

from __future__ import annotations

from datetime import timedelta

from app.cache import booking_counts, samples, slot_counts
from app.cache.claims import live_claims_by_kind
from app.cache.db import transaction
from app.cache.sync_health import collect_sync_health

from .context import SyncContext

SAMPLE_SECONDS = 60
KEPT = timedelta(hours=48)
BOOKING_COUNTS_KEPT = timedelta(days=31)


def record_sample(ctx: SyncContext) -> samples.Sample:
    now = ctx.clock()
    stale_after = ctx.settings.ops_stale_after_minutes * 60
    with transaction(ctx.engine) as session:
        slot_counts.refresh(session)
        health = collect_sync_health(
            session,
            now=now,
            count_slots=False,
            stall_seconds=ctx.settings.run_stall_seconds,
            lagging_after=stale_after,
        )
        claims = live_claims_by_kind(session, now)
        sample = samples.Sample(
            sampled_at=now,
            slots_cached=slot_counts.total(session),
            schedules=health.schedules,
            max_lag_seconds=health.max_lag_seconds,
            stale_schedules=len(health.stale(stale_after)),
            claims_held=claims.get("held", 0) + claims.get("pending", 0),
            claims_booked=claims.get("booked", 0),
        )
        samples.record(session, sample)
        samples.prune(session, now - KEPT)
        booking_counts.prune(session, now - BOOKING_COUNTS_KEPT)
    return sample
