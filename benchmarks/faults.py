"""Fault suite: faults during a full load, then how long until the cache equals the EHR.

Real processes (:mod:`benchmarks.stacks`): a PostgreSQL cluster and a redis-server of
the suite's own on spare ports (never the machine's shared ones), the sandbox EHR,
the API, two or more Celery worker processes and beat, in production mode. Each
scenario starts from an empty cache and an empty Redis, and triggers a full load as
an operator would (``POST /admin/resync`` with the admin key). The fault strikes at
the start of the load or once a part of it is cached, and lasts as long as the
scenario says. While it lasts, ``GET /admin/sync-status`` and ``GET /readyz`` are
sampled. After it ends, every slot of the cache's table is compared field by field
(id, schedule, start, end, status) with the EHR's ground truth (free slots of the
horizon, from the sandbox's control API) once a second, until they are equal or the
timeout passes; then the runs still ``running`` are counted.

Target per scenario: 0 slots differ, 0 runs left running, converged <= 120 s after
the fault ended. ``python -m benchmarks faults --help`` lists the knobs; ``--small``
is the size the pytest variant (``tests/system/test_faults_small.py``) runs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
from celery import Celery

from . import databases, stacks
from .databases import PostgresCluster, RedisServer
from .processes import ROOT
from .stacks import Pipeline

log = logging.getLogger(__name__)

TARGET_CONVERGE_SECONDS = 120.0
ADMIN_SCOPES = "slotsync/admin slotsync/metrics system/Appointment.read"
DATABASE = "slotsync_faults"
# The EHR client's timeout the suite deploys with; an injected hang outlasts it.
EHR_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Sizing:
    """Everything a run's size and durations depend on (the JSON records it)."""

    size: int = 50_000  # sandbox slots (about 75% free)
    horizon_days: int = 30
    page_size: int = 100  # the EHR's page (asked by SLOTSYNC_EHR_PAGE_SIZE)
    ehr_latency_ms: int = 150  # every EHR request, all along: a load takes a while
    workers: int = 2  # Celery worker processes
    worker_concurrency: int = 3
    worker_pool: str = "threads"  # compose's
    api_workers: int = 1
    mid_load_fraction: float = 0.25  # "mid-load": this share of the EHR's free slots cached
    trigger_timeout: float = 300.0
    max_load_fault_seconds: float = 240.0  # faults "for the duration of the load" end by then
    converge_timeout: float = 300.0
    status_interval: float = 3.0
    fault_rate: float = 0.20  # share of EHR requests failing in the fault mix
    bad_page_rate: float = 0.15
    mutation_interval: float = 0.5
    mutation_count: int = 20  # slots changed per mutation round
    worker_down_seconds: float = 5.0
    redis_down_seconds: float = 5.0
    postgres_down_seconds: float = 60.0
    ehr_unreachable_seconds: float = 120.0
    storm_notifications: int = 10_000
    storm_senders: int = 4
    # product settings changed from their defaults (none for make faults, which measures
    # the defaults; the pytest variant shortens the recovery timings to run in minutes)
    timings: tuple[tuple[str, str], ...] = ()


SMALL = Sizing(
    size=3000,
    horizon_days=14,
    page_size=20,
    ehr_latency_ms=150,
    workers=2,
    worker_concurrency=2,
    mid_load_fraction=0.25,
    trigger_timeout=60.0,
    max_load_fault_seconds=30.0,
    converge_timeout=60.0,
    status_interval=2.0,
    mutation_interval=0.3,
    mutation_count=5,
    worker_down_seconds=3.0,
    redis_down_seconds=3.0,
    postgres_down_seconds=10.0,
    ehr_unreachable_seconds=20.0,
    storm_notifications=1500,
    storm_senders=3,
    timings=(
        ("SLOTSYNC_CHUNK_LEASE_SECONDS", "15"),
        ("SLOTSYNC_REAPER_SECONDS", "5"),
        ("SLOTSYNC_RUN_QUIET_SECONDS", "10"),
        ("SLOTSYNC_TASK_RETRY_BASE_SECONDS", "1"),
        ("SLOTSYNC_TASK_RETRY_MAX_SECONDS", "15"),
        ("SLOTSYNC_FOLLOW_UP_BASE_SECONDS", "5"),
    ),
)


class HarnessError(RuntimeError):
    """The suite could not carry out a scenario (not a finding about the product)."""


# -- reading the cache's bookkeeping (plain SQL, a new connection each time) ---------------


