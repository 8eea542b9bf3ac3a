"""Repeated failed authentication from one client: 429 with Retry-After, per address."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.api.auth_throttle import FailedAuthThrottle
from tests.integration.api.conftest import READER, api_settings, build_app

FIND = "/fhir/Appointment/$find?start=2030-01-07&end=2030-01-08"


def test_a_client_that_keeps_failing_is_throttled_and_others_are_not(tmp_path):
    settings = api_settings(tmp_path, auth_failure_limit=3, auth_failure_window_seconds=60)
    app = build_app(settings)
    with TestClient(app) as guesser, TestClient(app, client=("10.0.0.9", 5000)) as other:
        bad = {"X-API-Key": "guess-0123456789abcdef"}
        assert [guesser.get(FIND, headers=bad).status_code for _ in range(3)] == [401] * 3
        throttled = guesser.get(FIND, headers=bad)
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["Retry-After"]) <= 60
        outcome = throttled.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "throttled"
        # even a valid key waits: the address is throttled, not the credential
        assert guesser.get(FIND, headers={"X-API-Key": READER}).status_code == 429
        # another address is unaffected
        assert other.get(FIND, headers={"X-API-Key": READER}).status_code == 200


def test_failures_leave_the_window():
    now = [0.0]
    throttle = FailedAuthThrottle(2, 10, clock=lambda: now[0])
    throttle.failed("a")
    throttle.failed("a")
    assert throttle.retry_after("a") == 10
    now[0] = 4
    assert throttle.retry_after("a") == 6
    now[0] = 10.5
    assert throttle.retry_after("a") is None
    assert FailedAuthThrottle(0, 10).retry_after("a") is None  # off
