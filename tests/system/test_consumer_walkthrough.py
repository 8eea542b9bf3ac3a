"""The consumer walkthrough and every README example, run against a started demo.

`slotsync demo` runs as a user starts it (its own sandbox EHR, SQLite cache, the API),
on spare ports. The walkthrough runs as a separate process, as a consumer's backend
would, and every response it got is checked with fhir.resources (STU3, the demo's
version). Then each README shell block that talks to the demo runs in bash, so no
example in the README can go stale; the blocks that need Docker or a production
deployment are named here, so that a new example is either run or knowingly not.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class as get_r4_model_class
from fhir.resources.STU3 import get_fhir_model_class

from benchmarks.processes import free_port, process_env, slotsync, spawn
from tests.paths import REPO

pytestmark = pytest.mark.timeout(240)

DEMO = "127.0.0.1:8000"
KEY = {"X-API-Key": "slotsync-demo-key"}
# README shell blocks that cannot run here (Docker, production settings, make itself),
# by their first command.
NOT_RUN_HERE = ("make demo", "cp deploy/", "export SLOTSYNC_ENVIRONMENT")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``slotsync demo`` on spare ports; yields its host:port once ``$find`` answers."""
    directory = tmp_path_factory.mktemp("demo")
    port, sandbox_port = free_port(), free_port()
    env = process_env({"SLOTSYNC_DATA_DIR": str(directory / "data")})
    command = slotsync("demo", "--port", str(port), "--sandbox-port", str(sandbox_port))
    demo = spawn("demo", command, env=env, log=directory / "demo.log")
    try:
        demo.wait_for_http(f"http://127.0.0.1:{port}/fhir/metadata", timeout=120, headers=KEY)
        yield f"127.0.0.1:{port}"
    finally:
        demo.stop(timeout=20)


def test_the_walkthrough_runs_and_every_answer_is_valid_fhir(demo: str, tmp_path: Path) -> None:
    record = tmp_path / "responses.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "examples/consumer_walkthrough.py",
            "--base-url",
            f"http://{demo}/fhir",
            "--record",
            str(record),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [json.loads(line) for line in record.read_text().splitlines()]
    assert [s["step"] for s in steps] == [
        "capabilities",
        "find",
        "register patient",
        "hold",
        "book",
        "patient's appointments",
        "read appointment",
        "cancel",
    ]
    for step in steps:
        body = step["body"]
        get_fhir_model_class(body["resourceType"]).model_validate(body)
    by_step = {s["step"]: s for s in steps}
    assert by_step["find"]["body"]["total"] > len(by_step["find"]["body"]["entry"]) - 1
    assert by_step["register patient"]["status"] in (200, 201)
    assert by_step["hold"]["status"] == 201
    held = by_step["hold"]["body"]["entry"][0]["resource"]
    booked = by_step["book"]["body"]["entry"][0]["resource"]
    assert held["status"] == "pending" and booked["status"] == "booked"
    assert held["id"] == booked["id"] == by_step["read appointment"]["body"]["id"]
    assert by_step["cancel"]["body"]["status"] == "cancelled"
    for line in ("held Appointment/", "booked Appointment/", "is cancelled", "Done:"):
        assert line in done.stdout


def _readme_shell_blocks() -> list[str]:
    readme = (REPO / "README.md").read_text()
    return re.findall(r"```sh\n(.*?)```", readme, re.S)


def _demo_blocks() -> list[str]:
    return [b for b in _readme_shell_blocks() if not b.lstrip().startswith(NOT_RUN_HERE)]


def test_every_readme_shell_block_is_run_or_named() -> None:
    run = _demo_blocks()
    assert len(run) >= 2, "the README shows how to call the demo"
    for block in run:
        assert DEMO in block, f"neither run against the demo nor named as not run:\n{block}"


@pytest.mark.parametrize("block", _demo_blocks())
def test_readme_example_answers(demo: str, block: str) -> None:
    script = "set -euo pipefail\n" + block.replace(DEMO, demo)
    script = script.replace(".venv/bin/python", sys.executable)
    done = subprocess.run(
        ["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    if "/smart/" in block:  # the SMART Scheduling Links feed: a manifest and NDJSON lines
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        assert lines, "the feed answered nothing"
        for body in lines:
            if "transactionTime" in body:
                assert body["output"] and body["error"] == [], done.stdout[:500]
            else:
                get_r4_model_class(body["resourceType"]).model_validate(body)
                assert body["resourceType"] != "OperationOutcome", done.stdout[:500]
    elif "curl" in block:  # a FHIR answer with offers, not an error or an empty page
        body = json.loads(done.stdout)
        get_fhir_model_class(body["resourceType"]).model_validate(body)
        assert body["resourceType"] == "Bundle" and body["total"] > 0, done.stdout[:500]