def _query(db_url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(databases.plain_dsn(db_url), connect_timeout=5, autocommit=True) as conn:
        return list(conn.execute(query, params).fetchall())  # type: ignore[arg-type]


def run_by_token(db_url: str, token: str) -> dict[str, Any] | None:
    rows = _query(
        db_url,
        "SELECT to_jsonb(r) FROM sync_runs r WHERE r.token = %s ORDER BY r.id DESC LIMIT 1",
        (token,),
    )
    return rows[0][0] if rows else None


def running_runs(db_url: str) -> list[dict[str, Any]]:
    rows = _query(
        db_url,
        "SELECT to_jsonb(r) FROM sync_runs r"
        " WHERE r.status IN ('planning', 'running') ORDER BY r.id",
    )
    return [r[0] for r in rows]


def runs_by_status(db_url: str) -> dict[str, int]:
    rows = _query(db_url, "SELECT kind, status, count(*) FROM sync_runs GROUP BY 1, 2")
    return {f"{kind} {status}": int(n) for kind, status, n in sorted(rows)}


def cached_slot_count(db_url: str) -> int:
    return int(_query(db_url, "SELECT count(*) FROM slots")[0][0])


# -- what status said ---------------------------------------------------------------------


def _get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int | str, Any]:
    try:
        response = httpx.get(url, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        return type(exc).__name__, None
    try:
        return response.status_code, msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return response.status_code, None


def sample_status(p: Pipeline, started: float) -> dict[str, Any]:
    """One look at ``/admin/sync-status`` and ``/readyz``: whatever keys they have."""
    sample: dict[str, Any] = {"t": round(time.monotonic() - started, 1)}
    code, body = _get_json(f"{p.api_url}/admin/sync-status?limit=1", p.admin_headers)
    status: dict[str, Any] = {"http": code}
    overall = body.get("overall") if isinstance(body, dict) else None
    if isinstance(overall, dict):
        for key in ("health", "problems", "feed_state"):
            if key in overall:
                status[key] = overall[key]
        if isinstance(overall.get("running"), list):
            status["running"] = len(overall["running"])
    sample["sync_status"] = status
    code, body = _get_json(f"{p.api_url}/readyz", p.admin_headers)  # details: ops only
    ready: dict[str, Any] = {"http": code}
    if isinstance(body, dict):
        ready["status"] = body.get("status")
        checks = body.get("checks")
        if isinstance(checks, dict):
            ready["failing"] = sorted(
                name for name, c in checks.items() if isinstance(c, dict) and not c.get("ok")
            )
    sample["readyz"] = ready
    return sample


class StatusSampler:
    """Samples status every ``interval`` seconds in a thread, between start() and stop()."""

    def __init__(self, p: Pipeline, interval: float, started: float) -> None:
        self.p = p
        self.interval = interval
        self.started = started
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="status-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append(sample_status(self.p, self.started))
            self._stop.wait(self.interval)

    def __enter__(self) -> StatusSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _sync_status_label(s: dict[str, Any]) -> str:
    parts = [str(s.get("http"))]
    if "health" in s:
        parts.append(str(s["health"]))
    if "running" in s:
        parts.append(f"running={s['running']}")
    if s.get("problems"):
        parts.append(f"problems={len(s['problems'])}")
    return " ".join(parts)


def _readyz_label(s: dict[str, Any]) -> str:
    failing = s.get("failing")
    return f"{s.get('http')}" + (f"[{','.join(failing)}]" if failing else "")


def _runs(labels: list[str]) -> str:
    """Consecutive equal labels as ``label x n``, in order."""
    out: list[tuple[str, int]] = []
    for label in labels:
        if out and out[-1][0] == label:
            out[-1] = (label, out[-1][1] + 1)
        else:
            out.append((label, 1))
    return ", ".join(f"{label} x{n}" if n > 1 else label for label, n in out)


def summarize_status(samples: list[dict[str, Any]]) -> dict[str, str]:
    return {
        "sync_status": _runs([_sync_status_label(s["sync_status"]) for s in samples]),
        "readyz": _runs([_readyz_label(s["readyz"]) for s in samples]),
    }


# -- the system under test ----------------------------------------------------------------


@dataclass
class System:
    """One stack for all scenarios: servers, sandbox and pipeline; reset between scenarios."""

    sizing: Sizing
    postgres: PostgresCluster
    redis: RedisServer
    p: Pipeline
    settings: dict[str, str]
    broker: Celery
    worker_names: list[str] = field(default_factory=list)

    def start_worker(self, name: str) -> None:
        s = self.sizing
        self.p.start_worker(name, concurrency=s.worker_concurrency, pool=s.worker_pool)

    def wait_workers(self, names: list[str], timeout: float = 90) -> None:
        def logs() -> str:
            return "\n".join(self.p.log(n) for n in names)

        stacks.wait_for_workers(self.broker, names, timeout, logs)

    def fresh(self, redis_persistence: str) -> None:
        """Empty cache, empty Redis (in the scenario's persistence mode), no EHR fault and no
        EHR Subscription; then the API, workers and beat started anew."""
        for name in [*self.worker_names, "beat"]:
            self.p.kill(name)  # their queued and in-memory work is thrown away anyway
        # the API too: it must not carry what it knew of the old cache into the new one
        self.p.stop("api")
        self.p.control("DELETE", "/faults")
        self.p.control("DELETE", "/stats")  # each scenario's EHR counters are its own
        self.p.forget_subscriptions()
        if self.postgres.data.exists() and not (self.postgres.data / "postmaster.pid").exists():
            self.postgres.start()  # a scenario that failed half-way left it stopped
        self.redis.fresh(redis_persistence)
        databases.empty_cache(self.p.db_url)
        self.add_rule(
            {"kind": "latency", "latency_ms": self.sizing.ehr_latency_ms, "path": "/fhir/*"}
        )
        # all at once (the EHR retries its handshake until the API listens)
        self.p.start_api(workers=self.sizing.api_workers, wait=False)
        for name in self.worker_names:
            self.start_worker(name)
        self.p.start_beat()
        self.p.children["api"].wait_for_http(f"{self.p.api_url}/healthz", timeout=120)
        self.wait_workers(self.worker_names)

    def add_rule(self, rule: dict[str, Any]) -> str:
        answer = self.p.control("POST", "/faults", json=rule)
        return str(answer["rules"][0]["id"])

    def remove_rules(self, ids: list[str]) -> None:
        for rule_id in ids:
            with contextlib.suppress(httpx.HTTPStatusError):
                self.p.control("DELETE", f"/faults/{rule_id}")


def product_settings(sizing: Sizing, admin_key: str) -> dict[str, str]:
    """What the suite deploys with: production mode, product defaults for every sync,
    retry and timing setting (unless the sizing's ``timings`` change some); only the
    deployment's own values are set."""
    # no daily full load may land inside a run and mend what a scenario broke
    daily = (datetime.now(UTC) + timedelta(hours=12)).strftime("%H:%M")
    return {
        "SLOTSYNC_ENVIRONMENT": "production",
        "SLOTSYNC_WEBHOOK_SECRET": secrets.token_urlsafe(32),
        "SLOTSYNC_PROPOSAL_SECRET": secrets.token_urlsafe(32),
        "SLOTSYNC_API_KEYS": msgspec.json.encode({admin_key: ADMIN_SCOPES}).decode(),
        # production needs a rules file: the sandbox's organisation is the bundled example's
        # (relative to the processes' working directory, the repository root)
        "SLOTSYNC_RULES_PATH": "rules/examples/multi-clinic.yaml",
        "SLOTSYNC_EHR_FHIR_VERSION": "stu3",
        "SLOTSYNC_HORIZON_DAYS": str(sizing.horizon_days),
        "SLOTSYNC_EHR_PAGE_SIZE": str(sizing.page_size),
        "SLOTSYNC_EHR_TIMEOUT_SECONDS": str(EHR_TIMEOUT_SECONDS),
        "SLOTSYNC_DAILY_LOAD_AT": daily,
        **dict(sizing.timings),
    }


@contextmanager
def running_system(sizing: Sizing, keep_logs: Path | None = None) -> Iterator[System]:
    """Private PostgreSQL and Redis, the sandbox, API, workers and beat; all stopped after."""
    admin_key = secrets.token_urlsafe(32)
    settings = product_settings(sizing, admin_key)
    workers = [f"worker-{i}" for i in range(1, sizing.workers + 1)]
    with (
        databases.private_postgres() as postgres,
        databases.private_redis("none") as redis_server,
        stacks.sandbox_ehr(
            size=sizing.size, page_size=sizing.page_size, horizon_days=sizing.horizon_days
        ) as sandbox,
    ):
        db_url = postgres.create_database(DATABASE)
        with stacks.running_pipeline(
            db_url=db_url,
            redis_url=redis_server.url,
            settings=settings,
            sandbox=sandbox,
            horizon_days=sizing.horizon_days,
            admin_key=admin_key,
            start=False,
            keep_logs=keep_logs,
        ) as p:
            broker = Celery(broker=redis_server.url)
            try:
                yield System(sizing, postgres, redis_server, p, settings, broker, workers)
            finally:
                broker.close()


# -- one scenario ---------------------------------------------------------------------------


@dataclass
class Context:
    """What a scenario's fault may use while it runs."""

    system: System
    token: str
    started: float  # monotonic time of the resync
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def p(self) -> Pipeline:
        return self.system.p

    @property
    def sizing(self) -> Sizing:
        return self.system.sizing

    def load_running(self) -> bool:
        """The load has not ended yet (not started counts as running)."""
        with contextlib.suppress(psycopg.Error):
            run = run_by_token(self.p.db_url, self.token)
            return run is None or run.get("status") in ("planning", "running")
        return True

    def while_loading(self, every: float, step: Callable[[int], None] | None = None) -> None:
        """Until the load ends (at most ``max_load_fault_seconds``), calling ``step(i)``."""
        deadline = time.monotonic() + self.sizing.max_load_fault_seconds
        i = 0
        while time.monotonic() < deadline and self.load_running():
            if step is not None:
                step(i)
            i += 1
            time.sleep(every)
        self.details["load_ended_during_fault"] = not self.load_running()


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    fault: Callable[[Context], None]  # returns when the fault has ended
    at: str = "mid-load"  # or "load-start": the fault begins with the load
    setup: Callable[[System], list[str]] | None = None  # fault rules set before the load
    redis_persistence: str = "none"


def _sequential(rate: float, n: int) -> list[float]:
    """Probabilities for ``n`` rules tried in order so that each fires on ``rate / n`` of
    the requests (the sandbox tries a rule only when no earlier one fired)."""
    share = rate / n
    return [share / (1 - i * share) for i in range(n)]


def _fault_mix_rules(system: System) -> list[str]:
    kinds: list[dict[str, Any]] = [
        {"kind": "error", "status": 500},
        {"kind": "error", "status": 503},
        {"kind": "429", "retry_after": 2},
        {"kind": "timeout", "hang_seconds": EHR_TIMEOUT_SECONDS + 5},
        {"kind": "truncate"},
    ]
    chances = _sequential(system.sizing.fault_rate, len(kinds))
    return [
        system.add_rule({**k, "path": "/fhir/*", "probability": round(c, 6), "seed": 100 + i})
        for i, (k, c) in enumerate(zip(kinds, chances, strict=True))
    ]


def _bad_page_rules(system: System) -> list[str]:
    kinds = ["truncate", "invalid-json", "short-page"]
    chances = _sequential(system.sizing.bad_page_rate, len(kinds))
    return [
        system.add_rule(
            {"kind": k, "path": "/fhir/Slot/*", "probability": round(c, 6), "seed": 200 + i}
        )
        for i, (k, c) in enumerate(zip(kinds, chances, strict=True))
    ]


def _no_fault(ctx: Context) -> None:
    ctx.details["fault"] = "none"


def _until_load_ends(ctx: Context) -> None:
    ctx.while_loading(1.0)


def _mutations(ctx: Context) -> None:
    """Slots booked, freed, moved and added at the EHR while the load pages."""
    start, end = ctx.p.horizon()
    days = (end - start).days
    rng = random.Random(5)
    changed: set[str] = set()

    def step(i: int) -> None:
        ops: list[dict[str, Any]] = [
            {
                "op": "random",
                "count": ctx.sizing.mutation_count,
                "seed": 1000 + i,
                "move_fraction": 0.2,
            }
        ]
        if i % 10 == 0:  # a day's slots for schedules that had none that day
            day = (start + timedelta(days=rng.randrange(1, days))).date()
            ops.append({"op": "add-day", "date": str(day)})
        answer = ctx.p.control("POST", "/mutate", json={"ops": ops})
        changed.update(answer["slots"])

    ctx.while_loading(ctx.sizing.mutation_interval, step)
    ctx.details["slots_changed"] = len(changed)


def _kill_worker(ctx: Context) -> None:
    name = ctx.system.worker_names[0]
    ctx.p.kill(name)
    ctx.details["killed"] = name
    time.sleep(ctx.sizing.worker_down_seconds)
    ctx.system.start_worker(name)  # as a supervisor would


def _restart_redis(keep: bool) -> Callable[[Context], None]:
    def fault(ctx: Context) -> None:
        server = ctx.system.redis
        try:
            if keep:
                server.stop()  # orderly: the append-only file is flushed
            else:
                server.kill()
                server.wipe()
            time.sleep(ctx.sizing.redis_down_seconds)
        finally:
            server.start()
        ctx.details["redis_persistence"] = server.persistence

    return fault


def _postgres_down(ctx: Context) -> None:
    cluster = ctx.system.postgres
    cluster.stop("fast")
    try:
        time.sleep(ctx.sizing.postgres_down_seconds)
    finally:
        cluster.start()


def _ehr_unreachable(ctx: Context) -> None:
    system = ctx.system
    ids = [
        system.add_rule({"kind": "reset", "path": "/fhir/*", "probability": 0.5, "seed": 300}),
        system.add_rule({"kind": "error", "status": 503, "path": "/fhir/*"}),
    ]
    try:
        time.sleep(ctx.sizing.ehr_unreachable_seconds)
    finally:
        system.remove_rules(ids)


def _storm(ctx: Context) -> None:
    """Signed notifications posted to the webhook (replays of real changes, duplicated and
    shuffled) while the EHR changes and itself notifies twice or late."""
    p, sizing = ctx.p, ctx.sizing
    system = ctx.system
    rules = [
        system.add_rule({"kind": "notify-duplicate", "probability": 0.5, "seed": 400}),
        system.add_rule({"kind": "notify-out-of-order", "probability": 0.3, "seed": 401}),
    ]
    stats_before = p.control("GET", "/stats")["notifications"]
    secret = system.settings["SLOTSYNC_WEBHOOK_SECRET"]
    windows: list[tuple[str, str, str]] = []  # real changes (schedule, start, end)
    lock = threading.Lock()
    done = threading.Event()
    actors: dict[str, str] = {}
    statuses: Counter[str] = Counter()

    def actor(client: httpx.Client, schedule: str) -> str:
        if schedule not in actors:
            res = client.get(f"{p.sandbox.base_url}/Schedule/{schedule}").json()
            actors[schedule] = res["actor"][0]["reference"]
        return actors[schedule]

    def mutation(i: int) -> None:
        answer = p.control(
            "POST",
            "/mutate",
            json={"op": "random", "count": sizing.mutation_count, "seed": 2000 + i},
        )
        with lock:
            windows.extend((c["schedule"], c["start"], c["end"]) for c in answer["changes"])

    def mutate() -> None:
        try:
            for i in range(1, 10_000):
                if done.wait(sizing.mutation_interval):
                    return
                mutation(i)
        except httpx.HTTPError as exc:  # the storm goes on; the JSON says why changes stopped
            ctx.details["mutations_stopped"] = f"{type(exc).__name__}: {exc}"

    deadline = time.monotonic() + sizing.max_load_fault_seconds

    def send(n: int, seed: int) -> None:
        rng = random.Random(seed)
        hook = f"{p.api_url}/webhook/subscription"
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/fhir+json"}
        with httpx.Client(timeout=30) as client:
            for _ in range(n):
                if time.monotonic() > deadline:
                    return
                with lock:  # an earlier change again: a duplicate, and out of order
                    schedule, start, end = windows[rng.randrange(len(windows))]
                body = {
                    "resourceType": "Schedule",
                    "id": schedule,
                    "actor": [{"reference": actor(client, schedule)}],
                    "planningHorizon": {"start": start, "end": end},
                }
                try:
                    answer = client.post(hook, content=msgspec.json.encode(body), headers=headers)
                    code = str(answer.status_code)
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                with lock:
                    statuses[code] += 1

    mutation(0)  # the first real change, so that every post replays one
    mutator = threading.Thread(target=mutate, name="storm-mutations", daemon=True)
    mutator.start()
    try:
        share = sizing.storm_notifications // sizing.storm_senders
        counts = [share] * sizing.storm_senders
        counts[0] += sizing.storm_notifications - sum(counts)
        with ThreadPoolExecutor(sizing.storm_senders) as pool:
            for future in [pool.submit(send, n, 500 + i) for i, n in enumerate(counts)]:
                future.result()
    finally:
        done.set()
        mutator.join(timeout=60)
        system.remove_rules(rules)
    stats_after = p.control("GET", "/stats")["notifications"]
    events = sum(
        v - stats_before.get(k, 0)
        for k, v in stats_after.items()
        if k.endswith("event-notification")
    )
    ctx.details.update(
        webhook_posts=sum(statuses.values()),
        webhook_answers=dict(statuses),
        ehr_notifications_delivered=events,
        changes=len(windows),
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("baseline", "no fault: the load alone", _no_fault),
        Scenario(
            "ehr-fault-mix",
            "20% of EHR requests fail (500, 503, 429 Retry-After, hang past the client"
            " timeout, truncated body) for the whole load",
            _until_load_ends,
            at="load-start",
            setup=_fault_mix_rules,
        ),
        Scenario(
            "bad-pages",
            "15% of Slot pages truncated, not JSON, or short (half the entries, no next link)"
            " for the whole load",
            _until_load_ends,
            at="load-start",
            setup=_bad_page_rules,
        ),
        Scenario(
            "ehr-changes-during-paging",
            "EHR slots booked, freed, moved and added continuously while the load pages",
            _mutations,
            at="load-start",
        ),
        Scenario(
            "worker-sigkill",
            "one Celery worker process SIGKILLed mid-load, restarted after a few seconds",
            _kill_worker,
        ),
        Scenario(
            "redis-restart-keep",
            "Redis (AOF) stopped mid-load and started again with its data",
            _restart_redis(keep=True),
            redis_persistence="aof",
        ),
        Scenario(
            "redis-restart-empty",
            "Redis (no persistence) killed mid-load and started again empty",
            _restart_redis(keep=False),
        ),
        Scenario(
            "postgres-down",
            "PostgreSQL stopped mid-load (fast shutdown) and started again later",
            _postgres_down,
        ),
        Scenario(
            "ehr-unreachable",
            "every EHR request fails (connection reset or 503) mid-load for a while",
            _ehr_unreachable,
        ),
        Scenario(
            "notification-storm",
            "signed webhook notifications replaying real changes (duplicated, out of order)"
            " plus EHR changes notified twice or late, during the load",
            _storm,
            at="load-start",
        ),
    )
}


