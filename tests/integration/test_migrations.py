"""The Alembic migration creates exactly the schema the models describe, on both backends."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import JSON, Boolean, String, column, insert, inspect, select, table, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app.cache import repository as repo
from app.cache.db import make_engine
from app.cache.migrate import downgrade, upgrade
from app.cache.models import Base, UTCDateTime
from benchmarks.databases import throwaway_postgres


def test_migrated_schema_matches_models(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_window_indexes_exist(engine):
    names = {ix["name"] for ix in inspect(engine).get_indexes("slots")}
    assert {"ix_slots_schedule_start", "ix_slots_start"} <= names
    actor_ix = {ix["name"] for ix in inspect(engine).get_indexes("schedule_actors")}
    assert "ix_schedule_actors_actor" in actor_ix


CODES = JSON().with_variant(JSONB(), "postgresql")
# the slots table as migration 0012 left it (the columns the test fills)
SLOTS_0012 = table(
    "slots",
    column("id", String),
    column("schedule_id", String),
    column("start", UTCDateTime()),
    column("end", UTCDateTime()),
    column("status", String),
    column("service_types", CODES),
    column("specialties", CODES),
    column("appointment_types", CODES),
    column("overbooked", Boolean),
    column("last_confirmed_at", UTCDateTime()),
)
# (slot id, service types, specialties, appointment types): two slots share a combination
CODES_0012 = [
    ("sl-1", ["v|office-visit"], ["s|394814009"], []),
    ("sl-2", ["v|office-visit"], ["s|394814009"], []),
    ("sl-3", ["v|office-visit", "v|telehealth"], [], ["t|ROUTINE"]),
    ("sl-4", [], [], []),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def cache_at_0012(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An unmigrated database (its own), migrated to 0012 only."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cache.sqlite3'}"
        upgrade(url, "0012")
        yield url
        return
    with throwaway_postgres() as url:
        upgrade(url, "0012")
        yield url


def test_code_sets_migration_keeps_every_slots_codes_both_ways(cache_at_0012: str) -> None:
    url = cache_at_0012
    engine = make_engine(url)
    start = datetime(2026, 12, 7, 9, tzinfo=UTC)
    with engine.begin() as conn:
        for i, (sid, st, sp, at) in enumerate(CODES_0012):
            at_time = start + timedelta(minutes=30 * i)
            values = {"id": sid, "schedule_id": "sch-1", "status": "free", "overbooked": False,
                      "start": at_time, "end": at_time + timedelta(minutes=30),
                      "last_confirmed_at": at_time,
                      "service_types": st, "specialties": sp, "appointment_types": at}  # fmt: skip
            conn.execute(insert(SLOTS_0012).values(**values))
    upgrade(url)
    with Session(engine) as session:
        cached = repo.cached_slots(session, None, start, start + timedelta(days=1))
        code_sets = session.execute(text("SELECT count(*) FROM code_sets")).scalar()
    assert {
        sid: (s.service_types, s.specialties, s.appointment_types) for sid, s in cached.items()
    } == {sid: (tuple(st), tuple(sp), tuple(at)) for sid, st, sp, at in CODES_0012}
    assert code_sets == 3  # one per distinct combination
    downgrade(url, "0012")
    with engine.connect() as conn:
        columns = (SLOTS_0012.c.service_types, SLOTS_0012.c.specialties,
                   SLOTS_0012.c.appointment_types)  # fmt: skip
        rows = conn.execute(select(SLOTS_0012.c.id, *columns)).all()
    engine.dispose()
    assert {r[0]: tuple(r[1:]) for r in rows} == {
        sid: (st, sp, at) for sid, st, sp, at in CODES_0012
    }
