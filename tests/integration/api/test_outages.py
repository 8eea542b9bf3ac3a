"""A backing service that is down is a 503 OperationOutcome to retry later, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import kombu.exceptions
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.cache.db import make_engine
from app.runtime import redis_for
from app.sync.coordination import RedisCoordinator
from benchmarks.processes import free_port

from .conftest import ADMIN, FIND, READER, WEBHOOK_SECRET


def unavailable(response, service: str) -> dict:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.headers["retry-after"] == "5"
    assert response.headers["x-request-id"]
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    (issue,) = body["issue"]
    assert issue["code"] == "transient"
    assert service in issue["diagnostics"]
    # nothing of the failure's own text (addresses, driver messages) reaches the caller
    assert "127.0.0.1" not in response.text and "Traceback" not in response.text
    return body


def test_find_with_the_cache_database_down(app: FastAPI, client: TestClient) -> None:
    nobody = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone"
    app.state.engine = make_engine(nobody, connect_args={"connect_timeout": 2})
    response = client.get(FIND, headers={"X-API-Key": READER})
    unavailable(response, "cache database")


def test_a_notification_with_redis_down(app: FastAPI, client: TestClient) -> None:
    app.state.coordinator = RedisCoordinator(redis_for(f"redis://127.0.0.1:{free_port()}/0"))
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    notification = {
        "resourceType": "Schedule",
        "id": "sch-1",
        "actor": [{"reference": "Practitioner/pr-1"}],
        "planningHorizon": {"start": str(tomorrow), "end": str(tomorrow + timedelta(days=1))},
    }
    response = client.post(
        "/webhook/subscription",
        json=notification,
        headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"},
    )
    unavailable(response, "Redis")  # the EHR delivers it again later


class BrokerDown:
    def resync(self, request: object) -> str:
        raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6379.")


@pytest.mark.parametrize("body", [{}, {"schedule": ["sch-1"]}])
def test_a_resync_with_the_broker_down(app: FastAPI, client: TestClient, body: dict) -> None:
    app.state.dispatcher = BrokerDown()
    response = client.post("/admin/resync", json=body, headers={"X-API-Key": ADMIN})
    unavailable(response, "task queue")