def _resync(p: Pipeline) -> str:
    """A full load, asked for as an operator would."""
    response = httpx.post(f"{p.api_url}/admin/resync", json={}, headers=p.admin_headers, timeout=30)
    if response.status_code != 202:
        raise HarnessError(f"POST /admin/resync answered {response.status_code}: {response.text}")
    return str(response.json()["token"])


def _load_progress(ctx: Context) -> float | None:
    """The share of the load's chunks finished, if its run says (None before it does)."""
    run = run_by_token(ctx.p.db_url, ctx.token)
    if run is None or not run.get("chunks_total"):
        return None
    finished = (run.get("chunks_done") or 0) + (run.get("chunks_failed") or 0)
    return float(finished) / float(run["chunks_total"])


def _wait_mid_load(ctx: Context, truth_count: int) -> dict[str, Any]:
    """Until ``mid_load_fraction`` of the load's chunks are finished, or the load ended.

    By the run's chunk counts, not by the cache's slot count: the watchdog's own polls
    may fill the near days of an empty cache before the load does.
    """
    deadline = time.monotonic() + ctx.sizing.trigger_timeout
    progress: float | None = None
    while time.monotonic() < deadline:
        progress = _load_progress(ctx)
        if (progress is not None and progress >= ctx.sizing.mid_load_fraction) or (
            not ctx.load_running()
        ):
            break
        time.sleep(0.2)
    return {
        "chunks_finished_share": round(progress, 2) if progress is not None else None,
        "slots_cached": cached_slot_count(ctx.p.db_url),
        "ehr_free_slots": truth_count,
        "seconds_after_resync": round(time.monotonic() - ctx.started, 1),
        "load_running": ctx.load_running(),
    }


