"""``POST /admin/rules/apply`` against ``slotsync serve --workers 2``: after a valid apply
every API process answers ``$find`` under the new rules; an invalid one changes nothing
in any process. Each answer is tied to the process that gave it through the JSON access
log (its pid, by request id)."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import yaml

from app.cache.db import make_engine
from app.cache.migrate import upgrade
from app.settings import DEMO_API_KEY
from app.sync.load import load_window
from benchmarks.processes import process_env
from benchmarks.stacks import start_api
from tests.integration.test_find_api import BASE, OFFICE, RULES, WINDOW, slot
from tests.integration.test_load_window import ScriptedEhr, client_for
from tests.system.test_serve_workers import _started_pids

HEADERS = {"X-API-Key": DEMO_API_KEY}
LONGER = {
    **RULES,
    "visit_types": [{**RULES["visit_types"][0], "duration_minutes": 30, "join_contiguous": True}],
}
BROKEN = yaml.safe_dump(
    {**RULES, "visit_types": [{**RULES["visit_types"][0], "duration_minutes": -1}]}
)


def _burst(base: str, log_path: Path, tag: str, requests: int = 16) -> dict[int, set[int]]:
    """``requests`` $find requests at once, each on a new connection (so that they reach
    every worker); worker pid -> the appointment lengths (minutes) it answered with."""
    answers: dict[str, set[int]] = {}

    def one(n: int) -> None:
        with httpx.Client(timeout=20) as client:
            bundle = client.get(
                f"{base}/fhir/Appointment/$find",
                params={**WINDOW, "visit-type": OFFICE},
                headers={**HEADERS, "X-Request-ID": f"{tag}-{n}"},
            ).json()
        answers[f"{tag}-{n}"] = {
            e["resource"]["minutesDuration"]
            for e in bundle["entry"]
            if e["search"]["mode"] == "match"
        }

    threads = [threading.Thread(target=one, args=(n,)) for n in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]
        pids = {
            x["request_id"]: x["pid"]
            for x in lines
            if x["logger"] == "slotsync.access" and x.get("request_id") in answers
        }
        if len(pids) == len(answers) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    out: dict[int, set[int]] = {}
    for request_id, lengths in answers.items():
        out.setdefault(pids[request_id], set()).update(lengths)
    return out


def _every_worker(base: str, log_path: Path, workers: set[int], tag: str) -> dict[int, set[int]]:
    """A burst that reached every worker (bursts are spread by the kernel; retried)."""
    for attempt in range(5):
        seen = _burst(base, log_path, f"{tag}{attempt}")
        if set(seen) == workers:
            return seen
    raise AssertionError(f"no burst reached every worker {workers}: {seen}")


def test_apply_reaches_every_worker_and_an_invalid_file_none(tmp_path: Path, redis_url: str):
    db_url = f"sqlite:///{tmp_path / 'cache.sqlite3'}"
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        load_window(
            engine,
            client_for(ScriptedEhr([slot(i) for i in range(8)])),
            BASE - timedelta(hours=1),
            BASE + timedelta(days=1),
        )
    finally:
        engine.dispose()
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(RULES))
    env = process_env(
        {
            "SLOTSYNC_DATA_DIR": str(tmp_path),
            "SLOTSYNC_DATABASE_URL": db_url,
            "SLOTSYNC_RULES_PATH": str(rules_path),
            "SLOTSYNC_LOG_FORMAT": "json",
            "SLOTSYNC_REDIS_URL": redis_url,
        }
    )
    log_path = tmp_path / "server.log"
    api = start_api(env, workers=2, log=log_path, timeout=60)
    try:
        workers = _started_pids(log_path, 2)
        assert len(workers) == 2
        base = api.url
        before = _every_worker(base, log_path, workers, "before")
        assert all(lengths == {15} for lengths in before.values()), before

        with httpx.Client(base_url=base, headers=HEADERS, timeout=20) as client:
            refused = client.post(
                "/admin/rules/apply",
                content=BROKEN,
                headers={"Content-Type": "application/yaml"},
            )
            assert refused.status_code == 422, refused.text
            time.sleep(1.2)  # past every process's change check
            assert all(v == {15} for v in _every_worker(base, log_path, workers, "bad").values())
            assert yaml.safe_load(rules_path.read_text()) == RULES

            applied = client.post(
                "/admin/rules/apply",
                content=yaml.safe_dump(LONGER),
                headers={"Content-Type": "application/yaml"},
            )
            assert applied.status_code == 200, applied.text
        time.sleep(1.2)  # the other worker notices the new file at its next check
        after = _every_worker(base, log_path, workers, "after")
        assert set(after) == workers
        assert all(lengths == {30} for lengths in after.values()), after
    finally:
        assert api.stop() == 0
