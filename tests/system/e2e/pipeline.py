"""The sync pipeline as real processes, for end-to-end tests: the sandbox EHR over HTTP,
a Celery worker and beat, and the API receiving the sandbox's notifications, all on a
PostgreSQL cache and a Redis the caller provides.

The processes themselves are :mod:`benchmarks.stacks`'s (shared with the fault suite);
this module adds the end-to-end tests' shrunk timings and helpers.
:func:`running_pipeline` starts it; :class:`Pipeline` drives it (processes, the EHR's
control API, the cache) and :func:`converged` requires the cache to equal the sandbox's
ground truth of free slots.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from app.cache import feeds
from app.cache.migrate import upgrade
from app.settings import DEMO_API_KEY
from benchmarks import stacks
from benchmarks.processes import free_port, wait_until

HORIZON_DAYS = 14
SECRET = "e2e-webhook-secret"
ADMIN = {"X-API-Key": DEMO_API_KEY}  # development credentials hold every scope


class Pipeline(stacks.Pipeline):
    """The stack's pipeline plus what the end-to-end tests look at."""

    def free_slot_ids(self, schedule: str, n: int) -> list[str]:
        ids = [sid for sid, slot in sorted(self.truth().items()) if slot.schedule == schedule]
        return ids[-n:]  # far from "now": certainly inside every window

    def worker_log(self) -> str:
        return self.log("worker")

    def feed(self) -> Any:
        with Session(self.engine) as s:
            rows = [r for r in feeds.all_feeds(s) if r.endpoint]
            return rows[0] if rows else None


def converged(p: Pipeline, timeout: float = 30) -> None:
    """The cache equals the EHR's free slots of the horizon, every field of every slot."""

    def same() -> bool:
        return not p.diff()[0]

    def diff() -> str:
        difference, truth, cache = p.diff()
        return f"{difference.describe(truth, cache)}\n{p.log('worker')}"

    wait_until(same, timeout, "the cache equal to the EHR", interval=0.2, context=diff)


E2E_SETTINGS = {
    "SLOTSYNC_EHR_FHIR_VERSION": "stu3",
    "SLOTSYNC_EHR_TIMEOUT_SECONDS": "2",
    "SLOTSYNC_EHR_PAGE_SIZE": "100",
    "SLOTSYNC_HORIZON_DAYS": str(HORIZON_DAYS),
    "SLOTSYNC_LOAD_WINDOW_DAYS": "7",
    "SLOTSYNC_EHR_RETRY_ATTEMPTS": "3",
    "SLOTSYNC_TASK_MAX_RETRIES": "2",
    "SLOTSYNC_WEBHOOK_SECRET": SECRET,
    "SLOTSYNC_HEARTBEAT_SECONDS": "5",
    "SLOTSYNC_HEARTBEAT_GRACE": "1.5",
    "SLOTSYNC_WATCHDOG_SECONDS": "1",
    "SLOTSYNC_POLL_INTERVAL_SECONDS": "5",
    "SLOTSYNC_POLL_NEAR_DAYS": str(HORIZON_DAYS),
    "SLOTSYNC_BROKER_VISIBILITY_TIMEOUT_SECONDS": "10",
    "SLOTSYNC_TASK_TIME_LIMIT_SECONDS": "9",
    "SLOTSYNC_SCHEDULE_LOCK_SECONDS": "8",
}


@contextmanager
def running_pipeline(
    *,
    db_url: str,
    redis_url: str,
    extra_env: dict[str, str] | None = None,
    profile: str = "sandbox",
) -> Iterator[Pipeline]:
    """Sandbox EHR, API, worker and beat on these databases; everything stopped afterwards.

    Timings are shrunk (5 s heartbeats, 1 s watchdog, 10 s redelivery) so that the
    tests see failures and recoveries within seconds. ``profile`` is the sandbox's
    (``plain-r4``: a generic R4 server; pass its settings in ``extra_env``).
    """
    upgrade(db_url)
    settings = {
        **E2E_SETTINGS,
        "SLOTSYNC_WORKER_METRICS_PORT": str(free_port()),
        **(extra_env or {}),
    }
    with (
        stacks.sandbox_ehr(
            size=4000,
            page_size=100,
            horizon_days=HORIZON_DAYS,
            heartbeat_seconds=5,
            profile=profile,
        ) as sandbox,
        stacks.running_pipeline(
            db_url=db_url,
            redis_url=redis_url,
            settings=settings,
            sandbox=sandbox,
            horizon_days=HORIZON_DAYS,
            admin_key=DEMO_API_KEY,
            pipeline_class=Pipeline,
        ) as p,
    ):
        assert isinstance(p, Pipeline)
        yield p