def _diff_json(difference: stacks.SlotDiff) -> dict[str, Any]:
    return {
        "missing": len(difference.missing),
        "extra": len(difference.extra),
        "changed": len(difference.changed),
        "total": difference.total,
        "examples": {
            "missing": difference.missing[:5],
            "extra": difference.extra[:5],
            "changed": difference.changed[:5],
        },
    }


def _converge(system: System, fault_end: float) -> dict[str, Any]:
    """Compare every slot once a second until equal or the timeout; then wait (within the
    same deadline) for every run to leave ``running``; then compare once more."""
    p, sizing = system.p, system.sizing
    deadline = fault_end + sizing.converge_timeout
    converged_after: float | None = None
    polls = 0
    errors: Counter[str] = Counter()
    last: stacks.SlotDiff | None = None
    while True:
        tick = time.monotonic()
        polls += 1
        try:
            last = p.diff()[0]
        except (httpx.HTTPError, psycopg.Error) as exc:
            errors[type(exc).__name__] += 1
        else:
            if not last:
                converged_after = time.monotonic() - fault_end
                break
        if time.monotonic() > deadline:
            break
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    running: list[dict[str, Any]] = []
    runs_done_after: float | None = None
    while True:
        with contextlib.suppress(psycopg.Error):
            running = running_runs(p.db_url)
            if not running:
                runs_done_after = time.monotonic() - fault_end
                break
        if time.monotonic() > deadline:
            break
        time.sleep(1.0)
    final, truth, cache = p.diff()
    return {
        "converged": converged_after is not None,
        "converge_seconds": round(converged_after, 1) if converged_after is not None else None,
        "comparisons": polls,
        "comparison_errors": dict(errors),
        "differ_at_end": _diff_json(final),
        "differ_at_timeout": _diff_json(last) if converged_after is None and last else None,
        "ehr_free_slots": len(truth),
        "cached_slots": len(cache),
        "runs_done_seconds": round(runs_done_after, 1) if runs_done_after is not None else None,
        "runs_left_running": len(running),
        "running_runs": [
            {
                k: r.get(k)
                for k in (
                    "id",
                    "kind",
                    "scope",
                    "started_at",
                    "chunks_total",
                    "chunks_done",
                    "chunks_failed",
                    "error",
                )
            }
            for r in running
        ],
    }


