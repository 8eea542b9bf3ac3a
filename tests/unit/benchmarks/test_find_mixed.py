"""The mixed ``$find`` workload: one broad request in five, each kind cycling through
all of its own start days (a workload that repeated one window would flatter the figure)."""

from __future__ import annotations

from datetime import date, timedelta

from benchmarks.find import best_rate, broad, mixed_requests, parse_wrk, typical


def _days(n: int, first: date = date(2027, 1, 4)) -> list[date]:
    return [first + timedelta(days=k) for k in range(n)]


def test_one_request_in_five_is_broad_and_every_start_day_is_asked() -> None:
    typical_days, broad_days = _days(80), _days(55)
    requests = mixed_requests(typical_days, broad_days)
    broad_asked = [r for r in requests if r in [broad(d) for d in broad_days]]
    typical_asked = [r for r in requests if r in [typical(d) for d in typical_days]]
    assert len(broad_asked) + len(typical_asked) == len(requests)
    assert len(broad_asked) * 5 == len(requests)
    assert all(requests[k] in broad_asked for k in range(4, len(requests), 5))
    assert {dict(r)["start"] for r in broad_asked} == {d.isoformat() for d in broad_days}
    assert {dict(r)["start"] for r in typical_asked} == {d.isoformat() for d in typical_days}


WRK_SLOW = """Running 10s test @ http://127.0.0.1:8000
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52s   301.22ms   2.10s    75.00%
  Latency Distribution
     50%    1.41s
     75%    1.80s
     90%    2.00s
     99%    1.20m
  14 requests in 10.01s, 5.31MB read
  Socket errors: connect 0, read 0, write 0, timeout 3
Requests/sec:      1.40
Transfer/sec:    543.21KB
"""


def test_wrk_timeouts_count_as_errors_and_every_unit_is_read() -> None:
    level = parse_wrk(WRK_SLOW)
    assert level["n"] == 14 and level["requests_per_second"] == 1.4
    assert level["p50_ms"] == 1410.0 and level["p99_ms"] == 72_000.0
    assert level["timeouts"] == 3 and level["errors"] == 3


def test_the_best_rate_skips_levels_that_failed_timed_out_or_ran_nothing() -> None:
    levels = [
        {"n": 500, "errors": 0, "p99_ms": 20.0, "requests_per_second": 300.0},
        {"n": 900, "errors": 0, "p99_ms": 45.0, "requests_per_second": 450.0},
        {"n": 950, "errors": 2, "p99_ms": 30.0, "requests_per_second": 470.0},
        {"n": 0, "errors": 0, "p99_ms": 0.0, "requests_per_second": 0.0},
        {"n": 990, "errors": 0, "p99_ms": None, "requests_per_second": 495.0},
        {"n": 999, "errors": 0, "p99_ms": 80.0, "requests_per_second": 499.0},
    ]
    assert best_rate(levels, 50.0) == 450.0
    assert best_rate(levels, 100.0) == 499.0
    assert best_rate(levels[3:5], 100.0) == 0.0
