"""The Celery application, configured from settings.

With a Redis URL: Redis is broker and result backend, tasks are acknowledged late
and re-queued if their worker dies (they are idempotent snapshot replaces), and
the visibility timeout outlasts the longest task. Without one (embedded mode,
``make demo``): tasks run eagerly in the calling process.
"""

from __future__ import annotations

from celery import Celery

from app.settings import Settings, get_settings

from .schedule import beat_schedule

VISIBILITY_TIMEOUT_SECONDS = 4 * 3600


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
        app.conf.update(
            broker_url=settings.redis_url,
            result_backend=settings.redis_url,
            broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
            result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
            broker_connection_retry_on_startup=True,
        )
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=24 * 3600,
        timezone="UTC",
        beat_schedule=beat_schedule(settings),
    )
    return app


celery_app = make_celery(get_settings())
