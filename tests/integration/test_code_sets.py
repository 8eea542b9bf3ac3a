"""Code sets: the distinct code combinations slots name by id (migration 0013). Each is
added once, ids never change, and writers adding the same new ones at the same time
(PostgreSQL: concurrent transactions) all end up with the same ids."""

from __future__ import annotations

import threading

from msgspec.structs import replace
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.cache.code_sets import code_set_ids, code_set_of
from app.cache.db import make_engine, transaction
from app.cache.models import CodeSetRow
from tests.factories import slot

OFFICE = slot(0)
TELEHEALTH = replace(slot(1), service_types=("v|telehealth",), appointment_types=("t|WALKIN",))
NO_CODES = replace(slot(2), service_types=(), specialties=(), appointment_types=())


def test_each_combination_is_added_once_and_keeps_its_id(engine: Engine) -> None:
    with transaction(engine) as session:
        first = code_set_ids(session, [OFFICE, slot(3), TELEHEALTH])
    assert set(first) == {code_set_of(OFFICE), code_set_of(TELEHEALTH)}
    assert len(set(first.values())) == 2
    with transaction(engine) as session:
        second = code_set_ids(session, [TELEHEALTH, NO_CODES])
    assert second[code_set_of(TELEHEALTH)] == first[code_set_of(TELEHEALTH)]
    assert second[code_set_of(NO_CODES)] not in first.values()
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(CodeSetRow)) == 3
        stored = session.get(CodeSetRow, second[code_set_of(NO_CODES)])
        assert stored is not None
        assert (stored.service_types, stored.specialties, stored.appointment_types) == ([], [], [])


def test_concurrent_writers_adding_the_same_new_sets_share_their_ids(pg_url: str) -> None:
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE code_sets RESTART IDENTITY")
    results: dict[str, dict[tuple[tuple[str, ...], ...], int]] = {}
    with transaction(engine) as session:
        # the first writer adds both and keeps its transaction open...
        results["first"] = dict(code_set_ids(session, [OFFICE, TELEHEALTH]))

        def second() -> None:
            with transaction(engine) as other:  # ...the second asks in the other order
                results["second"] = dict(code_set_ids(other, [TELEHEALTH, OFFICE]))

        worker = threading.Thread(target=second)
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive(), "the second writer waits for the first's new rows"
    worker.join(timeout=10)
    engine.dispose()
    assert not worker.is_alive()
    assert results["second"] == results["first"]
