"""Logs (JSON, correlated, no PHI), Prometheus metrics, readiness and the status report."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import APIRouter
from fastapi.responses import Response
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from sqlalchemy import update
from starlette.background import BackgroundTask

from app.api.health import Check, add_readiness_check
from app.cache.db import transaction
from app.cache.models import ScheduleRow
from app.cli.status_report import print_status
from app.observability import metrics
from app.observability.logging import configure_logging, make_handler
from app.runtime import api_services
from app.settings import Settings
from benchmarks.processes import free_port
from tests.factories import OPEN_RULES

from .conftest import FIND, METRICS, READER, api_settings, build_app, now, record_full_load, seed

PHI = "Jane-Doe-1970-01-01"


def json_logs(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


@pytest.fixture
def log_buffer(settings: Settings):
    buffer = io.StringIO()
    configure_logging(settings.model_copy(update={"log_format": "json"}), stream=buffer)
    yield buffer
    configure_logging(settings)


def scrape(client: TestClient) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", headers={"X-API-Key": METRICS})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


# -- logs ---------------------------------------------------------------------------


def test_access_log_is_json_with_request_id_and_no_query_values(client, log_buffer):
    url = f"{FIND}&patient-reference=Patient/{PHI}&location-string={PHI}"
    response = client.get(url, headers={"X-API-Key": READER, "X-Request-ID": "trace-42"})
    assert response.status_code == 200, response.text
    lines = json_logs(log_buffer)
    access = [line for line in lines if line["logger"] == "slotsync.access"]
    assert access, lines
    line = access[-1]
    assert line["request_id"] == "trace-42"
    assert line["route"] == "/fhir/Appointment/$find"
    assert line["status"] == 200
    assert line["http_method"] == "GET"
    assert line["caller"].startswith("api-key:")
    assert isinstance(line["duration_ms"], float)
    text = log_buffer.getvalue()
    assert PHI not in text
    assert READER not in text  # the key itself is never logged


def test_the_logged_latency_ends_when_the_response_is_sent(app, settings):
    """Work a route leaves to run after its response (the next minute's $find answer)
    is not counted in the request's latency: the caller did not wait for it."""
    router = APIRouter()

    @router.get("/fhir/after")
    def after() -> Response:
        return Response(b"{}", background=BackgroundTask(time.sleep, 0.5))

    app.include_router(router)
    buffer = io.StringIO()
    with TestClient(app) as client:
        configure_logging(settings.model_copy(update={"log_format": "json"}), stream=buffer)
        t0 = time.perf_counter()
        assert client.get("/fhir/after").status_code == 200
        assert time.perf_counter() - t0 >= 0.5  # the test client waits for the task
    configure_logging(settings)
    access = [line for line in json_logs(buffer) if line["logger"] == "slotsync.access"]
    assert access[-1]["route"] == "/fhir/after"
    assert access[-1]["duration_ms"] < 400


def test_unmatched_routes_are_logged_by_a_constant(client, log_buffer):
    client.get(f"/fhir/Patient/{PHI}")
    assert PHI not in log_buffer.getvalue()
    access = [line for line in json_logs(log_buffer) if line["logger"] == "slotsync.access"]
    assert access[-1]["route"] == "unmatched"


def test_unhandled_error_logged_with_the_callers_request_id(app, settings):
    router = APIRouter()

    @router.get("/fhir/boom")
    def boom() -> None:
        raise ValueError(f"patient {PHI} not parseable")

    app.include_router(router)
    buffer = io.StringIO()
    with TestClient(app, raise_server_exceptions=False) as client:
        configure_logging(settings.model_copy(update={"log_format": "json"}), stream=buffer)
        response = client.get("/fhir/boom", headers={"X-Request-ID": "trace-500"})
    assert response.status_code == 500
    errors = [line for line in json_logs(buffer) if line["level"] == "ERROR"]
    assert errors and errors[0]["request_id"] == "trace-500"
    assert "ValueError" in errors[0]["exc_info"]
    access = [line for line in json_logs(buffer) if line["logger"] == "slotsync.access"]
    assert access[-1]["status"] == 500


def test_production_logs_keep_the_stack_but_not_exception_messages():
    buffer = io.StringIO()
    logger = logging.getLogger("test.production")
    handler = make_handler("json", buffer, redact_exceptions=True)
    logger.addHandler(handler)
    try:
        try:
            try:
                raise KeyError(PHI)
            except KeyError as inner:
                raise RuntimeError(f"lookup of {PHI} failed") from inner
        except RuntimeError:
            logger.exception("could not register patient")
    finally:
        logger.removeHandler(handler)
    text = buffer.getvalue()
    assert PHI not in text
    record = json.loads(text)
    assert "builtins.RuntimeError: [message withheld]" in record["exc_info"]
    assert "builtins.KeyError: [message withheld]" in record["exc_info"]
    assert "test_observability.py" in record["exc_info"]


def test_development_logs_keep_exception_messages():
    buffer = io.StringIO()
    logger = logging.getLogger("test.development")
    handler = make_handler("text", buffer)
    logger.addHandler(handler)
    try:
        try:
            raise KeyError("visible")
        except KeyError:
            logger.exception("oops")
    finally:
        logger.removeHandler(handler)
    assert "KeyError: 'visible'" in buffer.getvalue()


def test_phi_keys_in_structured_fields_are_redacted():
    buffer = io.StringIO()
    logger = logging.getLogger("test.redaction")
    handler = make_handler("json", buffer)
    logger.addHandler(handler)
    try:
        logger.warning(
            "registration rejected",
            extra={
                "patient": {"id": "p-1", "name": [{"family": "Doe"}], "birthDate": "1970-01-01"},
                "identifier": "MRN-123",
                "count": 3,
            },
        )
    finally:
        logger.removeHandler(handler)
    record = json.loads(buffer.getvalue())
    assert record["patient"] == {"id": "p-1", "name": "[redacted]", "birthDate": "[redacted]"}
    assert record["identifier"] == "[redacted]"
    assert record["count"] == 3
    assert "Doe" not in buffer.getvalue() and "MRN-123" not in buffer.getvalue()


# -- metrics --------------------------------------------------------------------------


def test_request_latency_and_counts_per_route(client):
    key = ("GET", "/fhir/Appointment/$find", "200")
    before = scrape(client)

    def count(samples, name, labels):
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    labels = dict(zip(("method", "route", "status"), key, strict=True))
    for _ in range(3):
        assert client.get(FIND, headers={"X-API-Key": READER}).status_code == 200
    client.get(FIND)  # 401
    after = scrape(client)
    assert (
        count(after, "slotsync_http_requests_total", labels)
        - count(before, "slotsync_http_requests_total", labels)
        == 3
    )
    unauthorised = {**labels, "status": "401"}
    assert count(after, "slotsync_http_requests_total", unauthorised) >= 1
    histogram = {"method": "GET", "route": "/fhir/Appointment/$find"}
    assert (
        count(after, "slotsync_http_request_duration_seconds_count", histogram)
        - count(before, "slotsync_http_request_duration_seconds_count", histogram)
        == 4
    )


def test_cache_size_and_sync_lag_are_computed_at_scrape_time(client, db):
    confirmed = now() - timedelta(minutes=10)
    seed(db, confirmed_at=confirmed, schedules=2, per=3)
    record_full_load(db, finished_at=now() - timedelta(hours=1))
    samples = scrape(client)
    assert samples[("slotsync_cache_slots", (("status", "free"),))] == 6
    assert samples[("slotsync_cache_schedules", ())] == 2
    lag = samples[("slotsync_schedule_sync_lag_seconds", (("schedule", "sch-0"),))]
    assert 590 < lag < 700
    assert 590 < samples[("slotsync_sync_lag_max_seconds", ())] < 700
    assert 3590 < samples[("slotsync_last_full_load_age_seconds", ())] < 3700
    runs = samples[("slotsync_sync_runs_recent", (("kind", "initial-load"), ("status", "ok")))]
    assert runs == 1


def test_empty_cache_reports_nan_ages(client):
    samples = scrape(client)
    assert samples[("slotsync_cache_schedules", ())] == 0
    age = samples[("slotsync_last_full_load_age_seconds", ())]
    assert age != age  # NaN


def test_recording_helpers(client):
    before = scrape(client)
    metrics.observe_ehr_call("Slot/$prefetch", 200, 0.05)
    metrics.observe_ehr_call("Slot/$prefetch", 503, 0.5)
    metrics.observe_ehr_call("Slot/$prefetch", "timeout", 30.0)
    metrics.observe_ehr_call("Slot/$prefetch", 404, 0.02)
    metrics.task_outcome("refresh_schedule", "ok", 1.5)
    metrics.task_outcome("refresh_schedule", "failed")
    metrics.notification_received("heartbeat")
    after = scrape(client)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert (
        delta(
            "slotsync_ehr_request_duration_seconds_count", endpoint="Slot/$prefetch", status="200"
        )
        == 1
    )
    assert delta("slotsync_ehr_errors_total", endpoint="Slot/$prefetch", status="503") == 1
    assert delta("slotsync_ehr_errors_total", endpoint="Slot/$prefetch", status="timeout") == 1
    assert delta("slotsync_ehr_errors_total", endpoint="Slot/$prefetch", status="404") == 0
    assert delta("slotsync_task_outcomes_total", task="refresh_schedule", outcome="ok") == 1
    assert delta("slotsync_task_outcomes_total", task="refresh_schedule", outcome="failed") == 1
    assert delta("slotsync_task_duration_seconds_count", task="refresh_schedule") == 1
    assert delta("slotsync_webhook_notifications_total", kind="heartbeat") == 1


def test_a_full_offer_memo_is_counted_and_warned_at_most_every_five_minutes(
    client, log_buffer, monkeypatch
):
    clock = [1000.0]
    monkeypatch.setattr(metrics.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(metrics, "_offer_memo_warned_at", None)
    before = scrape(client)
    metrics.offer_memo_full(2_000_000)
    clock[0] += 60
    metrics.offer_memo_full(1_999_000)
    clock[0] += 300
    metrics.offer_memo_full(1_998_000)
    after = scrape(client)
    key = ("slotsync_offer_memo_full_total", ())
    assert after[key] - before.get(key, 0.0) == 3
    warnings = [r for r in json_logs(log_buffer) if "offer memo full" in r.get("message", "")]
    assert [w["level"] for w in warnings] == ["WARNING", "WARNING"]
    assert "2000000" in warnings[0]["message"] and "1998000" in warnings[1]["message"]
    assert "SLOTSYNC_OFFER_MEMO_MAX_OFFERS" in warnings[0]["message"]


def test_the_offer_memo_takes_its_bound_from_the_settings(settings):
    services = api_services(settings.model_copy(update={"offer_memo_max_offers": 12_345}))
    try:
        memo = services.finder.offer_memo
        assert memo._max_offers == 12_345 and memo._on_full is metrics.offer_memo_full
    finally:
        services.close()  # its embedded dispatcher runs periodic jobs on a thread


RECORD = """
from app.observability import metrics
metrics.task_outcome("load", "ok")
metrics.observe_http("GET", "/fhir/Appointment/$find", 200, 0.01)
"""
RENDER = """
import sys
from pathlib import Path
from app.observability.metrics import render
body, _ = render(Path(sys.argv[1]))
sys.stdout.write(body.decode())
"""


def test_multiprocess_mode_sums_every_process(tmp_path: Path):
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(Path.cwd())}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", RECORD], env=env, check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-c", RENDER, str(tmp_path)],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(out)
        for s in family.samples
    }
    assert samples[("slotsync_task_outcomes_total", (("outcome", "ok"), ("task", "load")))] == 2
    key = (("method", "GET"), ("route", "/fhir/Appointment/$find"), ("status", "200"))
    assert samples[("slotsync_http_requests_total", key)] == 2