def run_scenario(system: System, name: str) -> dict[str, Any]:
    """Fresh cache, a full load, the fault, then convergence; the result as JSON."""
    scenario = SCENARIOS[name]
    sizing = system.sizing
    p = system.p
    began = time.monotonic()
    horizon_at_start = p.horizon()[0]
    result: dict[str, Any] = {"scenario": name, "description": scenario.description}
    log.warning("fault scenario %s: %s", name, scenario.description)
    system.fresh(scenario.redis_persistence)
    result["setup_seconds"] = round(time.monotonic() - began, 1)
    truth_count = len(p.truth())
    result["status_before_load"] = sample_status(p, began)
    rules = scenario.setup(system) if scenario.setup else []
    token = _resync(p)
    ctx = Context(system, token, time.monotonic())
    fault_started = ctx.started
    try:
        if scenario.at == "mid-load":
            result["trigger"] = _wait_mid_load(ctx, truth_count)
            fault_started = time.monotonic()
        with StatusSampler(p, sizing.status_interval, fault_started) as sampler:
            scenario.fault(ctx)
    finally:
        system.remove_rules(rules)
    fault_end = time.monotonic()
    result["fault"] = {
        "at": scenario.at,
        "seconds": round(fault_end - fault_started, 1),
        "began_seconds_after_resync": round(fault_started - ctx.started, 1),
        **ctx.details,
    }
    # A mid-load fault that struck after the load had ended measured nothing.
    result["valid"] = scenario.at != "mid-load" or bool(result["trigger"]["load_running"])
    result["converge_timeout"] = sizing.converge_timeout
    result.update(_converge(system, fault_end))
    result["status_during_fault"] = sampler.samples
    result["status_summary"] = summarize_status(sampler.samples)
    result["status_after"] = sample_status(p, fault_end)
    result["load_run"] = _run_summary(run_by_token(p.db_url, token))
    result["runs_by_status"] = runs_by_status(p.db_url)
    stats = p.control("GET", "/stats")
    result["ehr"] = {
        "faults_fired": stats["faults"],
        "requests": stats["requests"],
        "notification_failures": stats["notificationFailures"],
    }
    result["wall_seconds"] = round(time.monotonic() - began, 1)
    # the horizon (and so both sides of the comparison) moves at 00:00 UTC
    result["crossed_midnight_utc"] = p.horizon()[0] != horizon_at_start
    result["meets_target"] = bool(
        result["valid"]
        and result["differ_at_end"]["total"] == 0
        and result["runs_left_running"] == 0
        and result["converge_seconds"] is not None
        and result["converge_seconds"] <= TARGET_CONVERGE_SECONDS
    )
    return result


