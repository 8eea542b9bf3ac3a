"""The Celery application, configured from settings.

With a Redis URL: Redis is broker and result backend, tasks are acknowledged late
and re-queued if their worker dies (they are idempotent snapshot replaces), and
the visibility timeout outlasts the longest task (a hard time limit enforces
it). Two queues: ``sync`` (refreshes, polls, the watchdog: short and urgent) and
``load`` (bulk load chunks), so that a refresh never waits behind a whole load;
a worker consumes both unless told otherwise. Without a Redis URL (embedded
mode, ``make demo``): tasks run eagerly in the calling process.
"""

from __future__ import annotations

import gc
import itertools

from celery import Celery
from celery.signals import (
    beat_init,
    celeryd_init,
    task_postrun,
    worker_init,
    worker_process_init,
)

from app.core.gc_pause import tune_collector
from app.core.heap import limit_heap_arenas
from app.settings import Settings, get_settings
from app.sync.messages import LOAD_QUEUE, SYNC_CHUNK, SYNC_QUEUE
from workers.observability import install_celery_observability

from .schedule import beat_schedule


def make_celery(settings: Settings) -> Celery:
    app = Celery("slotsync", include=["workers.tasks"])
    if settings.embedded:
        app.conf.update(
            broker_url="memory://",
            result_backend="cache+memory://",
            task_always_eager=True,
            task_eager_propagates=True,
        )
    else:
        visibility = settings.visibility_timeout_seconds
        restore_interval = max(1, min(10, visibility // 5))
        transport = {
            "visibility_timeout": visibility,
            # sweep for messages of dead workers a few times per visibility timeout
            "unacked_restore_interval": restore_interval,
            "unacked_restore_throttle": 1,
            # A worker killed during a sweep leaves the sweep's mutex behind; kombu's
            # default expiry (5 minutes) would hold back every redelivery that long. A
            # sweep takes milliseconds, and two overlapping ones restore each message once.
            "unacked_mutex_expire": 3 * restore_interval,
        }
        app.conf.update(
            broker_url=settings.effective_redis_url,
            result_backend=settings.effective_redis_url,
            broker_transport_options=transport,
            result_backend_transport_options={"visibility_timeout": visibility},
            broker_connection_retry_on_startup=True,
        )
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit_seconds,
        task_soft_time_limit=max(5, settings.task_time_limit_seconds - 30),
        task_default_queue=SYNC_QUEUE,
        task_routes={SYNC_CHUNK: {"queue": LOAD_QUEUE}},
        task_ignore_result=True,  # outcomes live in the database (sync_runs, schedules)
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=24 * 3600,
        timezone="UTC",
        beat_schedule=beat_schedule(settings),
        worker_hijack_root_logger=False,
    )
    return app


celery_app = make_celery(get_settings())


@celeryd_init.connect
def _observe(**_: object) -> None:
    # The first signal of a worker starting, before its logging is set up: slotsync's
    # JSON logs with the task id as correlation id, task metrics (served on
    # SLOTSYNC_WORKER_METRICS_PORT). Only in workers: signals are process-wide.
    install_celery_observability(celery_app, get_settings())


@celeryd_init.connect
def _cap_heap_arenas(**_: object) -> None:
    # before the worker starts its pool's threads (why: app.core.heap)
    limit_heap_arenas()


@worker_init.connect
def _tune_gc(**_: object) -> None:
    # before a prefork pool forks, so that its children share the frozen pages
    # (why the collector is tuned: app.core.gc_pause)
    tune_collector()


# Every this many tasks a full collection; the others collect the young generations.
FULL_COLLECTION_EVERY = 5
_tasks_ended = itertools.count(1)


@task_postrun.connect
def _collect_cycles(**_: object) -> None:
    # What a task leaves in reference cycles (sessions, responses) is freed now rather
    # than at the next rare automatic full collection: keeps a worker's memory at its
    # working set. The young generations hold most of it, but a long task's cycles reach
    # the oldest one: young collections alone let a 1M load's worker peak at 195-202 MB
    # instead of 181. A full collection walks the whole heap (the other threads' chunks
    # in flight, the decoders' memos): ~13 ms after each of a 1M load's 90 chunks, 1.2 s
    # of the worker's GIL. One in five: 182 MB, and the load ~0.6 s faster.
    full = next(_tasks_ended) % FULL_COLLECTION_EVERY == 0
    gc.collect(2 if full else 1)


@worker_process_init.connect
def _fresh_connections(**_: object) -> None:
    # prefork children must not share the parent's database, HTTP or Redis sockets
    from app.runtime import reset_after_fork

    reset_after_fork()


@beat_init.connect
def _subscribe_on_start(sender: object = None, **_: object) -> None:
    # "on start": the one beat process asks a worker to create or renew the Subscription
    celery_app.send_task("slotsync.subscribe")
