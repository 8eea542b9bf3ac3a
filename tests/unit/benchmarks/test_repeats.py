"""Several runs of one benchmark part become one figure: the median and the spread of
every number, the runs kept beside them, failed runs counted but not averaged in."""

from __future__ import annotations

from benchmarks.repeats import aggregate, figure, normalize


def _run(rate: int, p99: float, levels: list[float]) -> dict:
    return {
        "slots_per_second": rate,
        "profile": "sandbox",
        "single_client": {"p99_ms": p99},
        "concurrent": [{"clients": 1, "requests_per_second": r} for r in levels],
        "meets_target": rate >= 10_000,
    }


def test_each_number_becomes_the_median_and_its_least_and_greatest() -> None:
    runs = [
        _run(9_000, 30.5, [100.0, 200.0]),
        _run(12_000, 20.0, [90.0, 250.0]),
        _run(11_000, 25.25, [120.0, 180.0]),
    ]
    part = aggregate(runs)
    assert part["median"]["slots_per_second"] == 11_000
    assert (part["min"]["slots_per_second"], part["max"]["slots_per_second"]) == (9_000, 12_000)
    assert part["median"]["single_client"]["p99_ms"] == 25.25
    # lists of the same length aggregate element by element (one concurrency level each)
    assert [lv["requests_per_second"] for lv in part["median"]["concurrent"]] == [100.0, 200.0]
    assert [lv["requests_per_second"] for lv in part["max"]["concurrent"]] == [120.0, 250.0]
    # text and flags: what most runs said
    assert part["median"]["profile"] == "sandbox"
    assert part["median"]["meets_target"] is True
    assert part["runs"] == runs
    assert part["failed_runs"] == 0


def test_an_even_number_of_runs_takes_the_mean_of_the_middle_two() -> None:
    part = aggregate([{"x": 1.0}, {"x": 2.0}, {"x": 4.0}, {"x": 10.0}])
    assert part["median"]["x"] == 3.0


def test_a_failed_run_is_kept_and_counted_but_not_in_the_median() -> None:
    part = aggregate([{"x": 5}, {"error": "TimeoutError: no"}, {"x": 7}])
    assert part["median"]["x"] == 6
    assert part["failed_runs"] == 1
    assert figure(part, "x").runs == 2
    assert part["runs"][1] == {"error": "TimeoutError: no"}


def test_every_run_failed_leaves_the_first_error_and_no_figure() -> None:
    part = aggregate([{"error": "first"}, {"error": "second"}])
    assert part["error"] == "first"
    assert "median" not in part
    assert figure(part, "x").median is None


def test_an_older_single_run_result_reads_as_one_run_without_spread() -> None:
    old = {"slots_per_second": 11_668, "api_memory": {"peak_rss_total_mb": 1260.8}}
    fig = figure(old, "api_memory", "peak_rss_total_mb")
    assert (fig.median, fig.low, fig.high, fig.runs) == (1260.8, 1260.8, 1260.8, 1)
    assert not fig.spread
    assert normalize(old)["runs"] == [old]
    # a part already aggregated is left as it is
    part = aggregate([old, old])
    assert normalize(part) is part
    assert figure(part, "slots_per_second").spread
