"""Fault injection does what it says, per endpoint, and is visible in the stats."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import msgspec
import pytest

from sandbox_ehr.process import SandboxProcess

PREFETCH = "/fhir/Slot/$prefetch"
WINDOW = {"start": "2026-11-26", "end": "2026-12-26", "_count": 10}


def _fault(http: httpx.Client, sp: SandboxProcess, **rule: object) -> str:
    r = http.post(f"{sp.control_url}/faults", json=rule)
    assert r.status_code == 201, r.text
    return r.json()["rules"][0]["id"]


def test_latency_and_error_statuses_with_times(stu3: SandboxProcess, http: httpx.Client) -> None:
    url = f"{stu3.base_url}/Slot/$prefetch"
    _fault(http, stu3, kind="latency", path=PREFETCH, latency_ms=300, times=1)
    t0 = time.perf_counter()
    assert http.get(url, params=WINDOW).status_code == 200
    assert time.perf_counter() - t0 >= 0.3
    _fault(http, stu3, kind="503", path=PREFETCH, times=1, retry_after=7)
    _fault(http, stu3, kind="error", status=500, path=PREFETCH, times=1)
    _fault(http, stu3, kind="429", path=PREFETCH, times=1, retry_after=3)
    first, second, third, fourth = (http.get(url, params=WINDOW) for _ in range(4))
    assert first.status_code == 503 and first.headers["retry-after"] == "7"
    assert second.status_code == 500 and second.json()["resourceType"] == "OperationOutcome"
    assert third.status_code == 429 and third.headers["retry-after"] == "3"
    assert fourth.status_code == 200
    other = http.get(f"{stu3.base_url}/Schedule")
    assert other.status_code == 200
    stats = http.get(f"{stu3.control_url}/stats").json()
    assert stats["requests"]["GET /fhir/Slot/$prefetch"] == 5
    assert stats["statuses"]["GET /fhir/Slot/$prefetch 503"] == 1
    assert sum(stats["faults"].values()) == 4


def test_timeout_and_connection_reset(stu3: SandboxProcess) -> None:
    _fault(httpx.Client(), stu3, kind="timeout", path=PREFETCH, hang_seconds=2, times=1)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{stu3.base_url}/Slot/$prefetch", params=WINDOW, timeout=0.5)
    _fault(httpx.Client(), stu3, kind="reset", path="/fhir/Schedule", times=1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError)):
        httpx.get(f"{stu3.base_url}/Schedule", timeout=5)
    assert httpx.get(f"{stu3.base_url}/Schedule", timeout=5).status_code == 200


def test_broken_pages(ehr: SandboxProcess, http: httpx.Client) -> None:
    url = f"{ehr.base_url}/Slot"
    params = {"start": "ge2026-11-26", "_count": 10}
    for kind in ("truncate", "invalid-json"):
        _fault(http, ehr, kind=kind, path="/fhir/Slot", times=1)
        r = http.get(url, params=params)
        assert r.status_code == 200
        with pytest.raises(msgspec.DecodeError):
            msgspec.json.decode(r.content)
    _fault(http, ehr, kind="short-page", path="/fhir/Slot", times=1)
    short = http.get(url, params=params).json()
    assert len(short["entry"]) == 5 and short["total"] > 10
    assert not [link for link in short["link"] if link["relation"] == "next"]
    assert len(http.get(url, params=params).json()["entry"]) == 10
    include = {**params, "_include": "Slot:schedule"}
    modes = {e["search"]["mode"] for e in http.get(url, params=include).json()["entry"]}
    assert modes == {"match", "include"}
    _fault(http, ehr, kind="no-includes", path="/fhir/Slot", times=1)
    bare = http.get(url, params=include).json()  # as from a server that ignores _include
    assert {e["search"]["mode"] for e in bare["entry"]} == {"match"} and len(bare["entry"]) == 10
    assert [link for link in bare["link"] if link["relation"] == "next"]


def test_probability_is_seeded_and_control_api_is_never_faulted(
    stu3: SandboxProcess, http: httpx.Client
) -> None:
    _fault(http, stu3, kind="503", path="*", probability=0.5, seed=1)
    statuses = [http.get(f"{stu3.base_url}/metadata").status_code for _ in range(20)]
    assert 3 <= statuses.count(503) <= 17 and statuses.count(200) >= 3
    assert http.get(f"{stu3.control_url}/stats").status_code == 200
    assert http.delete(f"{stu3.control_url}/faults").status_code == 204
    assert all(http.get(f"{stu3.base_url}/metadata").status_code == 200 for _ in range(5))


def test_bad_fault_rules_are_rejected(stu3: SandboxProcess, http: httpx.Client) -> None:
    for rule in (
        {"kind": "explode"},
        {"kind": "error", "status": 200},
        {"kind": "latency", "colour": 1},
        {"kind": "503", "probability": 2},
    ):
        assert http.post(f"{stu3.control_url}/faults", json=rule).status_code == 400, rule


def test_a_slow_answer_is_served_at_once_and_answered_late(
    stu3: SandboxProcess, http: httpx.Client
) -> None:
    rule = {"kind": "slow-answer", "path": "/fhir/Patient", "method": "POST", "latency_ms": 800}
    _fault(http, stu3, times=1, **rule)
    body = {
        "resourceType": "Patient",
        "name": [{"family": "Slowe", "given": ["Ann"]}],
        "birthDate": "1990-01-01",
        "gender": "female",
    }
    with ThreadPoolExecutor(1) as pool:
        started = time.perf_counter()
        pending = pool.submit(httpx.post, f"{stu3.base_url}/Patient", json=body, timeout=10)
        found: list = []
        while not found and time.perf_counter() - started < 0.7:
            search = http.get(f"{stu3.base_url}/Patient", params={"family": "Slowe"})
            found = search.json().get("entry", [])
        answer = pending.result()
    assert found, "the patient was registered before the answer left"
    assert answer.status_code == 201 and time.perf_counter() - started >= 0.8
    assert found[0]["resource"]["id"] == answer.json()["id"]
