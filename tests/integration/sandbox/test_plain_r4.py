"""The plain-r4 profile: a generic FHIR R4 server (no Argonaut operations, no
subscriptions, booking leaves slots free, slots can be deleted, ``_count`` capped)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class

from sandbox_ehr.cli import build_parser, config_from_args, main
from sandbox_ehr.process import SandboxProcess, start_sandbox
from tests.integration.sandbox.conftest import START_DATE, follow

CAP = 100
ACTIVE = ("proposed", "pending", "booked", "arrived", "checked-in", "waitlist")


@pytest.fixture(scope="module")
def _plain_process() -> Iterator[SandboxProcess]:
    with start_sandbox(
        profile="plain-r4",
        size=3000,
        seed=7,
        start_date=START_DATE,
        page_size=500,
        extra_args=["--horizon-days", "30"],
    ) as sp:
        yield sp


@pytest.fixture
def plain(_plain_process: SandboxProcess) -> SandboxProcess:
    assert httpx.post(f"{_plain_process.control_url}/reset").status_code == 200
    return _plain_process


def _valid(resource: dict[str, Any]) -> dict[str, Any]:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def _free(http: httpx.Client, sp: SandboxProcess, **params: str) -> list[dict[str, Any]]:
    return http.get(f"{sp.control_url}/truth", params=params).json()["slots"]


def _appointment(slot: dict[str, Any], status: str = "booked") -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": status,
        "start": slot["start"],
        "end": slot["end"],
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "participant": [
            {"actor": {"reference": "Practitioner/pr-1"}, "status": "accepted"},
            {"actor": {"reference": "Patient/pat-1"}, "status": "accepted"},
        ],
    }


def _now() -> str:
    """The current instant at millisecond precision (the server's lastUpdated precision)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _slot_appointments(http: httpx.Client, sp: SandboxProcess, *slots: str) -> dict[str, Any]:
    params = {"slot": ",".join(slots)} if slots else None
    return http.get(f"{sp.control_url}/slot-appointments", params=params).json()


def test_cli_profile_implies_r4_and_a_count_cap() -> None:
    cfg = config_from_args(build_parser().parse_args(["--profile", "plain-r4"]))
    assert (cfg.profile, cfg.fhir_version, cfg.max_count) == ("plain-r4", "r4", CAP)
    cfg = config_from_args(build_parser().parse_args(["--profile", "plain-r4", "--max-count", "7"]))
    assert cfg.max_count == 7
    cfg = config_from_args(build_parser().parse_args([]))
    assert (cfg.profile, cfg.fhir_version, cfg.max_count) == ("sandbox", "stu3", None)
    for argv in (["--profile", "plain-r4", "--fhir-version", "stu3"], ["--profile", "hapi"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_sandbox_operations_and_subscriptions_are_unknown(
    plain: SandboxProcess, http: httpx.Client
) -> None:
    slot = _free(http, plain, schedule="sch-pr-1")[0]
    params = {"resourceType": "Parameters", "parameter": []}
    for method, path, body in (
        ("GET", "Slot/$prefetch?start=2026-11-26", None),
        ("POST", "Slot/$prefetch", params),
        ("GET", "Slot/$find?start=2026-11-26", None),
        ("POST", "Appointment/$hold", _appointment(slot, "proposed")),
        ("POST", "Appointment/$book", _appointment(slot, "proposed")),
        ("POST", "Appointment/appt-1/$hold", params),
        ("POST", "Appointment/appt-1/$book", params),
    ):
        r = http.request(method, f"{plain.base_url}/{path}", json=body)
        assert r.status_code == 400, (method, path, r.text)
        assert _valid(r.json())["issue"][0]["code"] == "not-supported"
    subscription = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "r",
        "criteria": "Slot",
        "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"},
    }
    for method, path, body in (
        ("POST", "Subscription", subscription),
        ("GET", "Subscription", None),
        ("DELETE", "Subscription/sub-1", None),
        ("GET", "Subscription/sub-1/$status", None),
        ("GET", "Subscription/sub-1", None),
    ):
        r = http.request(method, f"{plain.base_url}/{path}", json=body)
        assert r.status_code == 404, (method, path, r.text)
        _valid(r.json())
    assert _free(http, plain, schedule="sch-pr-1")[0] == slot, "nothing was held or booked"


def test_metadata_describes_a_generic_r4_server(plain: SandboxProcess, http: httpx.Client) -> None:
    r = http.get(f"{plain.base_url}/metadata")
    cap = _valid(r.json())
    assert cap["fhirVersion"] == "4.0.1"
    assert "operation" not in cap["rest"][0]
    resources = {res["type"]: res for res in cap["rest"][0]["resource"]}
    assert "Subscription" not in resources
    assert "argonaut" not in r.text.lower() and "_count" not in r.text

    def interactions(rtype: str) -> set[str]:
        return {i["code"] for i in resources[rtype]["interaction"]}

    def params(rtype: str) -> set[str]:
        return {p["name"] for p in resources[rtype]["searchParam"]}

    assert interactions("Slot") == {"read", "search-type", "update", "delete", "history-type"}
    assert {"schedule", "start", "status", "_lastUpdated"} <= params("Slot")
    assert interactions("Appointment") >= {"read", "search-type", "create", "update", "patch"}
    assert {"slot", "date", "status", "actor", "practitioner", "patient"} <= params("Appointment")


def test_booking_leaves_the_slot_free_and_is_found_by_slot_search(
    plain: SandboxProcess, http: httpx.Client
) -> None:
    slot = _free(http, plain, schedule="sch-pr-1")[0]
    before = http.get(f"{plain.base_url}/Slot/{slot['id']}").json()
    r = http.post(f"{plain.base_url}/Appointment", json=_appointment(slot))
    assert r.status_code == 201, r.text
    created = _valid(r.json())
    assert r.headers["Location"].endswith(f"/Appointment/{created['id']}/_history/1")
    assert created["status"] == "booked" and created["meta"]["versionId"] == "1"

    after = http.get(f"{plain.base_url}/Slot/{slot['id']}").json()
    assert after["status"] == "free" and after["meta"] == before["meta"]
    assert slot["id"] in {s["id"] for s in _free(http, plain, schedule="sch-pr-1")}
    available = _free(http, plain, schedule="sch-pr-1", available="true")
    assert slot["id"] not in {s["id"] for s in available}
    assert len(available) == len(_free(http, plain, schedule="sch-pr-1")) - 1

    day = slot["start"][:10]
    for query in (
        {"slot": f"Slot/{slot['id']}"},
        {"slot": slot["id"], "status": "proposed,pending,booked"},
        {"date": [f"ge{day}", f"lt{day}T23:59:59Z"]},
        {"actor": "Practitioner/pr-1"},
        {"practitioner": "pr-1", "patient": "Patient/pat-1"},
    ):
        found = _valid(http.get(f"{plain.base_url}/Appointment", params=query).json())
        assert [e["resource"]["id"] for e in found["entry"]] == [created["id"]], query
    for query in (
        {"slot": slot["id"], "status": "cancelled"},
        {"slot": "sl-99999999"},
        {"date": f"lt{day}"},
    ):
        found = http.get(f"{plain.base_url}/Appointment", params=query).json()
        assert found["total"] == 0, query

    counts = _slot_appointments(http, plain, slot["id"])
    assert counts["slots"][0]["active"] == 1 and counts["doubleBooked"] == []
    second = http.post(f"{plain.base_url}/Appointment", json=_appointment(slot, "pending"))
    assert second.status_code == 201, "a generic server does not check for conflicts"
    counts = _slot_appointments(http, plain)
    assert counts["count"] == 1 and counts["doubleBooked"] == [slot["id"]]
    assert counts["slots"][0] == {
        "slot": slot["id"],
        "active": 2,
        "appointments": [
            {"id": created["id"], "status": "booked"},
            {"id": second.json()["id"], "status": "pending"},
        ],
    }


def test_put_and_patch_are_plain_updates(plain: SandboxProcess, http: httpx.Client) -> None:
    slot = _free(http, plain, schedule="sch-pr-1")[0]
    created = http.post(f"{plain.base_url}/Appointment", json=_appointment(slot)).json()
    url = f"{plain.base_url}/Appointment/{created['id']}"

    r = http.put(url, json=created | {"status": "cancelled"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["meta"]["versionId"] == "2"
    assert _slot_appointments(http, plain, slot["id"])["slots"][0]["active"] == 0
    assert slot["id"] in {s["id"] for s in _free(http, plain, available="true")}
    assert http.get(f"{plain.base_url}/Slot/{slot['id']}").json()["meta"]["versionId"] == "1"

    r = http.patch(
        url,
        json=[{"op": "replace", "path": "/status", "value": "waitlist"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200 and _valid(r.json())["meta"]["versionId"] == "3"
    assert http.get(url).json()["status"] == "waitlist"
    assert _slot_appointments(http, plain, slot["id"])["slots"][0]["active"] == 1

    r = http.put(f"{plain.base_url}/Appointment/mine-1", json=_appointment(slot, "proposed"))
    assert r.status_code == 201 and r.json()["id"] == "mine-1"
    assert _slot_appointments(http, plain, slot["id"])["doubleBooked"] == [slot["id"]]

    for method, path, body in (
        ("PUT", created["id"], created | {"id": "other"}),
        ("PATCH", created["id"], [{"op": "replace", "path": "/status", "value": "nonsense"}]),
        ("POST", "", _appointment(slot) | {"status": "nonsense"}),
        ("POST", "", _appointment(slot) | {"slot": [{"reference": "Slot/sl-99999999"}]}),
        (
            "POST",
            "",
            _appointment(slot)
            | {"participant": [{"actor": {"reference": "Patient/x"}, "status": "accepted"}]},
        ),
    ):
        headers = {"Content-Type": "application/json-patch+json"} if method == "PATCH" else None
        r = http.request(
            method, f"{plain.base_url}/Appointment/{path}".rstrip("/"), json=body, headers=headers
        )
        assert r.status_code == 400, (method, body, r.text)
        _valid(r.json())
    missing = http.patch(
        f"{plain.base_url}/Appointment/nope",
        json=[{"op": "replace", "path": "/status", "value": "cancelled"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert missing.status_code == 404


def test_deleted_slot_leaves_reads_searches_and_truth(
    plain: SandboxProcess, http: httpx.Client
) -> None:
    slots = _free(http, plain, schedule="sch-pr-2")
    slot = slots[1]
    window = {"schedule": "Schedule/sch-pr-2", "start": [f"ge{slot['start']}", "lt2026-12-26"]}
    assert slot["id"] in {
        e["resource"]["id"] for e in follow(http, f"{plain.base_url}/Slot", window)[1]
    }
    time.sleep(0.01)
    before_delete = _now()

    r = http.delete(f"{plain.base_url}/Slot/{slot['id']}")
    assert r.status_code == 204
    gone = http.get(f"{plain.base_url}/Slot/{slot['id']}")
    assert gone.status_code == 410 and _valid(gone.json())["issue"][0]["code"] == "deleted"
    _, entries = follow(http, f"{plain.base_url}/Slot", window)
    assert slot["id"] not in {e["resource"]["id"] for e in entries} and entries
    assert http.get(f"{plain.base_url}/Slot", params={"_id": slot["id"]}).json()["total"] == 0
    assert slot["id"] not in {s["id"] for s in _free(http, plain, schedule="sch-pr-2")}
    assert slots[2] in _free(http, plain, schedule="sch-pr-2")
    recent = http.get(f"{plain.base_url}/Slot", params={"_lastUpdated": f"ge{before_delete}"})
    recent = recent.json()
    assert recent["total"] == 0, "a _lastUpdated search cannot see a deletion"

    assert http.delete(f"{plain.base_url}/Slot/{slot['id']}").status_code == 204
    assert http.delete(f"{plain.base_url}/Slot/sl-99999999").status_code == 404
    refused = http.post(f"{plain.base_url}/Appointment", json=_appointment(slot))
    assert refused.status_code == 400

    assert http.post(f"{plain.control_url}/reset").status_code == 200
    assert http.get(f"{plain.base_url}/Slot/{slot['id']}").json()["status"] == "free"


def test_a_slot_status_can_be_updated_and_nothing_else(
    plain: SandboxProcess, http: httpx.Client
) -> None:
    slot = _free(http, plain, schedule="sch-pr-2")[0]
    url = f"{plain.base_url}/Slot/{slot['id']}"
    current = http.get(url).json()
    busy = _valid(http.put(url, json=current | {"status": "busy"}).json())
    assert busy["status"] == "busy" and busy["meta"]["versionId"] != current["meta"]["versionId"]
    assert slot["id"] not in {s["id"] for s in _free(http, plain, schedule="sch-pr-2")}
    moved = current | {"status": "free", "start": "2030-01-01T00:00:00Z"}
    assert http.put(url, json=moved).status_code == 400
    assert http.put(url, json=current | {"status": "maybe"}).status_code == 400
    stale = {"If-Match": f'W/"{current["meta"]["versionId"]}"'}
    assert http.put(url, json=current | {"status": "free"}, headers=stale).status_code == 412
    fresh = {"If-Match": f'W/"{busy["meta"]["versionId"]}"'}
    assert http.put(url, json=busy | {"status": "free"}, headers=fresh).json()["status"] == "free"
    assert http.put(f"{plain.base_url}/Slot/sl-99999999", json=current).status_code == 404


def test_history_lists_changes_and_deletions_since(
    plain: SandboxProcess, http: httpx.Client
) -> None:
    slots = _free(http, plain, schedule="sch-pr-3")[:3]
    time.sleep(0.01)
    since = _now()
    assert (
        http.get(f"{plain.base_url}/Slot/_history", params={"_since": since}).json()["total"] == 0
    )
    for s in slots[:2]:
        assert http.delete(f"{plain.base_url}/Slot/{s['id']}").status_code == 204
    out = http.post(f"{plain.control_url}/mutate", json={"op": "book", "slot": slots[2]["id"]})
    assert out.status_code == 200

    pages, entries = follow(http, f"{plain.base_url}/Slot/_history", {"_since": since, "_count": 2})
    assert len(pages) == 2 and all(_valid(p)["type"] == "history" for p in pages)
    assert pages[0]["total"] == 3
    seen = [(e["fullUrl"].rsplit("/", 1)[1], e["request"]["method"]) for e in entries]
    assert seen == [(slots[2]["id"], "PUT"), (slots[1]["id"], "DELETE"), (slots[0]["id"], "DELETE")]
    assert entries[0]["resource"]["status"] == "busy" and "resource" not in entries[1]
    assert (
        http.get(f"{plain.base_url}/Slot/_history", params={"_count": CAP + 1}).status_code == 400
    )


def test_count_above_the_cap_is_refused_and_at_the_cap_pages(
    plain: SandboxProcess, http: httpx.Client
) -> None:
    for path in ("Slot", "Schedule", "Appointment", "Practitioner", "Patient"):
        r = http.get(f"{plain.base_url}/{path}", params={"_count": CAP + 1})
        assert r.status_code == 400, path
        assert _valid(r.json())["resourceType"] == "OperationOutcome"
    window = {"start": ["ge2026-11-26", "lt2026-12-03"], "_count": str(CAP)}
    pages, entries = follow(http, f"{plain.base_url}/Slot", window)
    assert len(pages) > 2 and all(len(p["entry"]) == CAP for p in pages[:-1])
    ids = [e["resource"]["id"] for e in entries]
    assert len(ids) == len(set(ids)) == pages[0]["total"]
    default = http.get(f"{plain.base_url}/Slot").json()
    assert len(default["entry"]) == CAP, "the default page size never exceeds the cap"


def test_truth_available_excludes_slots_of_active_appointments_only(
    plain: SandboxProcess, http: httpx.Client
) -> None:
    slots = _free(http, plain, schedule="sch-room-1")[: len(ACTIVE) + 2]
    statuses = [*ACTIVE, "cancelled", "noshow"]
    for slot, status in zip(slots, statuses, strict=True):
        appt = _appointment(slot, status)
        appt["participant"] = [{"actor": {"reference": "Location/room-1"}, "status": "accepted"}]
        assert http.post(f"{plain.base_url}/Appointment", json=appt).status_code == 201, status
    available = {s["id"] for s in _free(http, plain, schedule="sch-room-1", available="true")}
    claimed = {s["id"] for s, st in zip(slots, statuses, strict=True) if st in ACTIVE}
    assert not claimed & available and {s["id"] for s in slots} - claimed <= available
    counts = _slot_appointments(http, plain)
    assert [c["active"] for c in counts["slots"]] == [1] * len(ACTIVE) + [0, 0]
    assert http.get(f"{plain.control_url}/truth", params={"available": "x"}).status_code == 400


def test_sandbox_profile_keeps_its_behaviour(r4: SandboxProcess, http: httpx.Client) -> None:
    slot = http.get(f"{r4.control_url}/truth").json()["slots"][0]
    assert http.delete(f"{r4.base_url}/Slot/{slot['id']}").status_code == 405
    assert http.get(f"{r4.base_url}/Slot/_history").status_code == 404
    assert http.get(f"{r4.base_url}/Slot", params={"_count": 5000}).status_code == 200
    config = http.get(f"{r4.control_url}/config").json()
    assert (config["profile"], config["maxCount"]) == ("sandbox", None)
