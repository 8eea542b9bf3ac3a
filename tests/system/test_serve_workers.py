"""``slotsync serve --workers 2`` for real: JSON logs, metrics summed over workers, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.cache.migrate import upgrade
from app.settings import DEMO_API_KEY
from benchmarks.processes import Child, free_port, process_env, slotsync
from benchmarks.stacks import start_api
from tests.factories import T0_DAY, T0_NEXT_DAY


def test_two_workers_share_metrics_and_stop_cleanly(tmp_path: Path, redis_url: str):
    api, base, log_path = _serve(tmp_path, redis_url)
    try:
        headers = {"X-API-Key": DEMO_API_KEY}
        find = f"{base}/fhir/Appointment/$find?start={T0_DAY}&end={T0_NEXT_DAY}"
        with httpx.Client(timeout=10) as client:
            for i in range(8):
                response = client.get(find, headers={**headers, "X-Request-ID": f"req-{i}"})
                assert response.status_code == 200
                assert response.headers["x-request-id"] == f"req-{i}"
            # a worker records a request just after answering it: allow it a moment
            key = (("method", "GET"), ("route", "/fhir/Appointment/$find"), ("status", "200"))
            deadline = time.monotonic() + 10
            while True:
                text = client.get(f"{base}/metrics", headers=headers).text
                samples = {
                    (s.name, tuple(sorted(s.labels.items()))): s.value
                    for family in text_string_to_metric_families(text)
                    for s in family.samples
                }
                total = samples.get(("slotsync_http_requests_total", key), 0)
                if total >= 8 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        assert total == 8
    finally:
        code = api.stop()
    assert code == 0
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "slotsync.access"]
    assert {line["request_id"] for line in access} >= {f"req-{i}" for i in range(8)}
    assert all(isinstance(line["pid"], int) for line in access)  # which worker answered
    assert any("Finished server process" in line["message"] for line in lines)
    assert not any("color_message" in line for line in lines)


def _serve(tmp_path: Path, redis_url: str, workers: int = 2) -> tuple[Child, str, Path]:
    """``slotsync serve`` on a fresh SQLite cache, JSON logs to a file, once it answers.

    With a broker: several API processes never run tasks or periodic jobs themselves."""
    upgrade(f"sqlite:///{tmp_path / 'cache.sqlite3'}")
    env = process_env(
        {
            "SLOTSYNC_DATA_DIR": str(tmp_path),
            "SLOTSYNC_LOG_FORMAT": "json",
            "SLOTSYNC_REDIS_URL": redis_url,
        }
    )
    log_path = tmp_path / "server.log"
    api = start_api(env, workers=workers, log=log_path, timeout=60)
    return api, api.url, log_path


def _pids_answering(base: str, log_path: Path, tag: str, connections: int) -> set[int]:
    """Open ``connections`` connections at once (as a client's pool does), one request on
    each (one the access log records at INFO); the pids of the workers that answered."""
    port = int(base.rsplit(":", 1)[1])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    try:
        for n, sock in enumerate(socks):
            request = f"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nX-Request-ID: {tag}-{n}\r\n\r\n"
            sock.sendall(request.encode())
        for sock in socks:
            assert sock.recv(65536).startswith(b"HTTP/1.1 ")
    finally:
        for sock in socks:
            sock.close()
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]
        tagged = [x for x in lines if str(x.get("request_id") or "").startswith(f"{tag}-")]
        if len(tagged) >= connections or time.monotonic() > deadline:
            return {x["pid"] for x in tagged}
        time.sleep(0.1)


def _started_pids(log_path: Path, count: int) -> set[int]:
    """The pids of the first ``count`` workers that finished starting (waits for them)."""
    deadline = time.monotonic() + 60
    while True:
        lines = [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]
        pids = {x["pid"] for x in lines if "Application startup complete" in x["message"]}
        if len(pids) >= count or time.monotonic() > deadline:
            return pids
        time.sleep(0.1)


def test_connections_opened_together_are_spread_over_the_workers(
    tmp_path: Path, redis_url: str
) -> None:
    """Each worker accepts on its own socket, and bursts of new connections reach
    every worker (the kernel spreads them). A worker that dies is replaced."""
    api, base, log_path = _serve(tmp_path, redis_url)
    try:
        workers = _started_pids(log_path, 2)
        assert len(workers) == 2
        for n in range(5):
            assert _pids_answering(base, log_path, f"burst{n}", 16) == workers
        dead = min(workers)
        os.kill(dead, signal.SIGKILL)
        replaced = _started_pids(log_path, 3) - {dead}
        assert len(replaced) == 2  # the survivor and a new worker
        assert _pids_answering(base, log_path, "after", 16) == replaced
    finally:
        assert api.stop() == 0


def test_embedded_mode_refuses_several_workers(tmp_path: Path) -> None:
    """Without a broker each API process would run its own tasks and periodic jobs."""
    env = process_env({"SLOTSYNC_DATA_DIR": str(tmp_path)})
    done = subprocess.run(
        slotsync("serve", "--port", str(free_port()), "--workers", "2"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "SLOTSYNC_REDIS_URL" in done.stderr