def _run_summary(run: dict[str, Any] | None) -> dict[str, Any] | None:
    if run is None:
        return None
    keep = (
        "id",
        "kind",
        "status",
        "started_at",
        "finished_at",
        "chunks_total",
        "chunks_done",
        "chunks_failed",
        "slots_seen",
        "error",
    )
    return {k: run.get(k) for k in keep if k in run}


def run_scenarios(system: System, names: list[str]) -> list[dict[str, Any]]:
    """Every scenario in turn; one the harness could not carry out is recorded as such."""
    results = []
    for name in names:
        try:
            results.append(run_scenario(system, name))
        except (
            HarnessError,
            TimeoutError,
            httpx.HTTPError,
            psycopg.Error,
            subprocess.SubprocessError,
        ) as exc:
            log.exception("fault scenario %s could not run", name)
            results.append(
                {"scenario": name, "valid": False, "harness_error": f"{type(exc).__name__}: {exc}"}
            )
        log.warning("fault scenario %s: %s", name, row(results[-1]))
    return results


# -- output ---------------------------------------------------------------------------------


def row(r: dict[str, Any]) -> str:
    if r.get("harness_error"):
        return f"| {r['scenario']} | harness error: {r['harness_error'][:80]} | | | | | no |"
    d = r["differ_at_end"]
    differ = f"{d['total']} ({d['missing']}/{d['extra']}/{d['changed']})"
    converged = (
        f"{r['converge_seconds']:.0f} s"
        if r["converged"]
        else f"no ({r['converge_timeout']:.0f} s)"
    )
    status = r["status_summary"]
    said = f"sync-status {status['sync_status'] or '-'}; readyz {status['readyz'] or '-'}"
    valid = "" if r["valid"] else " (fault after load ended)"
    if r.get("crossed_midnight_utc"):
        valid += " (crossed 00:00 UTC)"
    return (
        f"| {r['scenario']}{valid} | {differ} | {converged} | {r['runs_left_running']} |"
        f" {said} | {r['wall_seconds']:.0f} | {'yes' if r['meets_target'] else 'no'} |"
    )


