"""Abuse: injection-like strings everywhere, path tricks, oversized input. Nothing changes, no 5xx.

Runs on SQLite and PostgreSQL (the ``engine`` fixture), since injection is a
property of the database driver as much as of our code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.factories import T0_DAY, T0_NEXT_DAY
from tests.integration.api.conftest import EVERYTHING, READER, api_settings, build_app

from .conftest import fingerprint, seed_cache

PAYLOADS = [
    "' OR '1'='1",
    "1; DROP TABLE slots; --",
    "Robert'); DROP TABLE slots;--",
    "pr-0') UNION SELECT id, id, id FROM actors --",
    '" OR ""="',
    "%27%20OR%201%3D1",
    "${jndi:ldap://127.0.0.1/a}",
    "<script>alert(1)</script>",
    "{{7*7}}",
    "../../../../etc/passwd",
    "\x00",
    "\u202egnp.exe",
    "²",
    "٣",
    "1e309",
    "-1",
    "9" * 400,
    "NaN",
    "2030-01-07T25:00:00+00:00",
    "2030-02-30",
    "2030-01-07T10:00:00",
    "x" * 3000,
    ",,,,",
    "Practitioner/",
    "Practitioner/pr-0' OR 1=1 --",
    "Practitioner/nobody,Practitioner/pr-1'--",
    "Practitioner/../Location/clinic-0",
]
PARAMETERS = [
    "start",
    "end",
    "practitioner",
    "provider",
    "location-reference",
    "location",
    "_count",
    "_format",
    "patient-reference",
    "specialty",
]
BASE = {"start": T0_DAY, "end": T0_NEXT_DAY}


@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    url = engine.url.render_as_string(hide_password=False)
    # throttling would answer the flood of bad credentials with 429 (its own test covers it)
    app = build_app(api_settings(tmp_path, database_url=url, auth_failure_limit=0))
    seed_cache(engine)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def find(client: TestClient, params: dict[str, str], headers: dict[str, str] | None = None):
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
    return client.get(f"/fhir/Appointment/$find?{query}", headers=headers or {"X-API-Key": READER})


def assert_safe(response) -> None:
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code >= 400:
        assert body["resourceType"] == "OperationOutcome"
        assert "Traceback" not in response.text
        assert "sqlalchemy" not in response.text.lower()
    else:
        assert body["resourceType"] == "Bundle"


def test_injection_in_every_parameter_changes_nothing(client, engine):
    before = fingerprint(engine)
    legit = find(client, BASE).json()["total"]
    assert legit == 12
    statuses = set()
    for name in PARAMETERS:
        for payload in PAYLOADS:
            response = find(client, {**BASE, name: payload})
            assert_safe(response)
            statuses.add(response.status_code)
            names_someone = payload.strip(", ")  # FHIR ignores an empty parameter value
            if (
                response.status_code == 200
                and names_someone
                and name in ("practitioner", "provider", "location")
            ):
                # a reference that names nobody must never widen the answer
                assert response.json()["total"] == 0, (name, payload)
    # injected parameter *names* too
    for payload in PAYLOADS[:8]:
        assert_safe(find(client, {**BASE, payload: "x"}))
    assert fingerprint(engine) == before
    assert {200, 400} <= statuses


def test_injection_in_headers(client, engine):
    before = fingerprint(engine)
    for payload in PAYLOADS:
        raw = payload.encode("utf-8")
        for headers in (
            {"X-API-Key": raw},
            {"Authorization": b"Bearer " + raw},
            {"Authorization": b"ApiKey " + raw},
            {"X-API-Key": READER.encode(), "X-Request-ID": raw},
            {"X-API-Key": READER.encode(), "Accept": raw},
        ):
            response = client.get(
                f"/fhir/Appointment/$find?start={T0_DAY}&end={T0_NEXT_DAY}", headers=headers
            )
            assert_safe(response)
            if b"X-API-Key" not in headers and "X-API-Key" not in headers:
                assert response.status_code == 401
    assert fingerprint(engine) == before


def test_unicode_digits_in_count_are_refused(client):
    for value in ("²", "٣", "\uff11\uff10"):  # superscript two, Arabic-Indic three, fullwidth 10
        response = find(client, {**BASE, "_count": value})
        assert response.status_code == 400
        assert response.json()["issue"][0]["expression"] == ["_count"]


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/Appointment/%24find",
        "/fhir//Appointment/$find",
        "/fhir/Appointment/$find/",
        "/FHIR/Appointment/$find",
        "/fhir/./Appointment/$find",
        "/fhir/Appointment/../Appointment/$find",
        "/fhir/Appointment/$find;jsessionid=1",
        "/fhir/Appointment/$find%00",
        "//fhir/Appointment/$find",
    ],
)
def test_path_tricks_do_not_bypass_authentication(client, path):
    response = client.get(f"{path}?start={T0_DAY}&end={T0_NEXT_DAY}", follow_redirects=True)
    assert response.status_code in (401, 404, 405, 307), response.text
    assert response.json().get("resourceType") != "Bundle"


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "TRACE"])
def test_other_methods_do_not_bypass_authentication(client, method):
    response = client.request(method, f"/fhir/Appointment/$find?start={T0_DAY}&end={T0_NEXT_DAY}")
    assert response.status_code in (401, 405)
    assert b"Bundle" not in response.content


def test_long_query_strings_are_414(client):
    refs = ",".join(f"Practitioner/pr-{i}" for i in range(2000))
    response = find(client, {**BASE, "practitioner": refs}, headers={"X-API-Key": EVERYTHING})
    assert response.status_code == 414
    assert response.json()["issue"][0]["code"] == "too-costly"


def test_many_values_within_the_limit_are_answered(client):
    refs = ",".join(f"Practitioner/pr-{i}" for i in range(300))
    response = find(client, {**BASE, "practitioner": refs})
    assert response.status_code == 200
    assert response.json()["total"] == 12  # pr-0..pr-2 are among them


def test_oversized_and_nested_bodies_change_nothing(client, engine):
    before = fingerprint(engine)
    headers = {"X-API-Key": EVERYTHING, "Content-Type": "application/fhir+json"}
    for body in (
        b"[" * 200_000 + b"]" * 200_000,
        b'{"resourceType": "Parameters", "x": "' + b"a" * 2_000_000 + b'"}',
        b'{"a":' * 100 + b"1" + b"}" * 100,
    ):
        for path in (
            "/fhir/Appointment/$find",
            "/fhir/Appointment/$book",
            "/webhook/subscription",
            "/admin/resync",
        ):
            response = client.post(path, content=body, headers=headers)
            assert response.status_code in (400, 413), (path, response.status_code)
            assert response.json()["resourceType"] == "OperationOutcome"
    assert fingerprint(engine) == before
