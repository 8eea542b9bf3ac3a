"""The whole system as real processes, for the benchmarks, the fault suite and the tests.

- :class:`Stack`: slotsync processes (the API, Celery workers, beat) by name, on one
  environment, each with its log in the stack's directory. :func:`stack` runs one
  on throwaway databases of the shared servers (the benchmarks).
- :class:`Pipeline`: a stack against a sandbox EHR process (:func:`sandbox_ehr`), plus
  the EHR's control API and the two sides of the comparison: the EHR's ground truth of
  free slots and the cache's slot table, read field by field (:func:`running_pipeline`;
  the fault suite and the end-to-end tests).

Every process started here is stopped when its ``with`` block ends, also on Ctrl-C
or an exception; every wait is bounded in time.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property, partial
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import msgspec
import psycopg
from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.cache import runs as runs_repo
from app.cache.db import make_engine
from app.cache.models import SyncRunRow
from app.settings import Settings
from sandbox_ehr.process import SandboxProcess, start_sandbox
from workers.celery_app import make_celery

from .databases import plain_dsn, throwaway_postgres, throwaway_redis_db
from .processes import Child, free_port, process_env, slotsync, spawn, wait_until

LOOPBACK = "127.0.0.1"

__all__ = [
    "Pipeline",
    "Slot",
    "SlotDiff",
    "Stack",
    "diff_slots",
    "running_pipeline",
    "sandbox_ehr",
    "stack",
    "start_api",
    "wait_for_workers",
]


def wait_for_workers(
    celery: Celery,
    names: Sequence[str],
    timeout: float = 90,
    context: Callable[[], str] = lambda: "",
) -> None:
    """Until every named Celery worker (``name@host``) answers a ping."""

    def all_answer() -> bool:
        replies = celery.control.ping(timeout=1.0) or []
        heard = {host.split("@", 1)[0] for reply in replies for host in reply}
        return set(names) <= heard

    wait_until(
        all_answer, timeout, f"workers {list(names)} answering", interval=0.5, context=context
    )


def serve(port: int, workers: int = 1) -> list[str]:
    """The arguments of ``slotsync serve`` on a loopback port."""
    return ["serve", "--host", LOOPBACK, "--port", str(port), "--workers", str(workers)]


def start_api(
    env: dict[str, str],
    *,
    port: int | None = None,
    workers: int = 1,
    log: Path | None = None,
    log_level: str | None = None,
    timeout: float = 120,
) -> Child:
    """``slotsync serve`` on its own (``port``: a free one if None), once ``/healthz``
    answers; its ``url`` is the server's root."""
    port = port or free_port()
    api = spawn("api", slotsync(*serve(port, workers), log_level=log_level), env=env, log=log)
    api.url = f"http://{LOOPBACK}:{port}"
    try:
        api.wait_for_http(f"{api.url}/healthz", timeout=timeout)
    except BaseException:
        api.stop()
        raise
    return api


