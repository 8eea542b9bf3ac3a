"""Run the sandbox EHR as a real child process (for tests, the demo and benchmarks).

A child process rather than an in-process server so that clients exercise real
sockets, timeouts and connection resets, and so that the sandbox's CPU work does
not share an event loop (or the GIL) with the code under test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from types import TracebackType

import httpx

_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class SandboxProcess:
    """A running ``python -m sandbox_ehr`` child; stop() it (or use ``with``)."""

    def __init__(self, proc: subprocess.Popen[bytes], host: str, port: int, log_path: Path) -> None:
        self.proc = proc
        self.host = host
        self.port = port
        self.log_path = log_path
        self.root_url = f"http://{host}:{port}"
        self.base_url = f"{self.root_url}/fhir"
        self.control_url = f"{self.root_url}/_sandbox"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; safe to call twice."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        with contextlib.suppress(OSError):
            self.log_path.unlink()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SandboxProcess(pid={self.pid}, base_url={self.base_url!r})"


def start_sandbox(
    *,
    port: int | None = None,
    fhir_version: str | None = None,
    profile: str = "sandbox",
    max_count: int | None = None,
    size: int = 5000,
    seed: int = 42,
    start_date: date | str | None = None,
    page_size: int = 500,
    hold_seconds: int | None = None,
    callback_secret: str | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 30.0,
    host: str = "127.0.0.1",
) -> SandboxProcess:
    """Start the sandbox on ``host:port`` (a free port if None) and wait until it answers.

    ``fhir_version`` defaults to stu3, or r4 for ``profile="plain-r4"`` (a generic R4
    server); ``max_count`` as the CLI's ``--max-count``.
    """
    port = port or free_port(host)
    args = [
        sys.executable,
        "-m",
        "sandbox_ehr",
        "--host",
        host,
        "--port",
        str(port),
        "--profile",
        profile,
        "--size",
        str(size),
        "--seed",
        str(seed),
        "--page-size",
        str(page_size),
    ]
    if fhir_version is not None:
        args += ["--fhir-version", fhir_version]
    if max_count is not None:
        args += ["--max-count", str(max_count)]
    if start_date is not None:
        args += ["--start-date", str(start_date)]
    if hold_seconds is not None:
        args += ["--hold-seconds", str(hold_seconds)]
    if callback_secret is not None:
        args += ["--callback-secret", callback_secret]
    args += list(extra_args)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    fd, log_name = tempfile.mkstemp(prefix="sandbox-ehr-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=_PROJECT_ROOT
        )
    sp = SandboxProcess(proc, host, port, Path(log_name))
    deadline = time.monotonic() + ready_timeout
    with httpx.Client(timeout=2.0) as client:
        while True:
            if not sp.alive():
                output = sp.log()
                sp.stop()
                raise RuntimeError(f"sandbox EHR exited with {proc.returncode}:\n{output[-4000:]}")
            try:
                if client.get(f"{sp.base_url}/metadata").status_code == 200:
                    return sp
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                output = sp.log()
                sp.stop()
                raise TimeoutError(
                    f"sandbox EHR not ready after {ready_timeout}s:\n{output[-4000:]}"
                )
            time.sleep(0.05)
