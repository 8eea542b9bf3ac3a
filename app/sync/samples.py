"""Sample the cache's size and freshness every minute (the periodic ``slotsync.sample``).

The slot count is the one grouped scan here; doing it once per period, in a worker,
is what keeps the ops console's overview free of scans however large the cache is.
"""

from __future__ import annotations

from datetime import timedelta

from app.cache import samples
from app.cache.claims import live_claims_by_kind
from app.cache.db import transaction
from app.cache.sync_health import collect_sync_health

from .context import SyncContext

SAMPLE_SECONDS = 60
KEPT = timedelta(hours=48)


def record_sample(ctx: SyncContext) -> samples.Sample:
    now = ctx.clock()
    with transaction(ctx.engine) as session:
        health = collect_sync_health(
            session, now=now, count_slots=True, stall_seconds=ctx.settings.run_stall_seconds
        )
        claims = live_claims_by_kind(session, now)
        sample = samples.Sample(
            sampled_at=now,
            slots_cached=health.slots,
            schedules=health.schedules,
            max_lag_seconds=health.max_lag_seconds,
            stale_schedules=len(health.stale(ctx.settings.ops_stale_after_minutes * 60)),
            claims_held=claims.get("held", 0) + claims.get("pending", 0),
            claims_booked=claims.get("booked", 0),
        )
        samples.record(session, sample)
        samples.prune(session, now - KEPT)
    return sample
