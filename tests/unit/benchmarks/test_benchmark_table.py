"""The benchmark suite's results table: every part shows with its median and spread,
failures say so, and a result from before repetition still renders (as one run)."""

from __future__ import annotations

from benchmarks.repeats import aggregate
from benchmarks.suite import table


def test_the_table_lists_each_size_with_median_and_spread_and_marks_failed_parts() -> None:
    results = {
        "load": {
            "100000": aggregate(
                [
                    {"slots_per_second": 15234, "wall_seconds": 6.1, "peak_rss_total_mb": 120.5},
                    {"slots_per_second": 14000, "wall_seconds": 6.6, "peak_rss_total_mb": 121.0},
                    {"slots_per_second": 16010, "wall_seconds": 5.8, "peak_rss_total_mb": 119.9},
                ]
            )
        },
        "find": {"100000": aggregate([{"error": "TimeoutError: the index did not warm up"}])},
        "freshness": {
            "notifications": aggregate([{"all": {"p50_ms": 140.2, "p99_ms": 310.0}}]),
            "polling": aggregate(
                [
                    {"all": {"p99_ms": 5_000.0}},
                    {"error": "TimeoutError"},
                    {"all": {"p99_ms": 7_000.0}},
                ]
            ),
        },
    }
    text = table(results)
    assert "| initial load, 100,000-slot EHR: slots/s | 15,234 | 14,000-16,010 |" in text
    assert "| initial load, 100,000-slot EHR: wall | 6.1 s | 5.8-6.6 s |" in text
    assert (
        "| $find typical, 100,000: p99 single client | failed / not run | 1 of 1 runs failed |"
        in text
    )
    assert "| freshness (notifications): p99 | 310.0 ms | one run |" in text
    assert (
        "| freshness (polling): p99 | 6,000.0 ms | 5,000.0-7,000.0 ms; 1 of 3 runs failed |" in text
    )


def test_an_older_result_renders_as_one_run() -> None:
    old = {"load": {"10000": {"slots_per_second": 1851, "wall_seconds": 4.36}}}
    assert "| initial load, 10,000-slot EHR: slots/s | 1,851 | one run |" in table(old)


def test_the_mixed_workload_row_shows_only_where_it_was_measured() -> None:
    before = {"find": {"1000000": aggregate([{"typical": {"single_client": {"p99_ms": 5.0}}}])}}
    assert "mixed" not in table(before)
    mixed = {"broad_share": 0.2, "throughput_at_p99_50ms": 812.5}
    after = {"find": {"1000000": aggregate([{"mixed": mixed}, {"mixed": mixed}])}}
    assert "| $find mixed (1 broad in 5), 1,000,000: req/s at p99 <= 50 ms | 812.5 |" in table(
        after
    )


def test_the_machine_probe_rows_show_each_runs_spread_where_it_was_measured() -> None:
    runs = [
        {"machine": {"cpu_probe_ms": ms, "cpu": {"steal_share": steal}}}
        for ms, steal in ((12.5, 0.0), (19.8, 0.12), (12.7, 0.01))
    ]
    text = table({"find": {"1000000": aggregate(runs)}})
    assert (
        "| $find, 1,000,000: machine probe, a fixed CPU loop before the run | 12.7 ms"
        " | 12.5-19.8 ms |" in text
    )
    assert "| $find, 1,000,000: CPU stolen by the host during the run | 0.01 | 0.0-0.12 |" in text
    older = {"find": {"1000000": aggregate([{"typical": {"single_client": {"p99_ms": 5.0}}}])}}
    assert "machine probe" not in table(older)


def test_the_load_with_smaller_pages_shows_its_page_size_beside_the_main_load() -> None:
    def run(rate: int, wall: float, pages: int) -> dict[str, float]:
        return {"slots_per_second": rate, "wall_seconds": wall, "page_size": pages}

    results = {
        "load": {
            "1000000": aggregate([run(r, 810_000 / r, 5000) for r in (51_000, 49_000, 50_000)])
        },
        "load_small_pages": {"1000000": aggregate([run(38_000, 21.3, 1000)])},
    }
    text = table(results)
    assert "| initial load, 1,000,000-slot EHR: slots/s | 50,000 | 49,000-51,000 |" in text
    assert "| initial load, 1,000,000-slot EHR, 1,000-slot pages: slots/s | 38,000 |" in text
    assert "| initial load, 1,000,000-slot EHR, 1,000-slot pages: wall | 21.3 s |" in text
    assert "1,000-slot pages" not in table({"load": results["load"]})
