"""The README's performance blocks and chart are renderings of committed result files:
the newest full ``make bench`` result (1M slots, not ``--quick``), joined by a ``scale``
result's larger sizes, so no figure in them is typed in."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from benchmarks import readme_blocks
from benchmarks.bench_readme import (
    block_content,
    chart_path,
    chart_svg,
    growth_content,
    newest,
    newest_scale,
    sizes,
)
from benchmarks.growth import predictions, table
from benchmarks.repeats import aggregate

SVG = "{http://www.w3.org/2000/svg}"


def test_the_readme_performance_blocks_and_chart_are_the_newest_full_result() -> None:
    path = newest()
    assert path is not None, "a committed benchmarks/results/bench-*.json (make bench)"
    readme = readme_blocks.README.read_text()
    run = "run `python -m benchmarks bench-readme`"
    assert readme_blocks.current(readme, "bench") == readme_blocks.wrap(
        "bench", block_content(path)
    ), run
    assert readme_blocks.current(readme, "bench-growth") == readme_blocks.wrap(
        "bench-growth", growth_content(path, newest_scale())
    ), run
    assert chart_path(path).exists(), run
    assert chart_path(path).read_text() == chart_svg(path, newest_scale()), run
    assert f"]({chart_path(path).relative_to(readme_blocks.ROOT).as_posix()})" in readme


def _part(rate: int, rss: float, cached: int, page_size: int = 5000) -> dict:
    runs = [
        {
            "page_size": page_size,
            "slots_per_second": rate + d,
            "wall_seconds": round(cached / (rate + d), 2),
            "slots_loaded": cached,
            "peak_rss_total_mb": rss,
            "slots_cached": cached,
            "api_memory": {"peak_rss_largest_process_mb": rss * 2, "peak_rss_total_mb": rss * 4},
            "typical": {"single_client": {"p50_ms": 2.0, "p99_ms": 5.0 + d / 100}},
            "broad": {"single_client": {"p50_ms": 9.0, "p99_ms": 20.0}},
        }
        for d in (-100, 0, 100)
    ]
    return aggregate(runs)


def _write(path: Path, key: str, size_parts: dict[int, dict], **extra: object) -> Path:
    part = {str(s): p for s, p in size_parts.items()}
    path.write_text(json.dumps({key: {"load": part, "find": part, **extra}}))
    return path


def test_the_newest_full_result_wins_over_a_newer_smoke_run(tmp_path: Path) -> None:
    full = _write(
        tmp_path / "bench-2026-12-01T1000.json",
        "all",
        {10_000: _part(2_000, 120, 8_000), 1_000_000: _part(11_000, 200, 800_000)},
    )
    _write(tmp_path / "bench-2026-12-02T1000.json", "all", {10_000: _part(2_000, 120, 8_000)})
    _write(
        tmp_path / "bench-2026-12-03T1000.json",
        "all",
        {1_000_000: _part(11_000, 200, 800_000)},
        quick=True,
    )
    assert newest(tmp_path) == full


def test_the_growth_curve_takes_larger_sizes_from_the_scale_result(tmp_path: Path) -> None:
    bench = _write(
        tmp_path / "bench-2026-12-01T1000.json",
        "all",
        {
            10_000: _part(2_000, 120, 8_000),
            100_000: _part(9_000, 130, 80_000),
            1_000_000: _part(11_000, 200, 800_000),
        },
    )
    scale = _write(
        tmp_path / "scale-2026-12-02T1000.json",
        "scale",
        {10_000: _part(1, 1, 1), 10_000_000: _part(12_000, 260, 8_000_000, page_size=1000)},
    )
    curve = sizes(bench, scale)
    assert [s.size for s in curve] == [10_000, 100_000, 1_000_000, 10_000_000]
    assert curve[0].source.endswith("bench-2026-12-01T1000.json")  # not the scale's 10k
    assert curve[-1].source.endswith("scale-2026-12-02T1000.json")
    rows = table(curve).splitlines()
    assert len(rows) == 2 + 4
    assert rows[-1].startswith("| 10,000,000 | 8,000,000 | 667 s (x9.2 for x10 slots) |")
    # each row says the EHR page its load asked for: runs made with other pages differ
    assert rows[-2].endswith("| 5,000 | `bench-2026-12-01T1000.json` |")
    assert rows[-1].endswith("| 1,000 | `scale-2026-12-02T1000.json` |")
    lines = predictions(curve)
    # 100M x 0.8 free / 12,000 slots/s at 10M, one worker
    assert any(line.startswith("Initial load at 100M: 1.9 h") for line in lines), lines
    # API memory: (520 - 240) MB over 7,992,000 slots, 36.7 bytes a slot
    assert any("37 bytes per slot" in line for line in lines), lines


def test_a_repeated_result_shows_its_runs_rounds_and_chart(tmp_path: Path) -> None:
    path = tmp_path / "bench-2026-12-01T1000.json"
    parts = {"10000": _part(2_000, 120, 8_000), "1000000": _part(11_000, 200, 800_000)}
    result = {
        "sizes": [10_000, 1_000_000],
        "quick": False,
        "repeat": 3,
        "rounds": [{"round": n, "load_average_before": [n, 0.5, 0.2]} for n in (1, 2, 3)],
        "load": parts,
        "find": parts,
        "meta": {
            "command": "python -m benchmarks all --repeat 3",
            "commit": "abc1234",
            "cores": 2,
            "load_average_before": [1, 0.5, 0.2],
        },
    }
    path.write_text(json.dumps({"all": result}))
    text = block_content(path)
    assert "each figure the median of 3 runs, with the least and greatest run" in text
    assert "before each round: [1, 0.5, 0.2]; [2, 0.5, 0.2]; [3, 0.5, 0.2]" in text
    assert "| initial load, 1,000,000-slot EHR: slots/s | 11,000 | 10,900-11,100 |" in text
    assert f"]({chart_path(path).name})" in text
    root = ET.fromstring(chart_svg(path))
    sizes_drawn = {
        g.get("data-series"): sorted(int(c.get("data-size", "0")) for c in g.iter(f"{SVG}circle"))
        for g in root.iter(f"{SVG}g")
        if g.get("data-series")
    }
    assert sizes_drawn and all(v == [10_000, 1_000_000] for v in sizes_drawn.values())
