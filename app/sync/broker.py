"""The production :class:`app.sync.dispatch.Dispatcher`: task messages through the broker.

Messages are sent by task name (:mod:`app.sync.messages`) to whichever worker takes
them, so the sender needs none of the workers' code: the API uses a bare producer
(:func:`app.runtime.dispatcher`), the workers their own Celery app.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from celery import Celery

from . import messages
from .messages import ResyncRequest, request_to_json


class BrokerDispatcher:
    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    def _send(self, task_name: str, *args: Any) -> str:
        sent = self._celery.send_task(task_name, args=args, queue=messages.queue_of(task_name))
        return str(sent.id)

    def run_chunks(self, run_id: int, seqs: Sequence[int]) -> None:
        for seq in seqs:
            self._send(messages.SYNC_CHUNK, run_id, seq)

    def refresh(self, schedule_id: str, start: datetime, end: datetime) -> None:
        self._send(messages.REFRESH, schedule_id, start.isoformat(), end.isoformat())

    def refresh_actor(self, actor_ref: str, start: datetime, end: datetime) -> None:
        self._send(messages.REFRESH_ACTOR, actor_ref, start.isoformat(), end.isoformat())

    def resync(self, request: ResyncRequest) -> str:
        if request.kind == "initial-load":
            return self._send(messages.INITIAL_LOAD)
        return self._send(messages.RESYNC, request_to_json(request))

    def poll(self, reason: str) -> None:
        self._send(messages.POLL, reason)

    def subscribe(self) -> None:
        self._send(messages.SUBSCRIBE)

    def shutdown(self) -> None:
        """Nothing to stop: the queued work waits in the broker for the workers."""


def producer(broker_url: str) -> Celery:
    """A Celery app that only sends (no tasks, no result backend: outcomes live in the
    database)."""
    celery = Celery("slotsync", broker=broker_url, set_as_current=False)
    celery.conf.update(
        broker_connection_retry_on_startup=True, task_serializer="json", task_ignore_result=True
    )
    return celery
