"""Builders for sync tests: a SyncContext over a FakeEhr, a clock, a recording dispatcher."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.cache import repository as repo
from app.ehr.client import EhrClient
from app.ehr.transport import RetryPolicy
from app.settings import Settings
from app.sync.context import SyncContext
from app.sync.coordination import Coordinator, LocalCoordinator
from app.sync.messages import ResyncRequest
from tests.factories import T0
from tests.fake_ehr import BASE, FakeEhr

DAY0 = T0.replace(hour=0, minute=0)  # midnight UTC of the factories' Monday


class Clock:
    """Strictly increasing time: each call is one millisecond after the last."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "horizon_days": 7,
        "load_window_days": 2,
        "load_bulk_window_days": 2,
        "load_schedules_per_chunk": 1,
        "ehr_fhir_version": "stu3",
        "schedule_lock_seconds": 5,
        # the retry budget of the product, with delays short enough for tests
        "task_max_retries": 2,
        "task_retry_base_seconds": 0.001,
        "task_retry_max_seconds": 0.01,
    }
    values.update(overrides)
    return Settings(**values)


def client_for(ehr: FakeEhr, fhir_version: str = "stu3", **kw: Any) -> EhrClient:
    return EhrClient(
        BASE,
        fhir_version=fhir_version,
        transport=ehr.transport(),
        retry=RetryPolicy(attempts=2, base_delay=0.001),
        **kw,
    )


def context(
    engine: Engine,
    ehr: FakeEhr,
    *,
    coord: Coordinator | None = None,
    clock: Clock | None = None,
    **overrides: Any,
) -> SyncContext:
    s = settings(**overrides)
    return SyncContext(
        engine=engine,
        client=client_for(ehr, s.ehr_fhir_version),
        coord=coord or LocalCoordinator(),
        settings=s,
        clock=clock or Clock(DAY0 + timedelta(hours=1)),
    )


def cached(engine: Engine, schedule_ids: Sequence[str] | None = None) -> dict[str, Any]:
    with Session(engine) as s:
        return repo.cached_slots(
            s, schedule_ids, DAY0 - timedelta(days=30), DAY0 + timedelta(days=30)
        )


@dataclass
class RecordingDispatcher:
    """Collects what would have been enqueued."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def run_chunks(self, run_id: int, seqs: Sequence[int]) -> None:
        self.calls.append(("run_chunks", run_id, tuple(seqs)))

    def refresh(self, schedule_id: str, start: datetime, end: datetime) -> None:
        self.calls.append(("refresh", schedule_id, start, end))

    def refresh_actor(self, actor_ref: str, start: datetime, end: datetime) -> None:
        self.calls.append(("refresh_actor", actor_ref, start, end))

    def resync(self, request: ResyncRequest) -> str:
        self.calls.append(("resync", request))
        return f"token-{len(self.calls)}"

    def poll(self, reason: str) -> None:
        self.calls.append(("poll", reason))

    def subscribe(self) -> None:
        self.calls.append(("subscribe",))

    def shutdown(self) -> None:
        """Nothing was started, so nothing to stop."""

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]
