"""Control API: ground truth format, mutations, add-day, reset, config."""

from __future__ import annotations

from datetime import datetime

import httpx
import msgspec

from sandbox_ehr.process import SandboxProcess


def test_truth_is_free_slots_in_utc_sorted(ehr: SandboxProcess, http: httpx.Client) -> None:
    body = http.get(
        f"{ehr.control_url}/truth",
        params={"schedule": "sch-pr-1,sch-room-1", "start": "2026-11-30", "end": "2026-12-05"},
    ).json()
    slots = body["slots"]
    assert body["count"] == len(slots) > 0
    assert {s["schedule"] for s in slots} <= {"sch-pr-1", "sch-room-1"}
    assert all(
        s["status"] == "free" and s["start"].endswith("Z") and s["end"] > s["start"] for s in slots
    )
    keys = [(s["start"], s["id"]) for s in slots]
    assert keys == sorted(keys)
    assert all("2026-11-30" <= s["start"] < "2026-12-05" for s in slots)
    assert all(
        t.startswith("http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type|")
        for s in slots
        for t in s["serviceType"]
    )
    assert http.get(f"{ehr.control_url}/truth", params={"schedule": "sch-nope"}).status_code == 400


def test_mutations_show_in_truth_and_reads_and_reset_restores(
    stu3: SandboxProcess, http: httpx.Client
) -> None:
    before = http.get(f"{stu3.control_url}/truth").json()["slots"]
    first = before[0]
    out = http.post(
        f"{stu3.control_url}/mutate",
        json={
            "ops": [
                {"op": "book", "slot": first["id"]},
                {"op": "move", "slot": before[1]["id"], "minutes": 15},
                {"op": "random", "count": 200, "seed": 9},
            ]
        },
    ).json()
    assert first["id"] in out["slots"] and out["changes"] and out["schedules"]
    truth = {s["id"]: s for s in http.get(f"{stu3.control_url}/truth").json()["slots"]}
    assert first["id"] not in truth
    moved = http.get(f"{stu3.base_url}/Slot/{before[1]['id']}").json()
    shift = datetime.fromisoformat(moved["start"]) - datetime.fromisoformat(before[1]["start"])
    assert shift.total_seconds() == 15 * 60
    reset = http.post(f"{stu3.control_url}/reset").json()
    assert reset["schedulesChanged"] >= len(out["schedules"]) - 1
    assert http.get(f"{stu3.control_url}/truth").json()["slots"] == before
    for bad in (
        {"op": "explode"},
        {"op": "book"},
        {"op": "book", "slot": "sl-99999999"},
        {"op": "move", "slot": first["id"]},
        {"op": "set-status", "slot": first["id"], "status": "x"},
    ):
        assert http.post(f"{stu3.control_url}/mutate", json=bad).status_code in (400, 404), bad


def test_deleted_slots_and_removed_schedules_leave_searches_reads_and_truth(
    ehr: SandboxProcess, http: httpx.Client
) -> None:
    truth = http.get(f"{ehr.control_url}/truth", params={"schedule": "sch-pr-1"}).json()["slots"]
    gone = truth[0]["id"]
    out = http.post(f"{ehr.control_url}/mutate", json={"op": "delete", "slot": gone}).json()
    assert out["slots"] == [gone] and out["schedules"] == ["sch-pr-1"]
    assert http.get(f"{ehr.base_url}/Slot/{gone}").status_code == 410
    after = http.get(f"{ehr.control_url}/truth", params={"schedule": "sch-pr-1"}).json()
    assert [s["id"] for s in after["slots"]] == [s["id"] for s in truth[1:]]
    assert (
        http.post(f"{ehr.control_url}/mutate", json={"op": "delete", "slot": gone}).status_code
        == 404
    )

    removed = {"op": "remove-schedule", "schedule": "sch-pr-2"}
    out = http.post(f"{ehr.control_url}/mutate", json=removed).json()
    assert out["schedules"] == ["sch-pr-2"] and out["slots"]
    assert http.get(f"{ehr.base_url}/Schedule/sch-pr-2").status_code == 404
    listed = http.get(f"{ehr.base_url}/Schedule", params={"_count": 500}).json()
    ids = {
        e["resource"]["id"] for e in listed["entry"] if e["resource"]["resourceType"] == "Schedule"
    }
    assert "sch-pr-2" not in ids and "sch-pr-1" in ids
    left = http.get(f"{ehr.control_url}/truth", params={"schedule": "sch-pr-2"}).json()
    assert left["count"] == 0
    assert http.get(f"{ehr.base_url}/Slot/{out['slots'][0]}").status_code == 410
    assert http.post(f"{ehr.control_url}/mutate", json=removed).status_code == 404
    http.post(f"{ehr.control_url}/reset")
    assert http.get(f"{ehr.base_url}/Schedule/sch-pr-2").status_code == 200