# -- readiness -------------------------------------------------------------------------


OPS = {"X-API-Key": METRICS}  # the checks' details are for operators


def test_anonymous_callers_get_only_the_status(client, db):
    anonymous = client.get("/readyz")
    assert anonymous.status_code == 503 and anonymous.json() == {"status": "unready"}
    reader = client.get("/readyz", headers={"X-API-Key": READER})  # no ops scope
    assert reader.json() == {"status": "unready"}
    forged = client.get("/readyz", headers={"X-API-Key": "not-a-key-0123456789"})
    assert forged.status_code == 503 and forged.json() == {"status": "unready"}
    record_full_load(db, finished_at=now())
    assert client.get("/readyz").json() == {"status": "ready"}
    assert "checks" in client.get("/readyz", headers=OPS).json()


def test_not_ready_before_the_first_full_load(client):
    response = client.get("/readyz", headers=OPS)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unready"
    assert body["checks"]["database"] == {"ok": True, "detail": "reachable"}
    assert body["checks"]["full_load"]["ok"] is False


def test_ready_after_a_recent_full_load(client, db):
    record_full_load(db, finished_at=now() - timedelta(hours=2))
    response = client.get("/readyz", headers=OPS)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"
    assert "2.0 h ago" in response.json()["checks"]["full_load"]["detail"]


