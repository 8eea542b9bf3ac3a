"""The production :class:`app.sync.dispatch.Dispatcher`: Celery messages through Redis."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.sync.runs import ResyncRequest


def request_to_json(request: ResyncRequest) -> dict[str, Any]:
    return {
        "kind": request.kind,
        "schedule_ids": list(request.schedule_ids) if request.schedule_ids is not None else None,
        "actor": request.actor,
        "start": request.start.isoformat() if request.start else None,
        "end": request.end.isoformat() if request.end else None,
    }


def request_from_json(data: dict[str, Any]) -> ResyncRequest:
    ids = data.get("schedule_ids")
    return ResyncRequest(
        kind=data.get("kind") or "resync",
        schedule_ids=tuple(ids) if ids is not None else None,
        actor=data.get("actor"),
        start=datetime.fromisoformat(data["start"]) if data.get("start") else None,
        end=datetime.fromisoformat(data["end"]) if data.get("end") else None,
    )


class CeleryDispatcher:
    def run_chunks(self, run_id: int, seqs: Sequence[int]) -> None:
        from .tasks import sync_chunk_task

        for seq in seqs:
            sync_chunk_task.apply_async((run_id, seq))

    def refresh(self, schedule_id: str, start: datetime, end: datetime) -> None:
        from .tasks import refresh_task

        refresh_task.apply_async((schedule_id, start.isoformat(), end.isoformat()))

    def refresh_actor(self, actor_ref: str, start: datetime, end: datetime) -> None:
        from .tasks import refresh_actor_task

        refresh_actor_task.apply_async((actor_ref, start.isoformat(), end.isoformat()))

    def resync(self, request: ResyncRequest) -> str:
        from .tasks import initial_load_task, resync_task

        if request.kind == "initial-load":
            return str(initial_load_task.apply_async().id)
        return str(resync_task.apply_async((request_to_json(request),)).id)

    def poll(self, reason: str) -> None:
        from .tasks import poll_task

        poll_task.apply_async((reason,))

    def subscribe(self) -> None:
        from .tasks import subscribe_task

        subscribe_task.apply_async()

    def shutdown(self) -> None:
        """Nothing to stop: the queued work waits in the broker for the workers."""