def test_add_day_extends_the_horizon_day_by_day(ehr: SandboxProcess, http: httpx.Client) -> None:
    config = http.get(f"{ehr.control_url}/config").json()
    days = []
    for _ in range(4):  # 2026-12-26 (Sat) .. 2026-12-29 (Tue); Sunday adds nothing
        out = http.post(f"{ehr.control_url}/mutate", json={"op": "add-day"}).json()
        days.append({c["start"][:10] for c in out["changes"]})
    assert days[1] == set() and days[2] and days[3]
    assert max(days[2]) <= "2026-12-29" and min(days[3]) >= "2026-12-29"
    assert http.get(f"{ehr.control_url}/config").json()["slots"] > config["slots"]
    truth = http.get(f"{ehr.control_url}/truth", params={"start": "2026-12-29"}).json()
    assert truth["count"] > 0


def test_runtime_config_changes_and_validation(stu3: SandboxProcess, http: httpx.Client) -> None:
    r = http.post(f"{stu3.control_url}/config", json={"page_size": 7})
    assert r.status_code == 200 and r.json()["pageSize"] == 7
    page = http.get(
        f"{stu3.base_url}/Slot/$prefetch", params={"start": "2026-11-26", "end": "2026-12-26"}
    ).json()
    assert len(page["entry"]) == 7
    assert http.post(f"{stu3.control_url}/config", json={"seed": 1}).status_code == 400
    assert http.post(f"{stu3.control_url}/config", json={"page_size": 0}).status_code == 400


def test_malformed_bodies_never_get_5xx_and_the_connection_survives(
    ehr: SandboxProcess, http: httpx.Client
) -> None:
    junk = [
        None,
        1,
        "x",
        [],
        {"resourceType": "Parameters", "parameter": "x"},
        {"resourceType": "Parameters", "parameter": [1]},
        {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": "x"}]},
    ]
    targets = [
        ("POST", "/fhir/Slot/$prefetch"),
        ("POST", "/fhir/Appointment/$hold"),
        ("POST", "/fhir/Appointment/$book"),
        ("POST", "/fhir/Patient"),
        ("POST", "/fhir/Coverage"),
        ("POST", "/fhir/Subscription"),
        ("PATCH", "/fhir/Appointment/appt-1"),
        ("POST", "/_sandbox/mutate"),
        ("POST", "/_sandbox/faults"),
        ("POST", "/_sandbox/config"),
    ]
    for (method, path), body in [(t, b) for t in targets for b in junk]:
        r = http.request(
            method,
            f"{ehr.root_url}{path}",
            content=msgspec.json.encode(body),
            headers={"Content-Type": "application/fhir+json"},
        )
        assert r.status_code < 500 and msgspec.json.decode(r.content) is not None, (
            method,
            path,
            body,
            r.text,
        )
        if body is None or isinstance(body, int | str):
            assert r.status_code in (400, 404), (method, path, body)
    for op in ({"op": "random", "count": "x"}, {"op": "add-day", "schedules": 5}, {"ops": 5}):
        assert http.post(f"{ehr.control_url}/mutate", json=op).status_code == 400, op
    assert http.get(f"{ehr.base_url}/metadata").status_code == 200
