"""Builders for sync tests: the sandbox EHR in-process, a SyncContext over it, a clock,
a recording dispatcher."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.cache import repository as repo
from app.core.domain import Slot
from app.ehr.client import EhrClient
from app.ehr.transport import RetryPolicy
from app.settings import Settings
from app.sync.context import SyncContext
from app.sync.coordination import Coordinator, LocalCoordinator
from app.sync.messages import ResyncRequest
from sandbox_ehr.app import create_app
from sandbox_ehr.config import FhirVersion, Profile, SandboxConfig
from tests.factories import T0

ROOT = "http://ehr.test"
BASE = f"{ROOT}/fhir"

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


# What the cache must hold of a free slot of the EHR: (schedule, start, end, service types).
SlotView = tuple[str, datetime, datetime, tuple[str, ...]]


class SandboxEhr:
    """The sandbox EHR served in-process: slotsync's client reaches it through an httpx
    transport (no socket, no child process), the test scripts it through the sandbox's
    control API (``/_sandbox``: truth, mutate, faults) as it would over the network.

    The organisation is the sandbox's, generated from ``seed`` and ``size`` over the
    sync horizon (seven days from ``start``); every request slotsync makes is kept in
    ``requests``. Use as a context manager (the sandbox's lifespan runs inside).
    """

    def __init__(
        self,
        fhir_version: FhirVersion = "stu3",
        *,
        profile: Profile = "sandbox",
        size: int = 600,
        seed: int = 3,
        page_size: int = 100,
        start: date | None = None,
        **config: Any,
    ) -> None:
        self.config = SandboxConfig(
            fhir_version=fhir_version,
            profile=profile,
            size=size,
            seed=seed,
            start_date=start or DAY0.date(),
            horizon_days=7,
            page_size=page_size,
            **config,
        )
        self.app = create_app(self.config)
        self.http = TestClient(self.app, base_url=ROOT)
        self.requests: list[httpx.Request] = []

    def __enter__(self) -> SandboxEhr:
        self.http.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.__exit__(*exc)

    # -- serving slotsync ------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._serve)

    def _serve(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.http.send(request)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    # -- what the EHR holds ----------------------------------------------------------------

    @property
    def schedules(self) -> dict[str, tuple[str, ...]]:
        """Schedule id -> actor references, in the sandbox's order."""
        return {s.id: s.actor_refs for s in self.app.state.sandbox.store.org.schedules}

    def truth(
        self, *schedule_ids: str, start: datetime | None = None, end: datetime | None = None
    ) -> dict[str, SlotView]:
        """The EHR's free slots (of the given schedules, else all; starting in [start, end)
        when given), as the cache must hold them."""
        params = {"schedule": ",".join(schedule_ids)} if schedule_ids else {}
        params |= {k: v.isoformat() for k, v in (("start", start), ("end", end)) if v}
        answer = self.http.get("/_sandbox/truth", params=params)
        assert answer.status_code == 200, answer.text
        return {
            s["id"]: (
                s["schedule"],
                datetime.fromisoformat(s["start"]),
                datetime.fromisoformat(s["end"]),
                tuple(s["serviceType"]),
            )
            for s in answer.json()["slots"]
        }

    def slots(self, schedule: str, *, status: str = "free") -> list[dict[str, Any]]:
        """The schedule's Slot resources of that status (a FHIR Slot search)."""
        answer = self.http.get(
            "/fhir/Slot", params={"schedule": f"Schedule/{schedule}", "status": status}
        )
        assert answer.status_code == 200, answer.text
        bundle = answer.json()
        assert not [link for link in bundle.get("link", []) if link["relation"] == "next"]
        return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]

    def busiest(
        self, prefix: str = "sch-pr-", *, before: datetime | None = None, skip: int = 0
    ) -> str:
        """The schedule (whose id starts with ``prefix``) with the most free slots (starting
        before ``before``, when given); ``skip`` takes the next ones."""
        counts: dict[str, int] = {}
        for schedule, start, _, _ in self.truth().values():
            if schedule.startswith(prefix) and (before is None or start < before):
                counts[schedule] = counts.get(schedule, 0) + 1
        return sorted(counts, key=lambda s: (-counts[s], s))[skip]

    @property
    def subscriptions(self) -> list[dict[str, Any]]:
        """The Subscriptions the EHR holds."""
        answer = self.http.get("/fhir/Subscription")
        assert answer.status_code == 200, answer.text
        return [e["resource"] for e in answer.json().get("entry", [])]

    # -- scripting -------------------------------------------------------------------------

    def mutate(self, *ops: dict[str, Any]) -> dict[str, Any]:
        answer = self.http.post("/_sandbox/mutate", json={"ops": list(ops)})
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def book(self, *slot_ids: str) -> None:
        """The EHR's own staff book the slots (they turn busy)."""
        self.mutate({"op": "book", "slots": list(slot_ids)})

    def fail(self, path: str, *, status: int = 503, times: int | None = None, **rule: Any) -> str:
        """A fault rule on ``/fhir<path>`` (``times`` times; else always); its id.

        By default requests answer ``status``; a 503 carries ``Retry-After: 0``, so the
        client's retry comes at once. Any other kind of :mod:`sandbox_ehr.faults` goes
        in ``rule`` (``kind="short-page"``, ``kind="slow-answer", latency_ms=...``).
        """
        spec = {"kind": "error", "status": status, "path": f"/fhir{path}", "retry_after": 0}
        if times is not None:
            spec["times"] = times
        spec.update(rule)
        if spec["kind"] != "error":
            spec.pop("status")
        answer = self.http.post("/_sandbox/faults", json=spec)
        assert answer.status_code in (200, 201), answer.text
        rule_id: str = answer.json()["rules"][0]["id"]
        return rule_id

    def forget_subscriptions(self) -> None:
        """The EHR loses its Subscriptions (as in a restart without persistence)."""
        for sub in self.subscriptions:
            assert self.http.delete(f"/fhir/Subscription/{sub['id']}").status_code in (200, 204)

    def fired(self, rule_id: str) -> int:
        """How often the fault rule fired."""
        rules = self.http.get("/_sandbox/faults").json()["rules"]
        return int(next(r["fired"] for r in rules if r["id"] == rule_id))

    def clear_faults(self) -> None:
        assert self.http.delete("/_sandbox/faults").status_code in (200, 204)


def view(slots: dict[str, Slot]) -> dict[str, SlotView]:
    """Cached slots in the shape of :meth:`SandboxEhr.truth`."""
    return {k: (v.schedule_id, v.start, v.end, v.service_types) for k, v in slots.items()}


def client_for(ehr: SandboxEhr, fhir_version: str = "stu3", **kw: Any) -> EhrClient:
    return EhrClient(
        BASE,
        fhir_version=fhir_version,
        transport=ehr.transport(),
        retry=RetryPolicy(attempts=2, base_delay=0.001),
        **kw,
    )


def context(
    engine: Engine,
    ehr: SandboxEhr,
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
