"""Freshness: sandbox mutation -> notification (or poll) -> refresh -> ``$find`` shows it.

Real processes: the sandbox EHR (notifying our webhook), the API, a Celery worker
(and Celery beat for polling), Redis and PostgreSQL. Each sample books a slot that
``$find`` currently offers, then polls ``$find`` until no offer uses it; the next
frees it again and waits until an offer uses it again. ``--mode notifications``
(target: p99 <= 1 s) subscribes at the EHR; ``--mode polling`` does not, so the
watchdog's polling fallback is all that brings changes (bounded by the poll
interval, ``--poll-interval``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.orm import Session

from app.cache import feeds
from sandbox_ehr.process import start_sandbox

from .find import HEADERS
from .processes import free_port, wait_until
from .stacks import stack

TARGET_P99_SECONDS = 1.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=100_000, help="sandbox slots (approximate)")
    p.add_argument("--fhir-version", choices=("stu3", "r4"), default="stu3")
    p.add_argument(
        "--profile",
        choices=("sandbox", "plain-r4"),
        default="sandbox",
        help="plain-r4: a generic R4 server (no $prefetch, no notifications, _count capped"
        " at the page size); implies --fhir-version r4",
    )
    p.add_argument("--mutations", type=int, default=200, help="book + free mutations")
    p.add_argument("--horizon-days", type=int, default=30)
    p.add_argument("--pool", choices=("prefork", "threads"), default="threads")
    p.add_argument("--concurrency", type=int, default=3)
    p.add_argument("--poll-ms", type=float, default=10.0, help="$find polling interval")
    p.add_argument("--timeout", type=float, default=10.0, help="per mutation")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mode", choices=("notifications", "polling"), default="notifications")
    p.add_argument("--poll-interval", type=int, default=5, help="seconds, polling mode")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def _offered(api: httpx.Client, practitioner: str, day: str) -> dict[str, Any]:
    """Slot ids used by the offers of one practitioner on one day."""
    end = (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
    response = api.get(
        "/fhir/Appointment/$find",
        params={"practitioner": practitioner, "start": day, "end": end, "_count": "1000"},
    )
    response.raise_for_status()
    bundle = response.json()
    slots: dict[str, Any] = {}
    for entry in bundle.get("entry") or ():
        res = entry.get("resource") or {}
        if res.get("resourceType") != "Appointment":
            continue
        refs = [s["reference"].split("/")[-1] for s in res.get("slot") or ()]
        for ref in refs:
            slots[ref] = len(refs)
    return slots


def _mutate_and_wait(
    api: httpx.Client,
    control: httpx.Client,
    *,
    op: str,
    slot: str,
    practitioner: str,
    day: str,
    timeout: float,
    poll: float,
) -> float:
    """Seconds from sending the mutation until ``$find`` agrees with it."""
    want_offered = op == "free"
    started = time.perf_counter()
    control.post("/mutate", json={"op": op, "slot": slot}).raise_for_status()
    while (slot in _offered(api, practitioner, day)) != want_offered:
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{op} {slot} did not show in $find within {timeout}s")
        time.sleep(poll)
    return time.perf_counter() - started


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    port = free_port()
    if args.profile == "plain-r4":
        args.fhir_version = "r4"
        args.mode = "polling"  # a generic server sends no notifications
    with start_sandbox(
        size=args.size,
        fhir_version=args.fhir_version,
        profile=args.profile,
        max_count=1000 if args.profile == "plain-r4" else None,
        page_size=1000,
        extra_args=("--horizon-days", str(args.horizon_days)),
        ready_timeout=300.0,
    ) as sandbox:
        polling = args.mode == "polling"
        extra = {
            "SLOTSYNC_HORIZON_DAYS": str(args.horizon_days),
            "SLOTSYNC_WEBHOOK_SECRET": "freshness-benchmark",
            "SLOTSYNC_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "SLOTSYNC_EHR_PAGE_SIZE": "1000",
            "SLOTSYNC_EHR_SUBSCRIPTIONS": "false" if polling else "true",
            "SLOTSYNC_POLL_INTERVAL_SECONDS": str(args.poll_interval),
            "SLOTSYNC_WATCHDOG_SECONDS": "1",
        }
        with stack(
            ehr_base_url=sandbox.base_url,
            fhir_version=args.fhir_version,
            extra=extra,
            api_port=port,
        ) as running:
            running.start_api()
            running.start_worker(concurrency=args.concurrency, pool=args.pool)
            running.wait_workers(timeout=60)
            running.load(timeout=600)
            if polling:
                running.start_beat()
            else:
                running.celery.send_task("slotsync.subscribe")

                def live() -> bool:
                    with Session(running.engine) as session:
                        feeds_ = feeds.all_feeds(session)
                        return any(f.feed_state == "live" and f.endpoint for f in feeds_)

                wait_until(live, 600, "a live subscription", interval=0.2)
            # polling re-reads the next poll_near_days days (STU3): mutate inside them
            last_day = (
                min(args.horizon_days - 2, running.settings.poll_near_days - 1)
                if polling
                else args.horizon_days - 2
            )
            samples: dict[str, list[float]] = {"book": [], "free": []}
            control = httpx.Client(base_url=sandbox.control_url, timeout=30)
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers=HEADERS, timeout=30
            ) as api:
                today = datetime.now(UTC).date()
                poll = args.poll_ms / 1000
                while sum(map(len, samples.values())) < args.mutations:
                    practitioner = f"Practitioner/pr-{rng.randint(1, 20)}"
                    day = (
                        today + timedelta(days=rng.randint(min(3, last_day), last_day))
                    ).isoformat()
                    offered = _offered(api, practitioner, day)
                    singles = sorted(s for s, n in offered.items() if n == 1)
                    if not singles:
                        continue
                    slot = rng.choice(singles)
                    for op in ("book", "free"):
                        if polling:
                            # a change lands at a random moment of the poll cycle; straight
                            # after the last one was seen it would always wait a whole cycle
                            time.sleep(rng.uniform(0, args.poll_interval))
                        samples[op].append(
                            _mutate_and_wait(
                                api,
                                control,
                                op=op,
                                slot=slot,
                                practitioner=practitioner,
                                day=day,
                                timeout=args.timeout,
                                poll=poll,
                            )
                        )
            control.close()
    every = samples["book"] + samples["free"]

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "n": len(values),
            "p50_ms": round(statistics.median(values) * 1000, 1),
            "p90_ms": round(_percentile(values, 90) * 1000, 1),
            "p99_ms": round(_percentile(values, 99) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1),
        }

    p99 = _percentile(every, 99)
    return {
        "mode": args.mode,
        "poll_interval_seconds": args.poll_interval if args.mode == "polling" else None,
        "fhir_version": args.fhir_version,
        "profile": args.profile,
        "sandbox_size": args.size,
        "worker_pool": args.pool,
        "worker_concurrency": args.concurrency,
        "find_poll_interval_ms": args.poll_ms,
        "mutations": len(every),
        "all": summary(every),
        "book_to_gone": summary(samples["book"]),
        "free_to_offered": summary(samples["free"]),
        "target_p99_ms": TARGET_P99_SECONDS * 1000,
        "meets_target": p99 <= TARGET_P99_SECONDS if not polling else None,
    }
