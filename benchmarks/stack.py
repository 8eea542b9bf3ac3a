"""The whole system as real processes, for the fault suite and the end-to-end tests.

- :class:`RedisServer` and :class:`PostgresCluster`: servers of our own on spare
  loopback ports (never the machine's shared 5432/6379), so that a scenario may
  kill and restart them. Redis runs with AOF persistence (a restart keeps its
  data, as compose runs it) or none (a restart comes back empty, like a lost node).
- :class:`Pipeline`: the sandbox EHR, the API, Celery workers and beat as separate
  processes on a database and Redis the caller provides, plus the EHR's control API
  and the two sides of the comparison: the EHR's ground truth of free slots and the
  cache's slot table, read field by field.

Every process started here is stopped when its ``with`` block ends, also on Ctrl-C
or an exception; every wait is bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import httpx
import msgspec
import psycopg
import redis
from psycopg import sql

from app.cache.migrate import upgrade
from sandbox_ehr.process import SandboxProcess, free_port, start_sandbox

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path(os.environ.get("SLOTSYNC_TEST_PG_BIN", "/usr/local/bin"))
REDIS_SERVER = os.environ.get("SLOTSYNC_TEST_REDIS_SERVER", "redis-server")
LOOPBACK = "127.0.0.1"

__all__ = [
    "Pipeline",
    "PostgresCluster",
    "RedisServer",
    "Slot",
    "SlotDiff",
    "diff_slots",
    "free_port",
    "private_postgres",
    "private_redis",
    "running_pipeline",
    "wait_for_http",
    "wait_until",
]

T = TypeVar("T")


def wait_until(
    check: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.05,
    context: Callable[[], str] = lambda: "",
) -> T:
    """``check()``'s first truthy result; errors count as "not yet"; TimeoutError after
    ``timeout`` seconds (with ``context()`` appended to the message)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # not ready yet, whatever the reason
            last = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last!r})" if last else ""
            raise TimeoutError(f"{what} not within {timeout}s{detail}\n{context()}")
        time.sleep(interval)


def wait_for_http(url: str, timeout: float = 60.0) -> None:
    """Until ``url`` answers below 500; a loaded machine may take a minute to start a server."""

    def answers() -> bool:
        return httpx.get(url, timeout=2.0).status_code < 500

    wait_until(answers, timeout, f"{url} answering", interval=0.1)


# -- Redis ------------------------------------------------------------------------------