def table(result: dict[str, Any]) -> str:
    header = (
        "| scenario | slots differing at end (missing/extra/changed) | converged after fault"
        " | runs left running | status during fault | wall s | target met |\n"
        "|---|---|---|---|---|---|---|"
    )
    return "\n".join([header, *(row(r) for r in result["scenarios"])])


# -- command line -----------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=None, help="sandbox slots (default 50,000)")
    p.add_argument("--small", action="store_true", help="the pytest variant's sizes and durations")
    p.add_argument("--scenarios", default="", help=f"comma list of {', '.join(SCENARIOS)}")
    p.add_argument("--converge-timeout", type=float, default=None, help="seconds (default 300)")
    p.add_argument("--postgres-down-seconds", type=float, default=None)
    p.add_argument("--ehr-unreachable-seconds", type=float, default=None)
    p.add_argument("--redis-down-seconds", type=float, default=None)
    p.add_argument("--worker-down-seconds", type=float, default=None)
    p.add_argument("--storm-notifications", type=int, default=None)
    p.add_argument("--fault-rate", type=float, default=None, help="fault mix share (0.20)")
    p.add_argument("--ehr-latency-ms", type=int, default=None)
    p.add_argument("--workers", type=int, default=None, help="Celery worker processes (>= 2)")
    p.add_argument("--worker-concurrency", type=int, default=None)
    p.add_argument("--worker-pool", choices=("threads", "prefork", "solo"), default=None)
    p.add_argument("--keep-logs", type=Path, default=None, help="copy process logs here")