def test_not_ready_when_the_full_load_is_too_old(client, db):
    record_full_load(db, finished_at=now() - timedelta(hours=49))
    record_full_load(db, finished_at=now() - timedelta(hours=1), status="failed")
    response = client.get("/readyz", headers=OPS)
    assert response.status_code == 503
    assert "limit 48 h" in response.json()["checks"]["full_load"]["detail"]


def test_registered_checks_take_part(app, db):
    record_full_load(db, finished_at=now())
    state = {"loaded": False}
    add_readiness_check(app, "rules", lambda: Check(state["loaded"], "rules file"))

    def explode() -> Check:
        raise RuntimeError("postgresql://user:secret@db/slotsync unreachable")

    with TestClient(app) as client:
        assert client.get("/readyz", headers=OPS).status_code == 503
        state["loaded"] = True
        assert client.get("/readyz", headers=OPS).status_code == 200
        add_readiness_check(app, "flaky", explode)
        response = client.get("/readyz", headers=OPS)
    assert response.status_code == 503
    assert response.json()["checks"]["flaky"] == {"ok": False, "detail": "failed: RuntimeError"}
    assert "secret" not in response.text


@pytest.mark.parametrize(("port", "ok"), [(6379, True), (None, False)])
def test_broker_check_pings_redis(tmp_path: Path, port, ok):
    port = port or free_port()
    settings = api_settings(tmp_path, redis_url=f"redis://127.0.0.1:{port}/0")
    with TestClient(build_app(settings)) as client:
        broker = client.get("/readyz", headers=OPS).json()["checks"]["broker"]
    assert broker["ok"] is ok
    if not ok:
        assert broker["detail"].startswith("failed: ")