class RedisServer:
    """``redis-server`` of our own; it keeps its port across restarts, as a real server does.

    ``persistence="aof"``: append-only file, fsync every second (compose's setting); a
    restart after :meth:`stop` (SIGTERM, which flushes the file) comes back with every
    key. ``persistence="none"``: nothing is written; a restart comes back empty.
    """

    def __init__(self, workdir: Path, persistence: str = "none") -> None:
        if persistence not in ("aof", "none"):
            raise ValueError("persistence is 'aof' or 'none'")
        self.port = free_port()
        self.workdir = workdir
        self.persistence = persistence
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", LOOPBACK]
        args += ["--save", "", "--daemonize", "no", "--dir", str(self.workdir)]
        if self.persistence == "aof":
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        with (self.workdir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(host=LOOPBACK, port=self.port, socket_connect_timeout=1)
        try:
            wait_until(client.ping, 10, f"redis-server on port {self.port}")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no goodbye to connected clients, nothing flushed."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: an orderly shutdown (with AOF, the file is flushed first)."""
        self._end(signal.SIGTERM)

    def _end(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def wipe(self) -> None:
        """Forget every key on disk (only while stopped): the next start is empty."""
        if self.proc is not None:
            raise RuntimeError("wipe a stopped redis-server only")
        for entry in self.workdir.iterdir():
            if entry.name == "redis.log":
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def fresh(self, persistence: str | None = None) -> None:
        """Stopped, emptied and started again (optionally in another persistence mode)."""
        self.kill()
        self.wipe()
        if persistence is not None:
            self.persistence = persistence
        self.start()

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / "redis.log").read_text(errors="replace")[-4000:]
        return ""


@contextmanager
def private_redis(persistence: str = "none") -> Iterator[RedisServer]:
    workdir = Path(tempfile.mkdtemp(prefix="slotsync-redis-"))
    server = RedisServer(workdir, persistence)
    try:
        server.start()
        yield server
    finally:
        server.kill()
        shutil.rmtree(workdir, ignore_errors=True)


# -- PostgreSQL -------------------------------------------------------------------------


class PostgresCluster:
    """A PostgreSQL cluster of its own in a temporary directory (trust auth, loopback).

    Runs as the ``postgres`` OS user when we are root (PostgreSQL refuses root).
    """

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.root = root
        self.data = root / "data"
        self.url = self.url_of("postgres")

    def url_of(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{LOOPBACK}:{self.port}/{database}"

    def dsn_of(self, database: str) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout)

    def init(self) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses={LOOPBACK} -c fsync=off"
            " -c max_connections=200"
        )
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        wait_until(self.accepts, 30, f"PostgreSQL on port {self.port}")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: running transactions are rolled back and every client disconnected."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def accepts(self) -> bool:
        with psycopg.connect(self.dsn_of("postgres"), connect_timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    def create_database(self, name: str) -> str:
        """A new, migrated database in this cluster; its SQLAlchemy URL."""
        with psycopg.connect(self.dsn_of("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = self.url_of(name)
        upgrade(url)
        return url


@contextmanager
def private_postgres() -> Iterator[PostgresCluster]:
    root = Path(tempfile.mkdtemp(prefix="slotsync-pg-"))
    cluster = PostgresCluster(root)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def plain_dsn(url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as a libpq DSN."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def empty_cache(db_url: str) -> None:
    """Every table of the cache emptied (the schema's own version table kept)."""
    with psycopg.connect(plain_dsn(db_url), autocommit=True, connect_timeout=10) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'alembic_version'"
            )
        ]
        if names:
            tables = sql.SQL(", ").join(sql.Identifier(n) for n in names)
            conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(tables))


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


@dataclass
class Pipeline:
    """Sandbox EHR, API, workers and beat on one database and Redis (:func:`running_pipeline`)."""

    env: dict[str, str]
    sandbox: SandboxProcess
    api_port: int
    db_url: str
    redis_url: str
    workdir: Path
    horizon_days: int
    admin_key: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.api_port}"

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.admin_key}

    # -- processes ---------------------------------------------------------------

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        """``slotsync <args>`` as process ``name`` (its log appended to ``<name>.log``)."""
        if self.alive(name):
            raise RuntimeError(f"{name} is already running")
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        with log.open("ab") as out:  # a restarted process keeps its predecessor's log
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "--log-level", "INFO", *args],
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends its children too
                cwd=ROOT,
            )

    def start_api(self, *, workers: int = 1, wait: bool = True) -> None:
        port = str(self.api_port)
        self.start("api", "serve", "--host", LOOPBACK, "--port", port, "--workers", str(workers))
        if wait:
            wait_for_http(f"{self.api_url}/healthz", timeout=120)

    def start_worker(
        self,
        name: str = "worker",
        *,
        concurrency: int = 2,
        pool: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        args = ["worker", "--concurrency", str(concurrency)]
        if pool is not None:
            args += ["--pool", pool]
        # a node name of its own, so that several workers on one host tell apart
        args += ["--", f"--hostname={name}@%h"]
        self.start(name, *args, env=env)

    def start_beat(self) -> None:
        # a new schedule file each time: a fresh beat, with nothing remembered
        schedule = self.workdir / f"beat-schedule-{time.monotonic_ns()}"
        self.start("beat", "beat", "--schedule-file", str(schedule))

    def alive(self, name: str) -> bool:
        proc = self.processes.get(name)
        return proc is not None and proc.poll() is None

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Signal ``name``'s process group; SIGKILL if it has not ended within ``timeout``."""
        proc = self.processes.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        # what the group left behind (e.g. a prefork child) goes too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def kill(self, name: str) -> None:
        """SIGKILL to the whole process group: no goodbye, no warm shutdown."""
        self.stop(name, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in list(self.processes):
            with contextlib.suppress(Exception):
                self.stop(name)

    def log(self, name: str, chars: int = 4000) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace")[-chars:] if path and path.exists() else ""

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


def product_env(
    *,
    db_url: str,
    redis_url: str,
    ehr_base_url: str,
    public_base_url: str,
    data_dir: Path,
    settings: dict[str, str],
) -> dict[str, str]:
    """The environment of every slotsync process: ours, none of the caller's SLOTSYNC_*."""
    values = {
        "SLOTSYNC_DATABASE_URL": db_url,
        "SLOTSYNC_REDIS_URL": redis_url,
        "SLOTSYNC_EHR_BASE_URL": ehr_base_url,
        "SLOTSYNC_PUBLIC_BASE_URL": public_base_url,
        "SLOTSYNC_DATA_DIR": str(data_dir),
        **settings,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTSYNC_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(values)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


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
    workdir = Path(tempfile.mkdtemp(prefix="slotsync-stack-"))
    env = product_env(
        db_url=db_url,
        redis_url=redis_url,
        ehr_base_url=sandbox.base_url,
        public_base_url=f"http://{LOOPBACK}:{api_port}",
        data_dir=workdir,
        settings=settings,
    )
    p = pipeline_class(
        env=env,
        sandbox=sandbox,
        api_port=api_port,
        db_url=db_url,
        redis_url=redis_url,
        workdir=workdir,
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
        p.stop_all()
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log in workdir.glob("*.log"):
                shutil.copy(log, keep_logs / log.name)
        shutil.rmtree(workdir, ignore_errors=True)
