"""Schedules and actors held in process for a moment: every $find needs all of them.

They are few (thousands at most) and change only when a sync writes, so reading
them once per ``ttl`` seconds instead of once per request keeps $find cheap. A
stale read is harmless: composition only uses them to label and group slots,
the slots themselves are always current (:mod:`app.availability.slot_index`), and a
confirmation time read up to ``ttl`` ago only makes ``meta.lastUpdated`` older
than it could be, never newer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.cache import repository as repo
from app.cache.db import read_session
from app.core.domain import Actor, Schedule

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Catalog:
    schedules: dict[str, Schedule]
    actors: dict[str, Actor]
    # schedule id -> when a sync last confirmed its slots
    confirmations: dict[str, datetime]
    # schedule id -> why its last sync failed for good (until a sync of it succeeds)
    errors: dict[str, str] = field(default_factory=dict)
    # What callers work out from the schedules alone, kept as long as they are the
    # same (e.g. which schedules a kind of request reads); callers key and bound it.
    derived: dict[Hashable, Any] = field(default_factory=dict, compare=False, repr=False)
    # repository.catalog_digests of what it was read from (None: not known)
    digests: repo.CatalogDigests | None = field(default=None, compare=False, repr=False)


def read_catalog(session: Session, held: Catalog | None = None) -> Catalog:
    """The catalog as the database has it now.

    With ``held`` (the catalog read before), what the database's digests say is
    unchanged is kept rather than read again: its very schedule and actor maps (the
    whole read took ~20 ms of Python at 600 schedules, every ``ttl``, in each API
    process, beside the requests), which also keeps what was derived from them and the
    offer memo's state (keyed by them) without comparing them item by item; and its
    sync times and errors (~3 ms of Python at 600 schedules, while no sync runs)."""
    digests = repo.catalog_digests(session)
    known = held.digests if held is not None else None
    if held is None or known is None or digests is None:
        return _read_whole(session, digests)
    confirmations, errors = (
        (held.confirmations, held.errors)
        if digests.states == known.states
        else repo.schedule_states(session)
    )
    if digests.catalog != known.catalog:
        return _read_whole(session, digests, confirmations, errors)
    return Catalog(held.schedules, held.actors, confirmations, errors, held.derived, digests)


def _read_whole(
    session: Session,
    digests: repo.CatalogDigests | None,
    confirmations: dict[str, datetime] | None = None,
    errors: dict[str, str] | None = None,
) -> Catalog:
    if confirmations is None or errors is None:
        confirmations, errors = repo.schedule_states(session)
    return Catalog(
        repo.schedules_by_id(session),
        repo.actors_by_ref(session),
        confirmations,
        errors,
        digests=digests,
    )


def catalog_reader(engine: Engine) -> Callable[[Catalog | None], Catalog]:
    """:func:`read_catalog` on a session of its own (for a thread), as ``$find`` reads."""

    def read(held: Catalog | None) -> Catalog:
        with read_session(engine, autocommit=True) as session:
            return read_catalog(session, held)

    return read


class CatalogCache:
    """The catalog of one API process, read again once it is ``ttl`` seconds old.

    With ``read_fresh`` (a read on a session of its own), the request that finds it
    expired is answered from the one held while a thread reads the next: the read
    takes ~20 ms at 600 schedules, and paid on the request path every ``ttl`` it made
    one of every few hundred ``$find`` requests (at 100 a second) 20 ms slower; in a
    thread it still takes a core's share for as long. The catalog is
    then at most ``ttl`` plus one read old, which the module doc says is harmless.
    Without ``read_fresh`` (and for the first read), the request reads it itself."""

    def __init__(
        self,
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        read_fresh: Callable[[Catalog | None], Catalog] | None = None,
    ):
        self._ttl = ttl
        self._clock = clock
        self._read_fresh = read_fresh
        self._lock = threading.Lock()  # held by whoever is reading the catalog
        self._value: Catalog | None = None
        self._loaded_at = 0.0

    def get(self, session: Session) -> Catalog:
        """The catalog, read again when older than the TTL. While one request (or the
        thread) reads it, the others go on with the one held (no convoy of requests
        waiting for a read)."""
        value = self._value
        if value is not None and self._clock() - self._loaded_at < self._ttl:
            return value
        if value is not None and not self._lock.acquire(blocking=False):
            return value  # another request is reading it
        if value is None:
            self._lock.acquire()
        elif self._read_fresh is not None:
            self._refresh_behind(self._read_fresh)  # it releases the lock
            return value
        try:
            if self._value is not None and self._clock() - self._loaded_at < self._ttl:
                return self._value
            self._value = read_catalog(session, self._value)
            self._loaded_at = self._clock()
            return self._value
        finally:
            self._lock.release()

    def _refresh_behind(self, read_fresh: Callable[[Catalog | None], Catalog]) -> None:
        """Read the next catalog in a thread; the caller holds the lock, the thread
        releases it. A failed read keeps the held one for another TTL (no retry per
        request while the database is away)."""

        def run() -> None:
            try:
                fresh = read_fresh(self._value)
            except Exception:
                log.warning("catalog refresh failed; the held one is kept", exc_info=True)
                self._loaded_at = self._clock()
            else:
                self._value, self._loaded_at = fresh, self._clock()
            finally:
                self._lock.release()

        try:
            threading.Thread(target=run, name="catalog-refresh", daemon=True).start()
        except BaseException:
            self._lock.release()
            raise

    def invalidate(self) -> None:
        self._value = None
