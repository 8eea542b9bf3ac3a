"""Keeping the cache in step with the EHR: loads, notifications, polling, tasks and runs."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings


class LoadSettings(BaseSettings):
    """The horizon and the daily full load, and how it is cut into chunks."""

    horizon_days: int = Field(default=30, ge=1, le=730)
    daily_load_at: str = Field(
        default="03:00",
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="UTC HH:MM of the daily resync",
    )
    load_window_days: int = Field(
        default=30, ge=1, le=90, description="days per load chunk of a few schedules"
    )
    # Two days: a chunk's fixed cost (locking, confirming and marking every schedule)
    # is paid half as often; at 1M slots, 3 worker threads, 17.2 s with one day, 14.6-15.3
    # s with two, for ~10 MB more worker memory (benchmarks/results/load-chunk-days-*).
    load_bulk_window_days: int = Field(
        default=2, ge=1, le=90, description="days per load chunk of every schedule"
    )
    load_chunking: Literal["auto", "schedule", "window"] = Field(
        default="auto",
        description="full-load unit: (schedule group x window) chunks, every schedule x window,"
        " or auto: by schedule unless STU3 $prefetch cannot name some schedules",
    )
    load_schedules_per_chunk: int = Field(
        default=4, ge=1, le=200, description="schedules fetched together in one load chunk"
    )


class SyncSettings(BaseSettings):
    """Change notifications, polling, the periodic jobs and the task and run budgets."""

    ehr_subscriptions: bool = Field(
        default=True,
        description="subscribe at the EHR for change notifications (to PUBLIC_BASE_URL);"
        " false = rely on polling",
    )
    subscription_topic: str = Field(
        default="http://slotsync.example/fhir/SubscriptionTopic/slot-changes",
        description="R4 backport topic canonical of slot/schedule changes",
    )
    heartbeat_seconds: int = Field(default=60, ge=5, description="heartbeat period asked for")
    heartbeat_grace: float = Field(
        default=2.5, ge=1.0, description="feed is stale after this many silent periods"
    )
    poll_interval_seconds: int = Field(default=60, ge=5, description="polling while stale")
    poll_near_days: int = Field(default=7, ge=1, description="STU3 poll: re-prefetch this far")
    watchdog_seconds: int = Field(default=15, ge=1, description="how often the watchdog looks")
    reconcile_seconds: int = Field(
        default=900, ge=60, description="how often the near days are re-read whole (deletions)"
    )
    reconcile_days: int = Field(default=7, ge=1, description="how far the near reconcile reads")
    subscription_renew_seconds: int = Field(default=3600, ge=60)
    refresh_coalesce_seconds: int = Field(
        default=600,
        ge=1,
        description="expiry of a queued refresh's dedupe key: outlasts the longest wait in the"
        " queue, or every repeated notification queues a refresh again (a refresh drops it as"
        " soon as it starts, or fails)",
    )
    schedule_lock_seconds: int = Field(
        default=60, ge=5, description="expiry of a schedule lock (extended while pages arrive)"
    )
    task_time_limit_seconds: int = Field(default=300, ge=5, description="hard limit per task")
    broker_visibility_timeout_seconds: int | None = Field(
        default=None,
        ge=5,
        description="unacked task redelivery; unset = the task time limit + 60 s",
    )
    task_max_retries: int = Field(
        default=12,
        ge=0,
        le=50,
        description="retries of a task after transient failures (EHR, PostgreSQL, Redis);"
        " the one budget Celery and the in-process runner both use",
    )
    task_retry_base_seconds: float = Field(
        default=2.0, gt=0, description="first retry delay; doubles per retry, with jitter"
    )
    task_retry_max_seconds: float = Field(
        default=60.0, gt=0, description="longest delay between two retries of a task"
    )
    chunk_lease_seconds: int = Field(
        default=45,
        ge=5,
        description="a running chunk whose heartbeat is older than this lost its worker",
    )
    reaper_seconds: int = Field(
        default=15, ge=1, description="how often the reaper looks for lost, stuck or due work"
    )
    run_quiet_seconds: int = Field(
        default=30,
        ge=5,
        description="a run with nothing claimed for this long has its due chunks sent again",
    )
    run_stall_seconds: int = Field(
        default=180,
        ge=10,
        description="a run without progress for this long is failed and its rest replanned",
    )
    follow_up_max: int = Field(
        default=6, ge=0, le=20, description="follow-up resyncs of failed windows, at most"
    )
    follow_up_base_seconds: int = Field(
        default=15, ge=1, description="delay of the first follow-up; doubles per follow-up"
    )
    follow_up_max_seconds: int = Field(
        default=600, ge=1, description="longest delay before a follow-up resync"
    )
    ehr_refetch_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="reads of a window from its first page when the EHR changed while paging",
    )
    worker_queues: str = Field(default="sync,load", description="queues a worker consumes")

    @model_validator(mode="after")
    def _visibility_outlasts_tasks(self) -> Self:
        # A task still running when its message becomes visible again would run twice at once.
        if (
            self.broker_visibility_timeout_seconds is not None
            and self.broker_visibility_timeout_seconds <= self.task_time_limit_seconds
        ):
            raise ValueError(
                "BROKER_VISIBILITY_TIMEOUT_SECONDS must be longer than TASK_TIME_LIMIT_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _stall_outlasts_retry_waits(self) -> Self:
        # A run whose chunks all wait for their next try is quiet, not stuck.
        if self.run_stall_seconds <= self.task_retry_max_seconds + self.run_quiet_seconds:
            raise ValueError(
                "RUN_STALL_SECONDS must be longer than TASK_RETRY_MAX_SECONDS + RUN_QUIET_SECONDS"
            )
        return self

    @property
    def visibility_timeout_seconds(self) -> int:
        """Sized to the hard time limit: a dead worker's message comes back soon after."""
        if self.broker_visibility_timeout_seconds is not None:
            return self.broker_visibility_timeout_seconds
        return self.task_time_limit_seconds + 60
