"""Private Redis and PostgreSQL servers that a test may kill and restart.

The shared servers of the machine must never be stopped, so reliability tests run
their own: a ``redis-server`` child process and a throwaway PostgreSQL cluster
(``initdb`` into a temporary directory, run as the ``postgres`` OS user when the
tests run as root), both on free loopback ports. Each keeps its port across
restarts, as a real server does, and is always stopped when its ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis

from tests.support import free_port

PG_BIN = Path(os.environ.get("SLOTSYNC_TEST_PG_BIN", "/usr/local/bin"))
REDIS_SERVER = os.environ.get("SLOTSYNC_TEST_REDIS_SERVER", "redis-server")


def _wait(check: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``check`` until it returns something truthy; errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready within {timeout}s")


class RedisServer:
    """``redis-server`` without persistence: a restart comes back empty, like a lost node."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        args += ["--dir", str(self.workdir)]
        with (self.workdir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        try:
            _wait(client.ping, 10, f"redis-server on port {self.port}")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no goodbye to connected clients, nothing saved."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


@contextmanager
def private_redis() -> Iterator[RedisServer]:
    workdir = Path(tempfile.mkdtemp(prefix="slotsync-redis-"))
    server = RedisServer(workdir)
    try:
        server.start()
        yield server
    finally:
        server.kill()
        shutil.rmtree(workdir, ignore_errors=True)


class PostgresCluster:
    """A PostgreSQL cluster of its own in a temporary directory (trust auth, loopback)."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.root = root
        self.data = root / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout)

    def init(self) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        _wait(self.accepts, 30, f"PostgreSQL on port {self.port}")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: running transactions are rolled back and every client disconnected."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def accepts(self) -> bool:
        dsn = self.url.replace("+psycopg", "")
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)


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