# -- the ops status report ---------------------------------------------------------------


def report(settings: Settings, **kwargs) -> tuple[int, str]:
    console = Console(record=True, width=200)
    code = print_status(settings, console=console, **kwargs)
    return code, console.export_text()


def test_status_healthy(settings, db):
    seed(db, confirmed_at=now() - timedelta(minutes=5))
    record_full_load(db, finished_at=now() - timedelta(hours=1))
    code, text = report(settings)
    assert code == 0, text
    assert "FAIL" not in text
    assert "0 of 2 schedules unconfirmed" in text
    assert "6 slots (6 free) in 2 schedules" in text
    assert "recent sync runs" in text


def test_status_shows_the_lagging_schedule_and_failures(settings, db):
    seed(db, confirmed_at=now() - timedelta(minutes=5), schedules=3)
    with transaction(db) as session:
        session.execute(
            update(ScheduleRow)
            .where(ScheduleRow.id == "sch-1")
            .values(last_confirmed_at=now() - timedelta(hours=5), last_error="EhrTimeout")
        )
    record_full_load(db, finished_at=now() - timedelta(hours=1))
    record_full_load(db, finished_at=now() - timedelta(minutes=30), status="failed")
    code, text = report(settings)
    assert code == 1  # degraded: serving, but the cache may differ from the EHR
    assert "1 of 3 schedules unconfirmed for over 120 min (max lag 5.0 h)" in text
    assert "1 schedules whose last sync failed" in text
    lagging = text.split("most lagging schedules")[1]
    assert lagging.index("sch-1") < lagging.index("sch-0")
    assert "EhrTimeout" in lagging
    assert "1 failed runs in the last 24 h" in text

    code, out = report(settings, as_json=True)
    data = json.loads(out)
    assert code == 1 and data["healthy"] is False and data["health"] == "degraded"
    assert data["lagging"][0]["schedule"] == "sch-1"
    assert {c["name"]: c["state"] for c in data["checks"]}["freshness"] == "WARN"


def test_status_unhealthy_without_a_full_load(settings, db):
    seed(db, confirmed_at=now())
    code, text = report(settings)
    assert code == 2  # down
    assert "no successful full load yet" in text


def test_status_database_down(tmp_path: Path):
    settings = api_settings(tmp_path, database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/x")
    code, text = report(settings)
    assert code == 2  # down
    assert "database" in text and "failed: OperationalError" in text


def test_production_settings_switch_exception_redaction_on():
    production = Settings(
        environment="production",
        webhook_secret="w" * 32,
        proposal_secret="p" * 32,
        api_keys={"k" * 32: ["system/Appointment.read"]},
        ehr_base_url="https://ehr.example.org/fhir",
        rules_path=OPEN_RULES,
        log_format="json",
    )
    buffer = io.StringIO()
    configure_logging(production, stream=buffer)
    try:
        try:
            raise LookupError(PHI)
        except LookupError:
            logging.getLogger("test.prod").exception("failed")
    finally:
        configure_logging(Settings())
    assert PHI not in buffer.getvalue()
    assert "LookupError: [message withheld]" in buffer.getvalue()
