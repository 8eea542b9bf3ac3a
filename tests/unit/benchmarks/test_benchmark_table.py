"""The benchmark suite's results table: every part shows, failures say so."""

from __future__ import annotations

from benchmarks.suite import table


def test_the_table_lists_each_size_and_marks_failed_parts() -> None:
    results = {
        "load": {
            "100000": {"slots_per_second": 15234, "wall_seconds": 6.1, "peak_rss_total_mb": 120.5}
        },
        "find": {"100000": {"error": "TimeoutError: the API's slot index did not warm up"}},
        "freshness": {"notifications": {"all": {"p50_ms": 140.2, "p99_ms": 310.0}}},
    }
    text = table(results)
    assert "| initial load, 100,000-slot EHR: slots/s | 15,234 |" in text
    assert "| $find typical, 100,000: p50 / p99 single client | failed / not run |" in text
    assert "| freshness (notifications): p50 / p99 | 140.2 / 310.0 ms |" in text