def sizing_from(args: argparse.Namespace) -> Sizing:
    sizing = SMALL if args.small else Sizing()
    overrides = {
        name: getattr(args, name)
        for name in (
            "size",
            "converge_timeout",
            "postgres_down_seconds",
            "ehr_unreachable_seconds",
            "redis_down_seconds",
            "worker_down_seconds",
            "storm_notifications",
            "fault_rate",
            "ehr_latency_ms",
            "workers",
            "worker_concurrency",
            "worker_pool",
        )
        if getattr(args, name, None) is not None
    }
    return replace(sizing, **overrides)


def _git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or None
    return None


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C: every process started is stopped on the way out."""

    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizing = sizing_from(args)
    names = [n for n in args.scenarios.split(",") if n] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; one of {list(SCENARIOS)}")
    if sizing.workers < 2:
        raise SystemExit("the suite runs at least 2 worker processes")
    meta: dict[str, Any] = {
        "command": shlex.join(
            [os.path.basename(sys.executable), "-m", "benchmarks", *sys.argv[1:]]
        ),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "sizing": asdict(sizing),
        "target": {
            "slots_differing": 0,
            "runs_left_running": 0,
            "converge_seconds": TARGET_CONVERGE_SECONDS,
        },
    }
    began = time.monotonic()
    with _sigterm_as_exit(), running_system(sizing, args.keep_logs) as system:
        config = system.p.control("GET", "/config")
        meta["sandbox_slots"] = config["slots"]
        meta["sandbox_schedules"] = config["schedules"]
        meta["ehr_free_slots_in_horizon"] = len(system.p.truth())
        meta["product_settings"] = {
            k: (
                "<secret>"
                if k in ("SLOTSYNC_WEBHOOK_SECRET", "SLOTSYNC_PROPOSAL_SECRET", "SLOTSYNC_API_KEYS")
                else v
            )
            for k, v in system.settings.items()
        }
        meta["processes"] = {
            "workers": f"{sizing.workers} x slotsync worker --pool {sizing.worker_pool}"
            f" --concurrency {sizing.worker_concurrency}",
            "api": f"slotsync serve --workers {sizing.api_workers}",
            "beat": "slotsync beat",
        }
        results = run_scenarios(system, names)
    meta["wall_seconds"] = round(time.monotonic() - began, 1)
    meta["scenarios_meeting_target"] = sum(1 for r in results if r.get("meets_target"))
    return {**meta, "scenarios": results}
