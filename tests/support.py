"""Helpers shared by the tests and the benchmarks: throwaway databases, free ports,
waiting for servers. (The benchmarks run from the repository root, as the tests do.)"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg
from psycopg import sql

from sandbox_ehr.process import free_port

__all__ = ["free_port", "throwaway_postgres", "throwaway_redis_db", "wait_for_http"]

# Admin connection used only to create and drop throwaway databases.
PG_ADMIN_DSN = os.environ.get("SLOTSYNC_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A fresh PostgreSQL database for one test session, dropped afterwards."""
    name = f"slotsync_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def wait_for_http(url: str, timeout: float = 60.0) -> None:
    """Until ``url`` answers below 500; a loaded machine may take a minute to start a server."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


REDIS_URL = os.environ.get("SLOTSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379")


@contextmanager
def throwaway_redis_db() -> Iterator[str]:
    """A Redis database number nobody uses right now (empty), flushed afterwards.

    Celery's queue keys cannot be prefixed, so tests that run real workers need a
    database of their own; an empty one is taken to be free.
    """
    import random

    import redis

    numbers = list(range(1, 16))
    random.shuffle(numbers)
    for number in numbers:
        url = f"{REDIS_URL}/{number}"
        client = redis.Redis.from_url(url)
        # claim it atomically so that two test sessions never pick the same one
        if client.dbsize() == 0 and client.set("slotsync-test-claim", uuid.uuid4().hex, nx=True):
            try:
                yield url
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    raise RuntimeError("no empty Redis database among 1..15")
