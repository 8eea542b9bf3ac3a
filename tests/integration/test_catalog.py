"""The per-process catalog (schedules, actors, confirmations): read at most once per
TTL, and never a queue of requests waiting while one of them reads it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.availability.catalog import Catalog, CatalogCache, catalog_reader, read_catalog
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


def test_an_expired_catalog_is_read_again_behind_the_request(engine: Engine) -> None:
    """With a reader of its own, the request that finds the catalog expired is
    answered at once from the one held; the next catalog arrives from a thread, and
    a failed read keeps the held one for another TTL."""
    _add(engine, 1)
    clock = Clock()
    reading = threading.Event()
    release = threading.Event()
    fail = False
    reads = 0

    def read_fresh(held: Catalog | None) -> Catalog:
        nonlocal reads
        reads += 1
        reading.set()
        assert release.wait(10)
        if fail:
            raise OSError("the database is away")
        return catalog_reader(engine)(held)

    cache = CatalogCache(ttl=2.0, clock=clock, read_fresh=read_fresh)
    with Session(engine) as session:
        first = cache.get(session)  # the first read is the request's own
        assert set(first.schedules) == {"sch-1"} and reads == 0
        _add(engine, 2)
        clock.now += 2.1
        assert cache.get(session) is first  # expired: answered at once, read behind
        assert reading.wait(10)
        assert cache.get(session) is first and reads == 1  # one read at a time
        release.set()
        second = _wait_for_another(cache, session, first)
        assert set(second.schedules) == {"sch-1", "sch-2"}
        # a failed read: the held catalog stays, and is asked again only after the TTL
        fail = True
        clock.now += 2.1
        assert cache.get(session) is second
        _wait_until(lambda: not cache._lock.locked())
        assert cache.get(session) is second and reads == 2
        clock.now += 2.1
        assert cache.get(session) is second
        _wait_until(lambda: reads == 3)


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the timeout"
        time.sleep(0.01)


def _wait_for_another(cache: CatalogCache, session: Session, held: Catalog) -> Catalog:
    _wait_until(lambda: cache.get(session) is not held)
    return cache.get(session)


def test_an_unchanged_catalog_is_kept_as_far_as_its_digests_say(engine: Engine) -> None:
    """Read again with the held catalog: while no schedule or actor changed (on
    PostgreSQL, by the database's digests of them), the very same maps are kept (and
    what was derived from them), and so are the sync times and errors while no sync
    changed them; any change to a schedule, an actor, a sync time or an error is read
    anew, on both backends."""
    _add(engine, 1)
    _add(engine, 2)
    read = catalog_reader(engine)
    first = read(None)
    first.derived["kind"] = "worked out from the schedules"
    postgres = engine.dialect.name == "postgresql"
    same = read(first)  # nothing changed
    assert same == first
    assert (same.confirmations is first.confirmations) == postgres
    assert (same.schedules is first.schedules) == postgres
    later = NOW + timedelta(hours=1)
    with transaction(engine) as session:  # a sync confirms one, another fails for good
        repo.confirm_schedules(session, ["sch-1"], NOW, later, later)
        repo.record_schedule_error(session, ["sch-2"], "EHR said 500")
    second = read(same)
    assert second.confirmations["sch-1"] == later
    assert second.errors == {"sch-2": "EHR said 500"}
    kept = second.schedules is first.schedules and second.actors is first.actors
    assert kept == postgres
    assert (second.derived is first.derived) == postgres
    with transaction(engine) as session:  # an error alone, no sync time moved
        repo.record_schedule_error(session, ["sch-1"], "EHR said 404")
    errored = read(second)
    assert errored.errors == {"sch-1": "EHR said 404", "sch-2": "EHR said 500"}
    assert errored.confirmations == second.confirmations
    assert errored == read_catalog_whole(engine)
    second = errored

    with transaction(engine) as session:  # the EHR changed a schedule's service types
        repo.upsert_schedules(
            session, [Schedule("sch-2", ("Practitioner/pr-2",), service_types=("c|d",))], None
        )
    third = read(second)
    assert third.schedules is not second.schedules and "kind" not in third.derived
    assert third.schedules["sch-2"].service_types == ("c|d",)
    assert third.actors == second.actors

    with transaction(engine) as session:  # and an actor's name
        repo.upsert_actors(session, [Actor("Practitioner/pr-1", display="Dr One")], later)
    fourth = read(third)
    assert fourth.actors["Practitioner/pr-1"].display == "Dr One"
    assert fourth.schedules == third.schedules
    assert fourth == read_catalog_whole(engine)


def read_catalog_whole(engine: Engine) -> Catalog:
    with Session(engine) as session:
        return read_catalog(session)


def test_actors_alone_are_digested_too(engine: Engine) -> None:
    """No schedule cached (yet) must not make the digest blind to the actors."""
    with transaction(engine) as session:
        repo.upsert_actors(session, [Actor("Location/site-1", display="North")], NOW)
    read = catalog_reader(engine)
    first = read(None)
    with transaction(engine) as session:
        repo.upsert_actors(session, [Actor("Location/site-1", display="North Clinic")], NOW)
    assert read(first).actors["Location/site-1"].display == "North Clinic"
