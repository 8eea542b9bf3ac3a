"""Embedded mode's thread pool stops at once on shutdown, even while retrying a gone EHR."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.ehr.client import EhrClient
from app.ehr.transport import RetryPolicy
from app.sync.context import SyncContext
from app.sync.coordination import LocalCoordinator
from app.sync.local import LocalDispatcher
from app.sync.messages import ResyncRequest
from benchmarks.processes import free_port, wait_until
from tests.integration.api.conftest import EVERYTHING, api_settings, build_app
from tests.sync_support import BASE, DAY0, settings

POOL_THREADS = "slotsync-sync"


def pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(POOL_THREADS)]


@pytest.mark.parametrize(
    ("retry", "request_"),
    [
        # the client backs off between attempts at discovering the schedules
        (RetryPolicy(attempts=5, base_delay=5.0), ResyncRequest()),
        # the client gives up at once; the chunk loop backs off before its next attempt
        (RetryPolicy(attempts=1), ResyncRequest(schedule_ids=("sch-0",))),
    ],
    ids=["client-backoff", "chunk-backoff"],
)
def test_shutdown_returns_promptly_and_nothing_runs_after(engine, retry, request_):
    attempts: list[str] = []

    def unreachable(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        raise httpx.ConnectError("connection refused", request=request)

    stop = threading.Event()
    client = EhrClient(BASE, transport=httpx.MockTransport(unreachable), retry=retry, stop=stop)
    slow = settings(task_retry_base_seconds=5.0, task_retry_max_seconds=5.0)  # long backoff
    ctx = SyncContext(engine=engine, client=client, coord=LocalCoordinator(), settings=slow)
    dispatcher = LocalDispatcher(ctx, stop=stop, workers=1)
    for _ in range(3):  # one runs (and retries), two wait in the queue
        dispatcher.resync(request_)
    wait_until(lambda: attempts, 10, "a first attempt", interval=0.01)
    time.sleep(0.1)  # now in its backoff

    started = time.monotonic()
    dispatcher.shutdown()
    # the backoff waits at least 2.5 s (5 s, jittered by half): less means it was cut
    assert time.monotonic() - started < 2.0
    assert not pool_threads()
    made = len(attempts)

    dispatcher.refresh("sch-0", DAY0, DAY0 + timedelta(days=1))
    time.sleep(0.3)
    assert len(attempts) == made  # after shutdown: neither a retry nor the queued work


def test_the_api_lifespan_shuts_its_dispatcher_down(tmp_path: Path):
    unreachable = f"http://127.0.0.1:{free_port()}/fhir"
    app = build_app(api_settings(tmp_path, ehr_base_url=unreachable, ehr_retry_attempts=5))
    with TestClient(app) as client:
        for _ in range(5):
            answer = client.post("/admin/resync", headers={"X-API-Key": EVERYTHING})
            assert answer.status_code == 202
        wait_until(pool_threads, 10, "the pool's threads", interval=0.01)
        started = time.monotonic()
    assert time.monotonic() - started < 2.0
    assert not pool_threads()
