"""Child processes for the benchmarks, the fault suite and the tests: start one with its
output in a log file, wait until it answers, stop it (its children too), read its log.

- :func:`spawn` starts a :class:`Child`; :func:`slotsync` is the command line of a
  slotsync process and :func:`process_env` its environment (none of the caller's
  ``SLOTSYNC_*``); :func:`run_slotsync` runs a command to its end.
- :func:`wait_until` is the one bounded wait (every other wait is built on it);
  :func:`wait_for_http` waits for a server, and :meth:`Child.wait_for_http` gives up
  early, with the log's tail, when the process died.
- :class:`MemorySampler`: the peak memory of a process tree.

The sandbox EHR has its own launcher (:mod:`sandbox_ehr.process`, which the demo uses
too); its :func:`~sandbox_ehr.process.free_port` is the one free port finder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, TypeVar

import httpx
import psutil

from sandbox_ehr.process import free_port

__all__ = [
    "ROOT",
    "Child",
    "MemorySampler",
    "Sampling",
    "free_port",
    "process_env",
    "run_slotsync",
    "slotsync",
    "spawn",
    "wait_for_http",
    "wait_until",
]

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str = "condition",
    *,
    interval: float = 0.05,
    context: Callable[[], str] = lambda: "",
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
) -> T:
    """``check()``'s first truthy result, polled every ``interval`` seconds.

    An exception of a ``retry_on`` type counts as "not yet" (pass ``retry_on=()`` to
    let every exception through at once). After ``timeout`` seconds: TimeoutError,
    naming ``what``, the last error and ``context()`` (e.g. a process's log).
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except retry_on as exc:  # not ready yet, whatever the reason
            last = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last!r})" if last else ""
            raise TimeoutError(f"{what} not within {timeout}s{detail}\n{context()}")
        time.sleep(interval)


def wait_for_http(
    url: str, timeout: float = 60.0, headers: Mapping[str, str] | None = None
) -> None:
    """Until ``url`` answers below 500; a loaded machine may take a minute to start a server."""

    def answers() -> bool:
        return httpx.get(url, headers=headers, timeout=2.0).status_code < 500

    wait_until(answers, timeout, f"{url} answering", interval=0.1)


def process_env(values: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without its ``SLOTSYNC_*`` settings and its Prometheus
    directory, plus ``values``, with the repository on ``PYTHONPATH``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTSYNC_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(values or {})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def slotsync(*args: str, log_level: str | None = None) -> list[str]:
    """The command line of ``slotsync <args>`` (the CLI's default log level if None)."""
    level = ["--log-level", log_level] if log_level is not None else []
    return [sys.executable, "-m", "app.cli", *level, *args]


def run_slotsync(
    *args: str,
    env: Mapping[str, str],
    timeout: float = 180,
    check: bool = False,
    log_level: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``slotsync <args>`` run to its end, its output captured as text."""
    return subprocess.run(
        slotsync(*args, log_level=log_level),
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


@dataclass
class Child:
    """A child process in a process group of its own, its output in ``log``; ``url``: where
    a server answers."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0, *, group: bool = False) -> int:
        """``sig`` to the process (``group``: to its whole group), SIGKILL to the group
        after ``timeout`` seconds; whatever the group left behind goes too. Its exit
        status; safe to call twice."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(self.proc.pid, sig)
                else:
                    self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait(timeout=30)
        self._kill_group()  # e.g. a prefork child its parent did not take along
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL to the whole group: no goodbye, no warm shutdown."""
        self.stop(signal.SIGKILL, group=True)

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def output(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")
        return ""

    def tail(self, chars: int = 4000) -> str:
        return self.output()[-chars:]

    def wait_for_http(
        self, url: str, timeout: float = 60.0, headers: Mapping[str, str] | None = None
    ) -> None:
        """Until ``url`` answers below 500; at once, with the log, if the process ended."""

        def answers() -> bool:
            if not self.alive():
                raise ChildExited(f"{self.name} exited with {self.proc.returncode}")
            return httpx.get(url, headers=headers, timeout=2.0).status_code < 500

        try:
            wait_until(
                answers,
                timeout,
                f"{self.name} answering at {url}",
                interval=0.1,
                context=self.tail,
                retry_on=httpx.HTTPError,
            )
        except ChildExited as exc:
            raise ChildExited(f"{exc}:\n{self.tail()}") from None


class ChildExited(RuntimeError):
    """A child process ended while we waited for it."""


def spawn(
    name: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Path | None = None,
    cwd: Path = ROOT,
) -> Child:
    """``args`` as a process group of its own, stdout and stderr appended to ``log`` (a
    new temporary file if None): a restarted process keeps its predecessor's log."""
    if log is None:
        fd, log_name = tempfile.mkstemp(prefix=f"slotsync-{name}-", suffix=".log")
        os.close(fd)
        log = Path(log_name)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(args),
            env=dict(env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop() ends its children too
        )
    return Child(name=name, proc=proc, log=log)


class Sampling:
    """The skeleton of every sampler here: ``_sample`` once on entry, every
    ``interval`` seconds in a thread while entered, and once more on exit (so that a
    short run still has a first and a last sample)."""

    interval: float
    _stop: threading.Event
    _thread: threading.Thread | None

    def _sample(self) -> None:
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> Self:
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()


@dataclass
class MemorySampler(Sampling):
    """Peak memory of a process and all its descendants, sampled in a thread."""

    pid: int
    interval: float = 0.2
    peak_rss_total: int = 0  # sum of RSS over the tree (counts shared pages twice)
    peak_rss_process: int = 0  # the largest single process
    peak_pss_total: int = 0  # proportional set size: shared pages split fairly
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        rss = pss = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                info = p.memory_full_info()
                rss += info.rss
                pss += getattr(info, "pss", info.rss)
                self.peak_rss_process = max(self.peak_rss_process, info.rss)
        self.peak_rss_total = max(self.peak_rss_total, rss)
        self.peak_pss_total = max(self.peak_pss_total, pss)

    def as_json(self) -> dict[str, float]:
        mb = 1024 * 1024
        return {
            "peak_rss_total_mb": round(self.peak_rss_total / mb, 1),
            "peak_rss_largest_process_mb": round(self.peak_rss_process / mb, 1),
            "peak_pss_total_mb": round(self.peak_pss_total / mb, 1),
        }
