"""The per-process catalog (schedules, actors, confirmations): read at most once per
TTL, and never a queue of requests waiting while one of them reads it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.availability.catalog import CatalogCache
from app.cache import repository as repo
from app.cache.db import transaction
from app.core.domain import Actor, Schedule
from tests.factories import T0

NOW = T0 - timedelta(days=1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _add(engine: Engine, n: int) -> None:
    with transaction(engine) as session:
        ref = f"Practitioner/pr-{n}"
        repo.upsert_actors(session, [Actor(ref, display=f"Dr {n}", codes=("x|y",))], NOW)
        repo.upsert_schedules(session, [Schedule(f"sch-{n}", (ref,), service_types=("a|b",))], NOW)


def test_read_once_per_ttl_and_held_while_another_request_reads(engine: Engine) -> None:
    _add(engine, 1)
    clock = Clock()
    cache = CatalogCache(ttl=2.0, clock=clock)
    with Session(engine) as session:
        first = cache.get(session)
        assert set(first.schedules) == {"sch-1"}
        assert first.schedules["sch-1"].service_types == ("a|b",)
        assert first.actors["Practitioner/pr-1"].codes == ("x|y",)
        assert set(first.confirmations) == {"sch-1"}
        _add(engine, 2)
        clock.now += 1.9
        assert cache.get(session) is first  # within the TTL: not read again
        clock.now += 0.2
        # another request is reading it: this one goes on with the catalog held
        cache._lock.acquire()
        try:
            assert cache.get(session) is first
        finally:
            cache._lock.release()
        second = cache.get(session)
    assert set(second.schedules) == {"sch-1", "sch-2"}
    assert "Practitioner/pr-2" in second.actors
