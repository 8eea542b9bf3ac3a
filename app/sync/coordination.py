"""Coordination between workers: schedule locks and the coalescing of queued refreshes.

Two implementations of one small interface: Redis (production: several worker
processes and API replicas) and in-process (embedded mode, one process).

- ``hold(names)``: locks with expiry, so a schedule is never fetched by two
  workers at once and a crashed worker cannot block it for longer than the expiry.
  The holder extends the expiry while pages keep arriving.
- ``claim(key)`` / ``take(key)``: "a refresh of this (schedule, window) is
  queued". The webhook enqueues only when it wins the claim (``SET NX`` with a
  TTL); the refresh takes it as soon as it holds the schedule lock, *before*
  fetching. A notification arriving after that queues a new refresh, one arriving
  before it is covered by the fetch about to start: a burst of identical
  notifications costs one or two fetches, and no change is ever missed. The claim
  holds the time the latest of its notifications was heard (a stamp), so the
  refresh knows what it covers: if a fetch that started after that time has
  already written the window, there is nothing left to read. Concurrent
  coalescers may overwrite a stamp with one a few milliseconds older; the clock
  margin that the refresh allows for (see :mod:`app.sync.refresh`) absorbs that.
  ``release(key)`` drops a plain claim (polls, the reaper's turn).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Protocol

import redis
from redis.exceptions import LockError, LockNotOwnedError

from app.core.errors import SlotsyncError

log = logging.getLogger(__name__)


class ScheduleBusy(SlotsyncError):
    """Another worker holds a schedule lock for longer than we were willing to wait."""


class Holder(Protocol):
    def extend(self) -> None:
        """Push the expiry of every held lock back to its full TTL."""


# The stamp of a claim whose change was heard at an unknown time: nothing covers it.
UNKNOWN = float("inf")


class Coordinator(Protocol):
    def claim(self, key: str, ttl: float, stamp: float | None = None) -> bool:
        """Win ``key`` for ``ttl`` seconds; if it is held, record ``stamp`` on it instead
        (epoch seconds the change was heard, None for unknown) and return False."""

    def take(self, key: str) -> float | None:
        """Drop ``key``; its latest stamp, or None if it was not held or unknown."""

    def release(self, key: str) -> None: ...

    def hold(
        self, names: Sequence[str], *, ttl: float, wait: float
    ) -> AbstractContextManager[Holder]: ...


def lock_names(schedule_ids: Sequence[str] | None) -> list[str]:
    """The locks a chunk needs, in one global order (no deadlock between multi-locks)."""
    return sorted(f"schedule:{sid}" for sid in schedule_ids or ())


class _RedisHolder:
    def __init__(self, locks: list[redis.lock.Lock]) -> None:
        self._locks = locks
        self._last = time.monotonic()

    def extend(self) -> None:
        # at most once a second: pages can arrive far faster than that
        now = time.monotonic()
        if now - self._last < 1.0:
            return
        self._last = now
        for lock in self._locks:
            try:
                lock.reacquire()
            except (LockError, LockNotOwnedError):
                # taken over after expiry: finish anyway, the day marks keep the data right
                log.warning("lock %s expired while held", lock.name)


class RedisCoordinator:
    def __init__(self, client: redis.Redis, prefix: str = "slotsync:") -> None:
        self.redis = client
        self.prefix = prefix

    def claim(self, key: str, ttl: float, stamp: float | None = None) -> bool:
        value = repr(UNKNOWN if stamp is None else stamp)
        if self.redis.set(self.prefix + key, value, nx=True, px=int(ttl * 1000)):
            return True
        self.redis.set(self.prefix + key, value, xx=True, keepttl=True)
        return False

    def take(self, key: str) -> float | None:
        return _stamp(self.redis.getdel(self.prefix + key))

    def release(self, key: str) -> None:
        self.redis.delete(self.prefix + key)

    @contextmanager
    def hold(self, names: Sequence[str], *, ttl: float, wait: float) -> Iterator[Holder]:
        locks: list[redis.lock.Lock] = []
        deadline = time.monotonic() + wait
        try:
            for name in sorted(names):
                lock = self.redis.lock(
                    self.prefix + "lock:" + name, timeout=ttl, sleep=0.02, thread_local=False
                )
                remaining = max(0.0, deadline - time.monotonic())
                if not lock.acquire(blocking=True, blocking_timeout=remaining):
                    raise ScheduleBusy(f"{name} is locked by another worker")
                locks.append(lock)
            yield _RedisHolder(locks)
        finally:
            for lock in reversed(locks):
                # expired meanwhile: harmless, the day marks guard the data
                with suppress(LockError, LockNotOwnedError):
                    lock.release()


def _stamp(value: object) -> float | None:
    if not isinstance(value, bytes | str):
        return None
    try:
        stamp = float(value)
    except ValueError:
        return None
    return None if stamp == UNKNOWN else stamp


class _LocalHolder:
    def extend(self) -> None:
        return None  # in-process locks do not expire


class LocalCoordinator:
    """One process (embedded mode): threading locks and an expiring set of claims."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._claims: dict[str, tuple[float, float]] = {}  # key -> (expires, stamp)
        self._locks: dict[str, threading.Lock] = {}

    def claim(self, key: str, ttl: float, stamp: float | None = None) -> bool:
        now = time.monotonic()
        value = UNKNOWN if stamp is None else stamp
        with self._guard:
            held = self._claims.get(key)
            if held is not None and held[0] > now:
                self._claims[key] = (held[0], max(held[1], value))
                return False
            self._claims[key] = (now + ttl, value)
            return True

    def take(self, key: str) -> float | None:
        with self._guard:
            held = self._claims.pop(key, None)
        if held is None or held[0] <= time.monotonic() or held[1] == UNKNOWN:
            return None
        return held[1]

    def release(self, key: str) -> None:
        with self._guard:
            self._claims.pop(key, None)

    @contextmanager
    def hold(self, names: Sequence[str], *, ttl: float, wait: float) -> Iterator[Holder]:
        held: list[threading.Lock] = []
        deadline = time.monotonic() + wait
        try:
            for name in sorted(names):
                with self._guard:
                    lock = self._locks.setdefault(name, threading.Lock())
                if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    raise ScheduleBusy(f"{name} is locked by another task")
                held.append(lock)
            yield _LocalHolder()
        finally:
            for lock in reversed(held):
                lock.release()