# -- the stack ------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Stack:
    """slotsync processes by name on one environment; their logs in ``workdir``."""

    env: dict[str, str]
    workdir: Path
    api_port: int
    log_level: str = "INFO"
    children: dict[str, Child] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.api_port}"

    @cached_property
    def settings(self) -> Settings:
        """The settings every process of the stack reads (from its ``SLOTSYNC_*``)."""
        values: dict[str, Any] = {
            k.removeprefix("SLOTSYNC_").lower(): v
            for k, v in self.env.items()
            if k.startswith("SLOTSYNC_")
        }
        return Settings(**values)

    @cached_property
    def celery(self) -> Celery:
        """A Celery client on the stack's broker (to send tasks, to ping workers)."""
        return make_celery(self.settings)

    @cached_property
    def engine(self) -> Engine:
        """An engine on the stack's cache database."""
        return make_engine(self.settings.effective_database_url)

    def wait_run(self, token: str, timeout: float, interval: float = 0.2) -> SyncRunRow:
        """The sync run of ``token`` once it has finished (``ok`` or ``failed``)."""

        def finished() -> SyncRunRow | None:
            with Session(self.engine) as s:
                run = runs_repo.run_by_token(s, token)
                return run if run is not None and run.status in ("ok", "failed") else None

        context = partial(self.log, "worker")
        return wait_until(
            finished, timeout, f"run {token} finished", interval=interval, context=context
        )

    def load(self, timeout: float = 90) -> SyncRunRow:
        """A full load by the workers, once it has finished."""
        token = self.celery.send_task("slotsync.initial_load").id
        return self.wait_run(token, timeout)

    # -- processes ---------------------------------------------------------------

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Child:
        """``slotsync <args>`` as process ``name`` (its log appended to ``<name>.log``)."""
        if self.alive(name):
            raise RuntimeError(f"{name} is already running")
        command = slotsync(*args, log_level=self.log_level)
        log = self.workdir / f"{name}.log"  # a restarted process keeps its predecessor's log
        child = spawn(name, command, env={**self.env, **(env or {})}, log=log)
        self.children[name] = child
        return child

    def start_api(self, *, workers: int = 1, wait: bool = True) -> Child:
        api = self.start("api", *serve(self.api_port, workers))
        api.url = self.api_url
        if wait:
            api.wait_for_http(f"{self.api_url}/healthz", timeout=120)
        return api

    def start_worker(
        self,
        name: str = "worker",
        *,
        concurrency: int = 2,
        pool: str | None = None,
        queues: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Child:
        args = ["worker", "--concurrency", str(concurrency)]
        if pool is not None:
            args += ["--pool", pool]
        if queues is not None:
            args += ["--queues", queues]
        # a node name of its own, so that several workers on one host tell apart
        args += ["--", f"--hostname={name}@%h"]
        return self.start(name, *args, env=env)

    def start_beat(self) -> Child:
        # a new schedule file each time: a fresh beat, with nothing remembered
        schedule = self.workdir / f"beat-schedule-{time.monotonic_ns()}"
        return self.start("beat", "beat", "--schedule-file", str(schedule))

    def wait_workers(self, names: Sequence[str] = ("worker",), timeout: float = 90) -> None:
        def logs() -> str:
            return "\n".join(self.log(n) for n in names)

        wait_for_workers(self.celery, names, timeout, logs)

    def alive(self, name: str) -> bool:
        child = self.children.get(name)
        return child is not None and child.alive()

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Signal ``name``'s process group; SIGKILL if it has not ended within ``timeout``."""
        child = self.children.pop(name, None)
        if child is not None:
            child.stop(sig, timeout, group=True)

    def kill(self, name: str) -> None:
        """SIGKILL to the whole process group: no goodbye, no warm shutdown."""
        self.stop(name, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in list(self.children):
            with contextlib.suppress(Exception):
                self.stop(name)

    def log(self, name: str, chars: int = 4000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def close(self) -> None:
        """Every process stopped, the Celery client and the engine closed."""
        if "engine" in self.__dict__:
            self.engine.dispose()
        self.stop_all()
        if "celery" in self.__dict__:
            self.celery.close()


@contextmanager
def _workdir(keep_logs: Path | None = None) -> Iterator[Path]:
    """A temporary directory; with ``keep_logs``, its logs are copied there at the end."""
    workdir = Path(tempfile.mkdtemp(prefix="slotsync-stack-"))
    try:
        yield workdir
    finally:
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log in workdir.glob("*.log"):
                shutil.copy(log, keep_logs / log.name)
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def stack(
    *,
    ehr_base_url: str,
    fhir_version: str,
    extra: dict[str, str] | None = None,
    api_port: int | None = None,
) -> Iterator[Stack]:
    """A migrated throwaway PostgreSQL database and a Redis database of the stack's own, on
    the shared servers; nothing started yet (the benchmarks start what they measure)."""
    with (
        throwaway_postgres(migrated=True) as db_url,
        throwaway_redis_db() as redis_url,
        _workdir() as workdir,
    ):
        values = {
            "SLOTSYNC_DATABASE_URL": db_url,
            "SLOTSYNC_REDIS_URL": redis_url,
            "SLOTSYNC_EHR_BASE_URL": ehr_base_url,
            "SLOTSYNC_EHR_FHIR_VERSION": fhir_version,
            **(extra or {}),
        }
        running = Stack(
            env=process_env(values),
            workdir=workdir,
            api_port=api_port or free_port(),
            log_level="WARNING",
        )
        try:
            yield running
        finally:
            running.close()


# -- the two sides of the comparison ----------------------------------------------------


class Slot(NamedTuple):
    schedule: str
    start: datetime
    end: datetime
    status: str


Slots = dict[str, Slot]


@dataclass(frozen=True)
class SlotDiff:
    """Slot ids the cache lacks, has in excess, or has with another field value."""

    missing: list[str]
    extra: list[str]
    changed: list[str]

    @property
    def total(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.changed)

    def __bool__(self) -> bool:
        return self.total > 0

    def describe(self, truth: Slots, cache: Slots, n: int = 5) -> str:
        changed = [f"{k}: cache {cache[k]} EHR {truth[k]}" for k in self.changed[:n]]
        return (
            f"{len(self.missing)} missing {self.missing[:n]}, {len(self.extra)} extra"
            f" {self.extra[:n]}, {len(self.changed)} changed {changed}"
        )


def diff_slots(truth: Slots, cache: Slots) -> SlotDiff:
    """Every slot compared field by field (id, schedule, start, end, status)."""
    return SlotDiff(
        missing=sorted(truth.keys() - cache.keys()),
        extra=sorted(cache.keys() - truth.keys()),
        changed=sorted(k for k in truth.keys() & cache.keys() if truth[k] != cache[k]),
    )


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def read_cache(db_url: str) -> Slots:
    """The cache's slot table, as stored (plain SQL: no product code in between)."""
    with (
        psycopg.connect(plain_dsn(db_url), connect_timeout=10) as conn,
        conn.cursor() as cur,
    ):
        cur.execute('SELECT id, schedule_id, start, "end", status FROM slots')
        return {
            r[0]: Slot(r[1], r[2].astimezone(UTC), r[3].astimezone(UTC), r[4])
            for r in cur.fetchall()
        }


# -- the pipeline -----------------------------------------------------------------------


@dataclass(kw_only=True)
class Pipeline(Stack):
    """A stack against a sandbox EHR, on one database and Redis (:func:`running_pipeline`)."""

    sandbox: SandboxProcess
    db_url: str
    redis_url: str
    horizon_days: int
    admin_key: str

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.admin_key}

    # -- the EHR ---------------------------------------------------------------

    def control(self, method: str, path: str, timeout: float = 60, **kw: Any) -> Any:
        response = httpx.request(method, f"{self.sandbox.control_url}{path}", timeout=timeout, **kw)
        response.raise_for_status()
        return msgspec.json.decode(response.content) if response.content else None

    def horizon(self) -> tuple[datetime, datetime]:
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=self.horizon_days)

    def truth(self) -> Slots:
        """The EHR's free slots of the horizon (its control API; never faulted)."""
        start, end = self.horizon()
        answer = self.control(
            "GET", "/truth", params={"start": str(start.date()), "end": str(end.date())}
        )
        return {
            s["id"]: Slot(s["schedule"], _instant(s["start"]), _instant(s["end"]), s["status"])
            for s in answer["slots"]
        }

    def ehr_requests(self, route: str) -> int:
        """How often the EHR served ``route`` (e.g. ``GET /fhir/Slot/$prefetch``)."""
        return int(self.control("GET", "/stats")["requests"].get(route, 0))

    def forget_subscriptions(self) -> None:
        """Delete every Subscription at the EHR (a fresh cache subscribes anew)."""
        for sub_id in self.control("GET", "/stats")["subscriptions"]:
            httpx.delete(f"{self.sandbox.base_url}/Subscription/{sub_id}", timeout=10)

    # -- the cache -------------------------------------------------------------

    def cache(self) -> Slots:
        return read_cache(self.db_url)

    def diff(self) -> tuple[SlotDiff, Slots, Slots]:
        truth = self.truth()
        cache = self.cache()
        return diff_slots(truth, cache), truth, cache


@contextmanager
def sandbox_ehr(
    *,
    size: int,
    page_size: int,
    horizon_days: int,
    heartbeat_seconds: int = 60,
    fhir_version: str | None = None,
    profile: str = "sandbox",
    extra_args: Sequence[str] = (),
) -> Iterator[SandboxProcess]:
    """``profile="plain-r4"``: a generic R4 server, ``_count`` capped at ``page_size``."""
    with start_sandbox(
        size=size,
        page_size=page_size,
        fhir_version=fhir_version,
        profile=profile,
        max_count=page_size if profile == "plain-r4" else None,
        callback_secret="not-the-webhook-secret",  # our Subscription names its own header
        extra_args=(
            "--horizon-days",
            str(horizon_days),
            "--heartbeat-seconds",
            str(heartbeat_seconds),
            *extra_args,
        ),
        ready_timeout=600,
    ) as sandbox:
        yield sandbox


@contextmanager
def running_pipeline(
    *,
    db_url: str,
    redis_url: str,
    settings: dict[str, str],
    sandbox: SandboxProcess,
    horizon_days: int,
    admin_key: str,
    workers: Sequence[str] = ("worker",),
    worker_concurrency: int = 2,
    worker_pool: str | None = None,
    start: bool = True,
    pipeline_class: type[Pipeline] = Pipeline,
    keep_logs: Path | None = None,
) -> Iterator[Pipeline]:
    """API, the named workers and beat on ``db_url``/``redis_url`` against ``sandbox``,
    with ``settings`` (``SLOTSYNC_*`` values); every process stopped afterwards.

    With ``start=False`` nothing is started (the caller starts what it needs). With
    ``keep_logs``, the processes' logs are copied into that directory at the end.
    """
    api_port = free_port()
    with _workdir(keep_logs) as workdir:
        values = {
            "SLOTSYNC_DATABASE_URL": db_url,
            "SLOTSYNC_REDIS_URL": redis_url,
            "SLOTSYNC_EHR_BASE_URL": sandbox.base_url,
            "SLOTSYNC_PUBLIC_BASE_URL": f"http://{LOOPBACK}:{api_port}",
            "SLOTSYNC_DATA_DIR": str(workdir),
            **settings,
        }
        p = pipeline_class(
            env=process_env(values),
            workdir=workdir,
            api_port=api_port,
            sandbox=sandbox,
            db_url=db_url,
            redis_url=redis_url,
            horizon_days=horizon_days,
            admin_key=admin_key,
        )
        try:
            if start:
                p.start_api()
                for name in workers:
                    p.start_worker(name, concurrency=worker_concurrency, pool=worker_pool)
                # as compose orders them: beat subscribes at start, and the EHR's handshake
                # must find the API listening
                p.start_beat()
            yield p
        finally:
            p.close()
