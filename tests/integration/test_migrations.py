"""The Alembic migration creates exactly the schema the models describe, on both backends."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.cache.models import Base


def test_migrated_schema_matches_models(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_window_indexes_exist(engine):
    names = {ix["name"] for ix in inspect(engine).get_indexes("slots")}
    assert {"ix_slots_schedule_start", "ix_slots_start"} <= names
    actor_ix = {ix["name"] for ix in inspect(engine).get_indexes("schedule_actors")}
    assert "ix_schedule_actors_actor" in actor_ix
