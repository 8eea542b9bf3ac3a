"""Dependency checks shared by ``/readyz`` and ``slotsync status``: quick, never raising.

Details never carry exception messages (a DSN, a host name), only what an operator
needs to see which dependency is down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from app.cache.db import ping, read_session
from app.cache.sync_health import last_complete_load

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str


ReadinessCheck = Callable[[], Check]


def guarded(name: str, check: ReadinessCheck) -> Check:
    """Run ``check``; an exception becomes a failed check naming only the exception type."""
    try:
        return check()
    except Exception as exc:
        log.warning("check %s failed: %s", name, exc.__class__.__name__)
        return Check(False, f"failed: {exc.__class__.__name__}")


def database_check(engine: Callable[[], Engine]) -> ReadinessCheck:
    def check() -> Check:
        ping(engine())
        return Check(True, "reachable")

    return check


def broker_check(redis_url: str | None) -> ReadinessCheck:
    client: Any = None

    def check() -> Check:
        nonlocal client
        if not redis_url:
            return Check(True, "embedded mode: no broker")
        if client is None:
            import redis

            client = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        client.ping()
        return Check(True, "reachable")

    return check


def full_load_age_check(
    last_ok: datetime | None, limit_hours: float, now: datetime | None = None
) -> Check:
    if last_ok is None:
        return Check(False, "no successful full load yet")
    age_hours = ((now or datetime.now(UTC)) - last_ok).total_seconds() / 3600
    detail = f"last successful full load {age_hours:.1f} h ago"
    if limit_hours and age_hours > limit_hours:
        return Check(False, f"{detail} (limit {limit_hours:g} h)")
    return Check(True, detail)


def full_load_check(engine: Callable[[], Engine], limit_hours: float) -> ReadinessCheck:
    def check() -> Check:
        with read_session(engine()) as session:
            last = last_complete_load(session)
        return full_load_age_check(last, limit_hours)

    return check
