"""Schedules and actors held in process for a moment: every $find needs all of them.

They are few (thousands at most) and change only when a sync writes, so reading
them once per ``ttl`` seconds instead of once per request keeps $find cheap. A
stale read is harmless: composition only uses them to label and group slots,
the slots themselves are always current (:mod:`app.availability.slot_index`), and a
confirmation time read up to ``ttl`` ago only makes ``meta.lastUpdated`` older
than it could be, never newer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.cache import repository as repo
from app.core.domain import Actor, Schedule


@dataclass(frozen=True, slots=True)
class Catalog:
    schedules: dict[str, Schedule]
    actors: dict[str, Actor]
    # schedule id -> when a sync last confirmed its slots
    confirmations: dict[str, datetime]
    # schedule id -> why its last sync failed for good (until a sync of it succeeds)
    errors: dict[str, str] = field(default_factory=dict)
    # What callers work out from this catalog alone, kept as long as it is current
    # (e.g. which schedules a kind of request reads); callers key and bound it.
    derived: dict[Hashable, Any] = field(default_factory=dict, compare=False, repr=False)


def read_catalog(session: Session) -> Catalog:
    """The catalog as the database has it now (no caching)."""
    return Catalog(
        repo.schedules_by_id(session),
        repo.actors_by_ref(session),
        repo.schedule_confirmations(session),
        repo.schedule_errors(session),
    )


class CatalogCache:
    def __init__(self, ttl: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._value: Catalog | None = None
        self._loaded_at = 0.0

    def get(self, session: Session) -> Catalog:
        """The catalog, read again when older than the TTL. While one request reads
        it, the others go on with the one held (a read takes tens of milliseconds
        with thousands of schedules: no convoy of requests waiting for it)."""
        value = self._value
        if value is not None and self._clock() - self._loaded_at < self._ttl:
            return value
        if value is not None and not self._lock.acquire(blocking=False):
            return value  # another request is reading it
        if value is None:
            self._lock.acquire()
        try:
            if self._value is not None and self._clock() - self._loaded_at < self._ttl:
                return self._value
            self._value = read_catalog(session)
            self._loaded_at = self._clock()
            return self._value
        finally:
            self._lock.release()

    def invalidate(self) -> None:
        self._value = None
