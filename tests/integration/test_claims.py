"""The slot-claim overlay on both backends: exclusive claims, expiry, hand-over, reconciliation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from app.cache import claims, slot_reads
from app.cache import repository as repo
from app.cache.db import make_engine, transaction
from app.cache.snapshot import plan_snapshot
from app.core.domain import Schedule
from tests.booking_support import claim_slots
from tests.factories import T0, slot

NOW = T0 - timedelta(days=1)
SLOTS = [slot(i) for i in range(4)]


def _fill(engine: Engine) -> Engine:
    with transaction(engine) as session:
        repo.upsert_schedules(session, [Schedule("sch-1", ("Practitioner/p1",))], NOW)
        repo.apply_snapshot(session, plan_snapshot({}, SLOTS), NOW)
    return engine


@pytest.fixture
def cache(engine: Engine) -> Engine:
    return _fill(engine)


@pytest.fixture
def pg_cache(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE slot_claims, slots, schedule_actors, schedules CASCADE")
    yield _fill(engine)
    engine.dispose()


def _claim(engine: Engine, slots, claim_id: str, *, kind: str = "pending", ttl: int = 60) -> None:
    claim_slots(engine, slots, claim_id, kind=kind, ttl=timedelta(seconds=ttl), now=NOW)


def _free_ids(engine: Engine, now=NOW) -> list[str]:
    with Session(engine) as session:
        return [s.id for s in slot_reads.free_slots(session, T0, T0 + timedelta(days=1), now=now)]


def test_a_claimed_slot_leaves_find_until_its_claim_expires(cache: Engine) -> None:
    _claim(cache, SLOTS[1:3], "c1", ttl=60)
    assert _free_ids(cache) == [SLOTS[0].id, SLOTS[3].id]
    assert _free_ids(cache, NOW + timedelta(seconds=61)) == [s.id for s in SLOTS]


def test_claims_are_all_or_nothing_and_exclusive(cache: Engine) -> None:
    _claim(cache, SLOTS[1:2], "first")
    with pytest.raises(claims.SlotsTaken):
        _claim(cache, [SLOTS[0], SLOTS[1], SLOTS[2]], "second")
    with Session(cache) as session:
        assert claims.claims_of(session, "second") == []
        assert [c.slot_id for c in claims.claims_of(session, "first")] == [SLOTS[1].id]


def test_an_expired_claim_is_replaced(cache: Engine) -> None:
    _claim(cache, SLOTS[:1], "old", ttl=-1)
    _claim(cache, SLOTS[:1], "new")
    with Session(cache) as session:
        [live] = claims.live_claims(session, [SLOTS[0].id], NOW)
    assert live.claim_id == "new"


def test_booking_a_hold_hands_its_claims_over_once(cache: Engine) -> None:
    _claim(cache, SLOTS[:2], "hold")
    with transaction(cache) as session:
        claims.confirm(session, "hold", appointment_id="appt-1", kind=claims.HELD,
                       expires_at=NOW + timedelta(minutes=5), now=NOW)  # fmt: skip
    with transaction(cache) as session:
        before = claims.take_over_hold(
            session, "appt-1", claim_id="book-1", expires_at=NOW + timedelta(minutes=1), now=NOW
        )
    assert {c.kind for c in before} == {"held"} and len(before) == 2
    with transaction(cache) as session:
        again = claims.take_over_hold(
            session, "appt-1", claim_id="book-2", expires_at=NOW + timedelta(minutes=1), now=NOW
        )
    assert again == []
    with transaction(cache) as session:
        claims.restore(session, before, "book-1")
    with Session(cache) as session:
        assert {(c.claim_id, c.kind) for c in claims.claims_of_appointment(session, "appt-1")} == {
            ("hold", "held")
        }


def _reconcile(engine: Engine, offered, fetched_at, schedule_ids=None) -> int:
    with transaction(engine) as session:
        return claims.reconcile_taken(
            session,
            schedule_ids=schedule_ids,
            start=T0 - timedelta(days=1),
            end=T0 + timedelta(days=30),
            offered=[s.id for s in offered],
            fetched_at=fetched_at,
        )


def test_reconcile_keeps_booked_claims_while_the_ehr_still_offers_the_slot(cache: Engine) -> None:
    """A generic EHR leaves a booked Slot free: that proves nothing about our booking."""
    _claim(cache, SLOTS[:1], "booked-long-ago")
    _claim(cache, SLOTS[1:2], "pending")
    _claim(cache, SLOTS[2:3], "booked-just-now")
    _claim(cache, SLOTS[3:4], "held")
    later = timedelta(minutes=10)
    with transaction(cache) as session:
        for claim_id, confirmed in (("booked-long-ago", NOW), ("booked-just-now", NOW + later)):
            claims.confirm(session, claim_id, appointment_id=claim_id, kind=claims.BOOKED,
                           expires_at=NOW + timedelta(hours=6), now=confirmed)  # fmt: skip
        claims.confirm(session, "held", appointment_id="held", kind=claims.HELD,
                       expires_at=NOW + timedelta(hours=1), now=NOW)  # fmt: skip
    fetched_at = NOW + timedelta(minutes=5)
    ids = [s.id for s in SLOTS]
    assert _reconcile(cache, SLOTS, fetched_at) == 0, "every slot offered free: all stay"
    assert _reconcile(cache, [], fetched_at, schedule_ids=["sch-other"]) == 0, "out of scope"

    # The EHR no longer offers any of them (busy, taken by an Appointment, or gone): only
    # the booking confirmed before the fetch began is caught up with; held claims end by
    # expiry, pending ones are in flight.
    assert _reconcile(cache, [], fetched_at) == 1
    with Session(cache) as session:
        left = {c.slot_id for c in claims.live_claims(session, ids, NOW)}
    assert left == {SLOTS[1].id, SLOTS[2].id, SLOTS[3].id}


def test_concurrent_claims_of_one_slot_have_one_winner(pg_cache: Engine) -> None:
    """Twelve sessions claim overlapping sets at once: PostgreSQL lets exactly one commit."""
    barrier = threading.Barrier(12)
    won: list[str] = []
    lost: list[str] = []

    def run(n: int) -> None:
        barrier.wait()
        try:
            _claim(pg_cache, [SLOTS[3], SLOTS[n % 3]], f"c{n}")
            won.append(f"c{n}")
        except claims.SlotsTaken:
            lost.append(f"c{n}")

    threads = [threading.Thread(target=run, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1 and len(lost) == 11
