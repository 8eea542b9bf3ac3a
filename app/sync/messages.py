"""The messages between the services and the workers: task names, queues, and the
resync request as JSON.

Whoever sends work (the API, the planners, the reaper) and the workers that run it
(``workers/tasks.py``) share only these names, so nothing in ``app`` imports the
workers' code and the API process never loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Two queues: ``sync`` (refreshes, polls, the watchdog: short and urgent) and ``load``
# (bulk load chunks), so that a refresh never waits behind a whole load.
SYNC_QUEUE = "sync"
LOAD_QUEUE = "load"

INITIAL_LOAD = "slotsync.initial_load"
RECONCILE = "slotsync.reconcile"
RESYNC = "slotsync.resync"
SYNC_CHUNK = "slotsync.sync_chunk"
REFRESH = "slotsync.refresh"
REFRESH_ACTOR = "slotsync.refresh_actor"
POLL = "slotsync.poll"
WATCHDOG = "slotsync.watchdog"
SUBSCRIBE = "slotsync.subscribe"
CAPABILITIES = "slotsync.capabilities"
REAPER = "slotsync.reaper"
EXPIRE_HOLDS = "slotsync.expire_holds"
SAMPLE = "slotsync.sample"


def queue_of(task_name: str) -> str:
    return LOAD_QUEUE if task_name == SYNC_CHUNK else SYNC_QUEUE


@dataclass(frozen=True, slots=True)
class ResyncRequest:
    """What to reload: everything, some schedules, or one actor's schedules; a window."""

    kind: str = "resync"  # initial-load | resync
    schedule_ids: tuple[str, ...] | None = None
    actor: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    @property
    def everything(self) -> bool:
        return self.schedule_ids is None and self.actor is None

    def scope(self, chunking: str) -> str:
        if self.actor:
            return f"actor:{self.actor}"
        if self.schedule_ids is not None:
            return ",".join(self.schedule_ids)[:1000]
        return "*" if chunking == "schedule" else "*:window"


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
