"""Databases for the benchmarks, the fault suite and the tests.

- On the machine's shared servers: :func:`throwaway_postgres` (a new database, dropped
  afterwards) and :func:`throwaway_redis_db` (an empty Redis database number, flushed
  afterwards). Their addresses: ``SLOTSYNC_TEST_PG_DSN`` and ``SLOTSYNC_TEST_REDIS_URL``.
- Servers of our own on spare loopback ports (never the shared 5432/6379), which a
  fault scenario may kill and restart: :class:`RedisServer` (:func:`private_redis`)
  and :class:`PostgresCluster` (:func:`private_postgres`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis
from psycopg import sql

from app.cache.migrate import upgrade

from .processes import Child, free_port, spawn, wait_until

__all__ = [
    "PostgresCluster",
    "RedisServer",
    "empty_cache",
    "plain_dsn",
    "private_postgres",
    "private_redis",
    "throwaway_postgres",
    "throwaway_redis_db",
]

# Admin connection used only to create and drop throwaway databases.
PG_ADMIN_DSN = os.environ.get("SLOTSYNC_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SLOTSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379")
PG_BIN = Path(os.environ.get("SLOTSYNC_TEST_PG_BIN", "/usr/local/bin"))
REDIS_SERVER = os.environ.get("SLOTSYNC_TEST_REDIS_SERVER", "redis-server")
LOOPBACK = "127.0.0.1"


# -- on the shared servers ----------------------------------------------------------------


@contextmanager
def throwaway_postgres(*, migrated: bool = False) -> Iterator[str]:
    """A fresh PostgreSQL database (its SQLAlchemy URL), dropped afterwards; ``migrated``:
    with the cache's schema."""
    name = f"slotsync_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        url = f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
        if migrated:
            upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def throwaway_redis_db() -> Iterator[str]:
    """A Redis database number nobody uses right now (empty), flushed afterwards.

    Celery's queue keys cannot be prefixed, so whatever runs real workers needs a
    database of its own; an empty one is taken to be free.
    """
    numbers = list(range(1, 16))
    random.shuffle(numbers)
    for number in numbers:
        url = f"{REDIS_URL}/{number}"
        client = redis.Redis.from_url(url)
        # claim it atomically so that two sessions never pick the same one
        if client.dbsize() == 0 and client.set("slotsync-test-claim", uuid.uuid4().hex, nx=True):
            try:
                yield url
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    raise RuntimeError("no empty Redis database among 1..15")


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


# -- Redis of our own ---------------------------------------------------------------------


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
        self.child: Child | None = None

    def start(self) -> None:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", LOOPBACK]
        args += ["--save", "", "--daemonize", "no", "--dir", str(self.workdir)]
        if self.persistence == "aof":
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        log = self.workdir / "redis.log"
        self.child = spawn("redis", args, env=os.environ, log=log, cwd=self.workdir)
        client = redis.Redis(host=LOOPBACK, port=self.port, socket_connect_timeout=1)
        try:
            wait_until(client.ping, 10, f"redis-server on port {self.port}", context=self.log)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no goodbye to connected clients, nothing flushed."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: an orderly shutdown (with AOF, the file is flushed first)."""
        self._end(signal.SIGTERM)

    def _end(self, sig: int) -> None:
        if self.child is not None:
            self.child.stop(sig, timeout=20)
        self.child = None

    def wipe(self) -> None:
        """Forget every key on disk (only while stopped): the next start is empty."""
        if self.child is not None:
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


# -- PostgreSQL of our own ----------------------------------------------------------------


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
