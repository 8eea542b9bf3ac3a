"""An app wired with real auth: API keys of each kind and JWTs verified against a JWKS."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.api.auth import install_auth
from app.api.main import create_app
from app.cache import repository as repo
from app.cache import runs
from app.cache.db import transaction
from app.cache.migrate import upgrade
from app.cache.snapshot import SnapshotPlan
from app.core.domain import Actor, Schedule
from app.runtime import engine_for
from app.settings import Settings
from tests.factories import OPEN_RULES, T0_DAY, T0_NEXT_DAY, slot
from tests.tokens import AUDIENCE, ISSUER, JWKS_URL, JwksServer, SigningKey

READER = "reader-key-0123456789abcdef"
WRITER = "writer-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdefgh"
METRICS = "metrics-key-0123456789abcdef"
EVERYTHING = "all-key-0123456789abcdefghij"
WEBHOOK_SECRET = "webhook-secret-0123456789abcdef"

KEYS = {
    READER: ["system/Appointment.read"],
    WRITER: ["system/Appointment.write"],
    ADMIN: ["slotsync/admin"],
    METRICS: ["slotsync/metrics"],
    EVERYTHING: ["system/*.*", "slotsync/admin", "slotsync/metrics"],
}


def api_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "api_keys": KEYS,
        "jwt_jwks_url": JWKS_URL,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "webhook_secret": WEBHOOK_SECRET,
        "readiness_max_load_age_hours": 48,
        "rules_path": OPEN_RULES,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def build_app(settings: Settings, jwks: JwksServer | None = None) -> FastAPI:
    upgrade(settings.effective_database_url)
    app = create_app(settings)
    if jwks is not None:
        install_auth(app, settings, jwks_transport=jwks.transport)
    return app


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey(kid="key-1")


@pytest.fixture
def jwks(signing_key: SigningKey) -> JwksServer:
    return JwksServer(signing_key)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return api_settings(tmp_path)


@pytest.fixture
def app(settings: Settings, jwks: JwksServer) -> FastAPI:
    return build_app(settings, jwks)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def db(settings: Settings) -> Engine:
    """The app's cache database, migrated."""
    upgrade(settings.effective_database_url)
    return engine_for(settings.effective_database_url)


FIND = f"/fhir/Appointment/$find?start={T0_DAY}&end={T0_NEXT_DAY}"


def seed(engine: Engine, *, confirmed_at: datetime, schedules: int = 2, per: int = 3) -> None:
    """Schedules ``sch-0..`` with free slots on ``T0``, confirmed at ``confirmed_at``."""
    with transaction(engine) as session:
        actors = [Actor(ref=f"Practitioner/pr-{i}", display=f"Dr {i}") for i in range(schedules)]
        repo.upsert_actors(session, actors, confirmed_at)
        repo.upsert_schedules(
            session,
            [Schedule(id=f"sch-{i}", actor_refs=(actors[i].ref,)) for i in range(schedules)],
            confirmed_at,
        )
        slots = tuple(slot(n, schedule=f"sch-{i}") for i in range(schedules) for n in range(per))
        repo.apply_snapshot(
            session, SnapshotPlan(upserts=slots, deletes=(), unchanged=0), confirmed_at
        )


def record_full_load(engine: Engine, *, finished_at: datetime, status: str = "ok") -> None:
    with transaction(engine) as session:
        run_id = runs.start_run(
            session,
            kind="initial-load",
            scope="*",
            window=None,
            started_at=finished_at - timedelta(minutes=5),
        )
        runs.finish_run(
            session,
            run_id,
            status=status,
            finished_at=finished_at,
            error=None if status == "ok" else "EhrTimeout: slow",
        )


def now() -> datetime:
    return datetime.now(UTC)


def slot_count(engine: Engine) -> int:
    with Session(engine) as session:
        return repo.count_slots(session)
