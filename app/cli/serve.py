"""Run the API as several uvicorn worker processes, each accepting on its own socket.

Why not uvicorn's own ``--workers``: its workers share one listening socket, and a
worker's event loop (uvloop) accepts every pending connection each time it wakes.
A client that opens a few keep-alive connections at once (a backend's connection
pool, a load generator) then often gets all of them on one worker, which serves
them on one core while the other workers idle: measured with wrk on two workers,
2, 4 and 8 connections all sat on one worker in one run of the benchmark, halving
throughput. Here each worker listens on its own ``SO_REUSEPORT`` socket and the
kernel spreads new connections over them (by a hash of the addresses), so they
are spread independently of which worker wakes first.

The supervisor is deliberately small: start the workers, restart one that dies,
and on SIGTERM/SIGINT stop them all (each shuts down gracefully, as uvicorn does).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import time
from typing import Any

import uvicorn

log = logging.getLogger("slotsync.serve")

POLL_SECONDS = 0.2
STARTUP_FAILURE = 3  # as uvicorn exits when it cannot start


def reuse_port_supported() -> bool:
    """Linux spreads connections over ``SO_REUSEPORT`` sockets (other systems may not)."""
    return hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` that other workers' sockets may share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def serve(config: dict[str, Any], workers: int) -> int:
    """Run ``uvicorn.Config(**config)`` in ``workers`` processes until stopped."""
    if workers < 2 or not reuse_port_supported():
        uvicorn.run(**config, workers=workers)
        return 0
    try:  # fail now, in the supervisor, if something else holds the port
        listening_socket(config["host"], config["port"]).close()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", config["host"], config["port"], exc)
        return STARTUP_FAILURE
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    def start(n: int) -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker, args=(config,), name=f"slotsync-api-{n}")
        process.start()
        return process

    processes = [start(n) for n in range(workers)]
    log.info("serving on %s:%d with %d workers", config["host"], config["port"], workers)
    try:
        while not stopping:
            time.sleep(POLL_SECONDS)
            for n, process in enumerate(processes):
                if not process.is_alive() and not stopping:
                    log.warning("worker %d exited (code %s); starting another", n, process.exitcode)
                    processes[n] = start(n)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn shuts down gracefully
        grace = float(config.get("timeout_graceful_shutdown") or 30) + 5
        deadline = time.monotonic() + grace
        for process in processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _worker(config: dict[str, Any]) -> None:
    """One worker process: its own socket, one uvicorn server."""
    server_config = uvicorn.Config(**config)
    sock = listening_socket(server_config.host, server_config.port)
    uvicorn.Server(server_config).run(sockets=[sock])
