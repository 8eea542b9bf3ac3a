"""Prometheus metrics: what the API, the workers and the EHR client record, and the scrape.

Recording helpers (:func:`observe_http`, :func:`observe_ehr_call`, :func:`task_outcome`,
:func:`notification_received`) are cheap and safe in any process. With several
uvicorn workers or Celery processes, set ``PROMETHEUS_MULTIPROC_DIR`` to a fresh
directory before the processes start (``slotsync serve`` does this for you): every
process then writes its samples there and any one of them can serve the sum.

Cache size and sync lag are not recorded at all: :class:`SyncHealthCollector`
computes them from the database when Prometheus scrapes, at most once per
``ttl`` seconds, so nothing is added to the ``$find`` path.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.cache.sync_health import SyncHealth
from app.core.recent import Recent

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNMATCHED_ROUTE = "unmatched"

HTTP_REQUESTS = Counter(
    "slotsync_http_requests",
    "HTTP requests answered, by route template and status",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "slotsync_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
EHR_LATENCY = Histogram(
    "slotsync_ehr_request_duration_seconds",
    "Time of one call to the EHR, by logical endpoint and outcome status",
    ["endpoint", "status"],
    buckets=LATENCY_BUCKETS,
)
EHR_ERRORS = Counter(
    "slotsync_ehr_errors",
    "EHR calls that failed: 5xx, 429, timeouts and connection errors",
    ["endpoint", "status"],
)
TASKS = Counter(
    "slotsync_task_outcomes",
    "Finished background tasks by outcome (ok, failed, retried, skipped...)",
    ["task", "outcome"],
)
TASK_DURATION = Histogram(
    "slotsync_task_duration_seconds",
    "Run time of background tasks",
    ["task"],
    buckets=(0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0),
)
OFFER_MEMO_FULL = Counter(
    "slotsync_offer_memo_full",
    "Times an API process's offer memo reached SLOTSYNC_OFFER_MEMO_MAX_OFFERS and forgot"
    " every offer (often: the bound is below the horizon's offers, and $find recomposes)",
)
FIND_ANSWERS = Counter(
    "slotsync_find_answers",
    "$find answers by how they were made: memo (served again, the inputs unchanged),"
    " composed (made for the request), ahead (made for the next minute's requests)",
    ["source"],
)
NOTIFICATIONS = Counter(
    "slotsync_webhook_notifications",
    "Subscription notifications received, by kind (handshake, heartbeat, event, rejected)",
    ["kind"],
)


# -- recording helpers (call these; they never raise on odd label values) --------


def observe_http(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)


def observe_ehr_call(endpoint: str, status: int | str, seconds: float) -> None:
    """One EHR round trip; ``status`` is the HTTP status or ``"timeout"``/``"error"``."""
    label = str(status)
    EHR_LATENCY.labels(endpoint, label).observe(seconds)
    if not label.isdigit() or int(label) >= 500 or int(label) == 429:
        EHR_ERRORS.labels(endpoint, label).inc()


def task_outcome(task: str, outcome: str, seconds: float | None = None) -> None:
    TASKS.labels(task, outcome).inc()
    if seconds is not None:
        TASK_DURATION.labels(task).observe(seconds)


def find_answered(source: str) -> None:
    FIND_ANSWERS.labels(source).inc()


def notification_received(kind: str) -> None:
    NOTIFICATIONS.labels(kind).inc()


_OFFER_MEMO_WARNING_EVERY_SECONDS = 300.0
_offer_memo_warned_at: float | None = None


def offer_memo_full(held: int) -> None:
    """The offer memo forgot ``held`` offers at its bound: counted, and logged at most
    every five minutes (a memo too small for its cache reaches the bound again and
    again, and each time every request recomposes until it has filled once more)."""
    global _offer_memo_warned_at
    OFFER_MEMO_FULL.inc()
    now = time.monotonic()
    if _offer_memo_warned_at is None or now - _offer_memo_warned_at >= (
        _OFFER_MEMO_WARNING_EVERY_SECONDS
    ):
        _offer_memo_warned_at = now
        log.warning(
            "offer memo full at %d offers: forgot them all, $find recomposes until it fills"
            " again; if this repeats, raise SLOTSYNC_OFFER_MEMO_MAX_OFFERS (~200 bytes an"
            " offer) or narrow broad searches",
            held,
        )


# -- scrape-time gauges from the database ----------------------------------------


class SyncHealthCollector(Collector):
    """Cache size and freshness, computed from the database at scrape time (cached ``ttl`` s)."""

    def __init__(self, load: Callable[[], SyncHealth], *, ttl: float = 15.0) -> None:
        self._health = Recent(load, ttl=ttl)

    def collect(self) -> Iterator[Metric]:
        health = self._health()
        slots = GaugeMetricFamily(
            "slotsync_cache_slots", "Slots in the cache by status", labels=["status"]
        )
        for status, n in sorted(health.slots_by_status.items()):
            slots.add_metric([status], n)
        yield slots
        yield GaugeMetricFamily(
            "slotsync_cache_schedules", "Schedules in the cache", value=health.schedules
        )
        lag = GaugeMetricFamily(
            "slotsync_schedule_sync_lag_seconds",
            "Seconds since the EHR last confirmed each schedule",
            labels=["schedule"],
        )
        for item in health.schedule_lags:
            lag.add_metric([item.schedule_id], item.lag_seconds)
        yield lag
        max_lag = health.max_lag_seconds
        yield GaugeMetricFamily(
            "slotsync_sync_lag_max_seconds",
            "Largest schedule sync lag (NaN when the cache is empty)",
            value=math.nan if max_lag is None else max_lag,
        )
        age = health.full_load_age_seconds
        yield GaugeMetricFamily(
            "slotsync_last_full_load_age_seconds",
            "Seconds since the last successful full load (NaN: never)",
            value=math.nan if age is None else age,
        )
        runs = GaugeMetricFamily(
            "slotsync_sync_runs_recent",
            "Sync runs started in the last 24 hours by kind and status",
            labels=["kind", "status"],
        )
        for (kind, status), n in sorted(health.runs_recent.items()):
            runs.add_metric([kind, status], n)
        yield runs
        yield GaugeMetricFamily(
            "slotsync_sync_stuck_runs",
            "Sync runs without progress for the stall time (the reaper fails and replans them)",
            value=len(health.stuck_runs),
        )
        yield GaugeMetricFamily(
            "slotsync_sync_failed_chunks",
            "Chunks of failed runs that no follow-up or later full load has repaired yet",
            value=health.failed_chunks,
        )
        yield GaugeMetricFamily(
            "slotsync_sync_follow_ups_scheduled",
            "Follow-up resyncs of failed windows waiting to be due",
            value=len(health.follow_ups_scheduled),
        )
        yield GaugeMetricFamily(
            "slotsync_schedules_errored",
            "Schedules whose last sync attempt failed for good",
            value=health.errored_schedules,
        )


# -- exposition --------------------------------------------------------------------


def process_registry(multiproc_dir: Path | None) -> CollectorRegistry:
    """This process's samples, or every process's when running in multiprocess mode."""
    if multiproc_dir is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(multiproc_dir))
    return registry


def render(multiproc_dir: Path | None, *extra: Collector) -> tuple[bytes, str]:
    """The exposition text: process (or all-process) metrics followed by ``extra`` collectors."""
    body = generate_latest(process_registry(multiproc_dir))
    if extra:
        registry = CollectorRegistry(auto_describe=False)
        for collector in extra:
            registry.register(collector)
        body += generate_latest(registry)
    return body, CONTENT_TYPE_LATEST


def serve_metrics(port: int, multiproc_dir: Path | None, addr: str = "0.0.0.0") -> None:
    """A tiny /metrics HTTP server for processes without an API (Celery worker, beat)."""
    start_http_server(port, addr=addr, registry=process_registry(multiproc_dir))
