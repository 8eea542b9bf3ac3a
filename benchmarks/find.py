"""$find: latency and throughput from the cache, against the bare SQL read and the EHR.

Real processes: the sandbox EHR (``--size`` slots), PostgreSQL and Redis of their
own, ``slotsync resync`` loading the whole horizon, and the API as production runs
it (``slotsync serve --workers N``, uvicorn). Then, for a *typical* request (one
visit type, one specialty, 7 days, ``_count`` 20) and a *broad* one (every visit
type and provider, 30 days, ``_count`` 100):

- single client: p50/p95/p99 over ``--requests`` sequential requests, cycling
  through every start day whose answer is full (``_count`` offers), so that no two
  consecutive requests are the same and none is cheap for being empty; on the
  connection that asked each window first, so that they are mostly served again from
  the answer memo, as steady traffic is;
- concurrent clients on loopback (wrk when installed, else asyncio httpx, which
  takes far more of the two cores from the server): throughput and latency at each
  level of ``--clients``; the throughput reported is the best level whose p99 <= 100 ms;
- mixed: the same levels over a workload of both kinds, one broad request in 5;
  reported is the best level whose p99 <= 50 ms (issue #24's target: >= 1,500 req/s);
- composed: each window's first request in each API process, single client: none is
  served from the answer memo (:mod:`app.availability.answer_memo`), which serves the
  repeats above while the slots, claims, rules and minute are the same; how the
  answers were made over the whole run (memo, composed, ahead) is in
  ``answer_sources``;
- explain on: the typical request with ``_explain=true`` (single client, a quarter
  of ``--requests``), reported apart from the figures above, which are explain off;
- bare SQL: the cache read the request would need without the in-memory index
  (free, unclaimed slots of the same schedules and window), timed with psycopg;
- EHR in real time (Use Case 2 style): the same window fetched from the EHR's
  ``Slot/$prefetch`` (specialty-filtered, all pages) and composed with the same
  rules, which is what answering without a prefetch cache costs;
- the machine: a fixed CPU loop timed before the measuring and the CPU the host took
  during it (:mod:`benchmarks.machine`), to tell a slow machine from slow code.

Targets (issue #6/#9): typical p99 <= 50 ms single client, >= 300 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg

from app.availability.catalog import CatalogCache
from app.availability.params import parse_find_query
from app.availability.service import MAX_SLOT_LENGTH, qualifying_service_types, relevant_schedules
from app.cache.db import make_engine, transaction
from app.core.domain import SNOMED, VISIT_TYPE_SYSTEM, Actor, Schedule, Slot
from app.ehr.client import EhrClient
from app.settings import DEMO_API_KEY, Settings
from rules.appointment_id import encode
from rules.composer import compose, slot_fetch_window
from rules.loader import RulesStore
from sandbox_ehr.process import start_sandbox

from .machine import cpu_during, cpu_probe_ms
from .processes import MemorySampler, free_port, run_slotsync
from .stacks import stack

TARGET_P99_MS = 50.0
TARGET_RPS = 300.0
THROUGHPUT_P99_MS = 100.0
# issue #24: the mixed workload, one broad request in 5, >= 1,500 req/s with p99 <= 50 ms
MIXED_BROAD_EVERY = 5
WRK_TIMEOUT_S = 60
MIXED_P99_MS = 50.0
TARGET_MIXED_RPS = 1500.0
# Every request takes gzip, as consumer apps' HTTP clients ask by default (httpx,
# requests, okhttp, browsers): answers the API keeps come as it keeps them, gzip-coded
# (app.api.encoding). wrk does not decode them; httpx does, in the client's time.
ACCEPT_ENCODING = "gzip"
HEADERS = {
    "X-API-Key": DEMO_API_KEY,
    "Accept": "application/fhir+json",
    "Accept-Encoding": ACCEPT_ENCODING,
}
FAMILY_PRACTICE = f"{SNOMED}|419772000"
OFFICE_VISIT = f"{VISIT_TYPE_SYSTEM}|office-visit"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=1_000_000, help="sandbox slots (approximate)")
    p.add_argument("--horizon-days", type=int, default=90)
    p.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    p.add_argument("--requests", type=int, default=200, help="single-client requests per kind")
    p.add_argument("--clients", default="1,2,4,8,16", help="concurrency levels")
    p.add_argument("--seconds", type=float, default=10.0, help="per concurrency level")
    p.add_argument("--ehr-samples", type=int, default=10, help="real-time EHR requests")
    p.add_argument(
        "--offer-memo-max-offers",
        type=int,
        default=None,
        help="the API's SLOTSYNC_OFFER_MEMO_MAX_OFFERS (default: the setting's); at 10M slots"
        " the horizon holds more offers than the default bound",
    )


def typical(day: date) -> list[tuple[str, str]]:
    return [
        ("start", day.isoformat()),
        ("end", (day + timedelta(days=7)).isoformat()),
        ("visit-type", OFFICE_VISIT),
        ("specialty", FAMILY_PRACTICE),
        ("_count", "20"),
    ]


def broad(day: date) -> list[tuple[str, str]]:
    return [
        ("start", day.isoformat()),
        ("end", (day + timedelta(days=30)).isoformat()),
        ("_count", "100"),
    ]


KINDS = {"typical": (typical, 7), "broad": (broad, 30)}


def _days(first: date, span: int, horizon_days: int) -> list[date]:
    """Start days that keep the window inside the horizon, cycled through by requests."""
    return [first + timedelta(days=n) for n in range(max(1, horizon_days - span - 2))]


def _full_days(base: str, kind: str, days: list[date]) -> list[date]:
    """The start days whose answer is full (``_count`` offers): a window past the
    rules' booking horizon answers almost nothing, fast, and would flatter the
    figures."""
    with _client(base) as client:
        return _first_asked(client, kind, days)[0]


def _client(base: str) -> httpx.Client:
    """One keep-alive connection: every request of it reaches the same API process."""
    return httpx.Client(base_url=base, headers=HEADERS, timeout=120)


def _first_asked(
    client: httpx.Client, kind: str, days: list[date]
) -> tuple[list[date], list[float]]:
    """:func:`_full_days`, and how long each window's first request took (ms): none
    was asked before, so each was composed, not served from the answer memo."""
    build = KINDS[kind][0]
    full: list[date] = []
    timings: list[float] = []
    for day in days:
        params = build(day)
        count = int(dict(params)["_count"])
        t0 = time.perf_counter()
        response = client.get("/fhir/Appointment/$find", params=tuple(params))
        timings.append((time.perf_counter() - t0) * 1000)
        response.raise_for_status()
        if response.json().get("total", 0) >= count:
            full.append(day)
    if not full:
        raise RuntimeError(f"no {kind} request window gets a full answer")
    return full, timings


def answer_sources(base: str) -> dict[str, int]:
    """How the API's $find answers were made, over all its processes (``/metrics``):
    served again from the answer memo, composed for the request, or made ahead."""
    with httpx.Client(base_url=base, headers=HEADERS, timeout=30) as client:
        text = client.get("/metrics").text
    return {
        source: int(float(value))
        for source, value in re.findall(
            r'^slotsync_find_answers_total\{source="(\w+)"\} ([\d.e+]+)$', text, re.M
        )
    }


def percentiles(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]

    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(at(95), 2),
        "p99_ms": round(at(99), 2),
        "max_ms": round(ordered[-1], 2),
    }


def _single_client(
    client: httpx.Client,
    kind: str,
    days: list[date],
    n: int,
    extra: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    build = KINDS[kind][0]
    timings: list[float] = []
    offers: list[int] = []
    for i in range(n):
        params = build(days[i % len(days)]) + list(extra)
        t0 = time.perf_counter()
        response = client.get("/fhir/Appointment/$find", params=tuple(params))
        timings.append((time.perf_counter() - t0) * 1000)
        response.raise_for_status()
        offers.append(response.json().get("total", 0))
    return {**percentiles(timings), "mean_offers": round(statistics.mean(offers), 1)}


def _run_async(
    base: str, requests: list[list[tuple[str, str]]], clients: int, seconds: float
) -> dict[str, Any]:
    return {**asyncio.run(_concurrent(base, requests, clients, seconds)), "generator": "httpx"}


async def _concurrent(
    base: str, requests: list[list[tuple[str, str]]], clients: int, seconds: float
) -> dict[str, Any]:
    timings: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def one_client(client: httpx.AsyncClient, offset: int) -> None:
        nonlocal errors
        i = offset
        while time.perf_counter() < deadline:
            params = requests[i % len(requests)]
            i += clients
            t0 = time.perf_counter()
            response = await client.get("/fhir/Appointment/$find", params=tuple(params))
            timings.append((time.perf_counter() - t0) * 1000)
            errors += response.status_code != 200

    async with httpx.AsyncClient(
        base_url=base, headers=HEADERS, timeout=60, limits=limits
    ) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one_client(client, k) for k in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "requests_per_second": round(len(timings) / elapsed, 1),
        "errors": errors,
        **percentiles(timings),
    }


WRK_SCRIPT = """
local paths = {%s}
local n = 0
%s
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n %% #paths) + 1])
end
"""


def _concurrent_wrk(
    base: str, requests: list[list[tuple[str, str]]], clients: int, seconds: float
) -> dict[str, Any]:
    """The concurrent level with wrk (C, a fraction of the client CPU an asyncio
    client needs on the same two cores), cycling through the same requests."""
    paths = [f"/fhir/Appointment/$find?{httpx.QueryParams(tuple(params))}" for params in requests]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in HEADERS.items())
        script.write(WRK_SCRIPT % (", ".join(f'"{p}"' for p in paths), headers))
    duration = max(1, round(seconds))
    # wrk drops a request that takes longer than its timeout (2 s by default) from every
    # figure: at 10M slots whole levels read "0 requests/s, p99 0 ms". A minute keeps
    # them measured, and the ones that still time out count as errors.
    command = [
        "wrk", "-t1", f"-c{clients}", f"-d{duration}s", "--timeout", f"{WRK_TIMEOUT_S}s",
        "--latency", "-s", script.name, base,
    ]  # fmt: skip
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as wrk:
            time.sleep(duration / 2)
            spread = _connections_per_process(int(base.rsplit(":", 1)[1]))
            out, _ = wrk.communicate(timeout=seconds + 60)
        if wrk.returncode:
            raise subprocess.CalledProcessError(wrk.returncode, command, out)
    finally:
        Path(script.name).unlink()
    return {"clients": clients, **parse_wrk(out), "connections_per_worker": spread}


def parse_wrk(out: str) -> dict[str, Any]:
    """wrk's ``--latency`` report as figures; requests that timed out count as errors."""
    latency = {
        q: _ms(value, unit)
        for q, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)$", out, re.M)
    }
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    timeouts = re.search(r"Socket errors:.*timeout (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    timed_out = int(timeouts.group(1)) if timeouts else 0
    return {
        "generator": "wrk",
        "requests_per_second": float(rate.group(1)) if rate else 0.0,
        "errors": (int(errors.group(1)) if errors else 0) + timed_out,
        "timeouts": timed_out,
        "n": int(total.group(1)) if total else 0,
        "p50_ms": latency.get("50"),
        "p90_ms": latency.get("90"),
        "p99_ms": latency.get("99"),
    }


def _levels(
    base: str, requests: list[list[tuple[str, str]]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """One concurrent level per ``--clients`` entry, cycling through ``requests``."""
    level = _concurrent_wrk if shutil.which("wrk") else _run_async
    return [level(base, requests, int(c), args.seconds) for c in args.clients.split(",")]


def mixed_requests(
    typical_days: list[date], broad_days: list[date], broad_every: int = MIXED_BROAD_EVERY
) -> list[list[tuple[str, str]]]:
    """The mixed workload's cycle: every ``broad_every``-th request broad, the others
    typical, each kind cycling through its own full start days."""
    n = max(len(typical_days), len(broad_days) * (broad_every - 1)) * broad_every
    out: list[list[tuple[str, str]]] = []
    t = b = 0
    for i in range(n):
        if i % broad_every == broad_every - 1:
            out.append(broad(broad_days[b % len(broad_days)]))
            b += 1
        else:
            out.append(typical(typical_days[t % len(typical_days)]))
            t += 1
    return out


def _mixed(base: str, full_days: dict[str, list[date]], args: argparse.Namespace) -> dict[str, Any]:
    """Typical and broad requests together (one broad in ``MIXED_BROAD_EVERY``), at each
    concurrency level: the throughput a consumer app's traffic gets, where a few
    "anything next month?" requests share the processes with many narrow ones."""
    levels = _levels(base, mixed_requests(full_days["typical"], full_days["broad"]), args)
    return {
        "broad_share": round(1 / MIXED_BROAD_EVERY, 2),
        "concurrent": levels,
        "throughput_at_p99_50ms": best_rate(levels, MIXED_P99_MS),
    }


def best_rate(levels: list[dict[str, Any]], p99_ms: float) -> float:
    """The highest requests/s among the levels whose p99 stays within ``p99_ms`` with
    no failed or timed-out request; 0 when none does."""
    fit = [
        lv["requests_per_second"]
        for lv in levels
        if lv.get("n") and not lv["errors"] and (lv["p99_ms"] or 1e9) <= p99_ms
    ]
    return max(fit, default=0.0)


def _connections_per_process(port: int) -> list[int] | None:
    """How the load generator's connections sit on the API's worker processes, mid-run
    (``ss``): the kernel spreads new connections over the workers' ``SO_REUSEPORT``
    sockets by a hash of the addresses, so a few keep-alive connections can land
    unevenly, and the busier worker then runs on one core while the other idles. The
    figure explains such a level."""
    try:
        out = subprocess.run(
            ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    pids = re.findall(r"pid=(\d+)", out)
    return sorted(Counter(pids).values(), reverse=True) or None


def _ms(value: str, unit: str) -> float:
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit], 2)


def _bare_sql(db_url: str, params: list[tuple[str, str]], n: int) -> dict[str, Any]:
    """The window read without the index, as the previous implementation issued it."""
    settings_rules = RulesStore(Settings().effective_rules_path).current
    engine = make_engine(db_url)
    with transaction(engine) as session:
        catalog = CatalogCache().get(session)
    engine.dispose()
    request = parse_find_query(params).request
    now = datetime.now(UTC)
    start, end = slot_fetch_window(request, settings_rules, now)
    ids = relevant_schedules(
        request, catalog.schedules.values(), qualifying_service_types(request, settings_rules)
    )
    query = (
        'SELECT s.id, s.schedule_id, s.start, s."end", cs.service_types::text,'
        " cs.specialties::text, cs.appointment_types::text"
        " FROM slots s JOIN code_sets cs ON cs.id = s.code_set_id WHERE s.schedule_id = ANY(%s)"
        ' AND s.start >= %s AND s.start < %s AND s."end" > %s AND s.status = %s'
        " AND NOT EXISTS (SELECT 1 FROM slot_claims c WHERE c.slot_id = s.id"
        " AND c.expires_at > %s) ORDER BY s.start, s.id"
    )
    args = (ids, start - MAX_SLOT_LENGTH, end, start, "free", now)
    timings: list[float] = []
    rows = 0
    dsn = db_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn) as conn:
        for _ in range(n):
            t0 = time.perf_counter()
            rows = len(conn.execute(query, args).fetchall())
            timings.append((time.perf_counter() - t0) * 1000)
    return {**percentiles(timings), "rows": rows, "schedules": len(ids)}


def _ehr_realtime(ehr_base: str, days: list[date], n: int) -> dict[str, Any]:
    """Use Case 2 style: ask the EHR for the window's free slots (every schedule, all
    pages, with their schedules and actors), then compose with the same rules."""
    rules = RulesStore(Settings().effective_rules_path).current
    sign = partial(encode, secret=b"benchmark-only-proposal-secret!!")
    client = EhrClient(ehr_base, fhir_version="stu3", page_size=1000)
    timings: list[float] = []
    slots_read = 0
    try:
        for i in range(n):
            request = parse_find_query(typical(days[i % len(days)])).request
            now = datetime.now(UTC)
            t0 = time.perf_counter()
            start, end = slot_fetch_window(request, rules, now)
            slots: list[Slot] = []
            schedules: dict[str, Schedule] = {}
            actors: dict[str, Actor] = {}
            for page in client.window_pages(start, end, None):
                slots += page.slots
                schedules.update((s.id, s) for s in page.schedules)
                actors.update((a.ref, a) for a in page.actors)
            compose(request, rules, slots, schedules, actors, now, sign)
            timings.append((time.perf_counter() - t0) * 1000)
            slots_read = len(slots)
    finally:
        client.close()
    return {**percentiles(timings), "slots_fetched": slots_read}


def _wait_warm(base: str, workers: int, timeout: float = 900.0) -> None:
    """Every API process reports its slot index warm (asked until each has answered)."""
    deadline = time.monotonic() + timeout
    streak = 0
    with httpx.Client(base_url=base, headers=HEADERS, timeout=30) as client:  # ops detail
        while time.monotonic() < deadline:
            detail = client.get("/readyz").json()["checks"]["slot-index"]["detail"]
            streak = streak + 1 if detail.startswith("warm:") else 0
            if streak >= 8 * workers:
                return
            time.sleep(0.25)
    raise TimeoutError("the API's slot index did not warm up")


def run(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first_day = datetime.now(UTC).date() + timedelta(days=1)
    with start_sandbox(
        size=args.size,
        fhir_version="stu3",
        page_size=1000,
        extra_args=("--horizon-days", str(args.horizon_days)),
        ready_timeout=600.0,
    ) as sandbox:
        extra = {"SLOTSYNC_HORIZON_DAYS": str(args.horizon_days), "SLOTSYNC_LOG_LEVEL": "WARNING"}
        if args.offer_memo_max_offers is not None:
            extra["SLOTSYNC_OFFER_MEMO_MAX_OFFERS"] = str(args.offer_memo_max_offers)
        with stack(
            ehr_base_url=sandbox.base_url, fhir_version="stu3", extra=extra, api_port=port
        ) as running:
            db_url = running.settings.effective_database_url
            t0 = time.perf_counter()
            run_slotsync("resync", env=running.env, timeout=1800, check=True, log_level="WARNING")
            load_seconds = time.perf_counter() - t0
            with psycopg.connect(db_url.replace("+psycopg", "")) as conn:
                cached = conn.execute("SELECT count(*) FROM slots").fetchone()
            api = running.start_api(workers=args.workers)
            t0 = time.perf_counter()
            _wait_warm(base, args.workers)
            warm_seconds = time.perf_counter() - t0
            results: dict[str, Any] = {}
            full_days: dict[str, list[date]] = {}
            probe = cpu_probe_ms()
            with (
                MemorySampler(api.pid) as memory,
                cpu_during() as cpu,
                _client(base) as client,
            ):
                for kind, (build, span) in KINDS.items():
                    # the single client on the connection of the first requests: the
                    # process answering has each window's answer once, as steady
                    # traffic leaves it (the other meets them in the levels below)
                    days, first = _first_asked(
                        client, kind, _days(first_day, span, args.horizon_days)
                    )
                    single = _single_client(client, kind, days, args.requests)
                    full_days[kind] = days
                    levels = _levels(base, [build(day) for day in days], args)
                    sql = _bare_sql(db_url, build(days[len(days) // 2]), 20)
                    results[kind] = {
                        "start_days": len(days),
                        # every window's first request: composed
                        "composed_single_client": percentiles(first),
                        "single_client": single,
                        "concurrent": levels,
                        "throughput_at_p99_100ms": best_rate(levels, THROUGHPUT_P99_MS),
                        "bare_sql": sql,
                        "find_p50_over_sql_p50": round(
                            single["p50_ms"] / max(sql["p50_ms"], 0.001), 2
                        ),
                    }
                results["mixed"] = _mixed(base, full_days, args)
                results["answer_sources"] = answer_sources(base)
            # a probe before is a moment: with one after too, a machine that slowed
            # down (or sped up) during the run shows
            probe_after = cpu_probe_ms()
            days = full_days["typical"]
            # $find?_explain=true (issue #21): a pass of its own, measured apart; the
            # figures above are explain off, the path every consumer takes
            with _client(base) as client:
                results["typical"]["explain_on_single_client"] = _single_client(
                    client, "typical", days, max(1, args.requests // 4), (("_explain", "true"),)
                )
            ehr = _ehr_realtime(sandbox.base_url, days, args.ehr_samples)
            results["typical"]["ehr_realtime"] = ehr
            results["typical"]["ehr_p50_over_find_p50"] = round(
                ehr["p50_ms"] / max(results["typical"]["single_client"]["p50_ms"], 0.001), 1
            )
    typical_result = results["typical"]
    return {
        "sandbox_size": args.size,
        "slots_cached": cached[0] if cached else 0,
        "load_seconds": round(load_seconds, 1),
        "api_workers": args.workers,
        "accept_encoding": ACCEPT_ENCODING,
        "offer_memo_max_offers": args.offer_memo_max_offers
        or Settings.model_fields["offer_memo_max_offers"].default,
        "api_warm_up_seconds": round(warm_seconds, 1),
        "api_memory": memory.as_json(),
        # the machine's own speed at the time (benchmarks.machine): tells a slow run of
        # the machine from a slow run of the code
        "machine": {"cpu_probe_ms": probe, "cpu_probe_after_ms": probe_after, "cpu": cpu or None},
        **results,
        "targets": {
            "typical_p99_ms": TARGET_P99_MS,
            "typical_requests_per_second": TARGET_RPS,
            "mixed_requests_per_second_at_p99_50ms": TARGET_MIXED_RPS,
        },
        "meets_targets": {
            "typical_p99": typical_result["single_client"]["p99_ms"] <= TARGET_P99_MS,
            "typical_throughput": typical_result["throughput_at_p99_100ms"] >= TARGET_RPS,
            "mixed_throughput": results["mixed"]["throughput_at_p99_50ms"] >= TARGET_MIXED_RPS,
        },
    }
