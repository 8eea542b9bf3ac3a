"""The benchmark chart is an SVG document any viewer parses, with one marked point per
measured size in every series, and a bar for the spread where several runs measured it."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

from benchmarks.chart import Panel, Series, render
from benchmarks.repeats import Figure

SVG = "{http://www.w3.org/2000/svg}"
SIZES = [10_000, 100_000, 1_000_000, 10_000_000]


def _points(root: ET.Element, series: str) -> list[ET.Element]:
    group = next(
        g for g in root.iter(f"{SVG}g") if g.get("data-series") == series
    )  # the series' own group
    return list(group.iter(f"{SVG}circle"))


def test_the_chart_is_valid_svg_with_one_point_per_size() -> None:
    latency = Series("typical p99", [(s, Figure(s / 1e5, s / 2e5, s / 5e4, 3)) for s in SIZES])
    rate = Series("initial load", [(s, Figure(10_000.0, 9_000.0, 11_000.0, 3)) for s in SIZES])
    text = render(
        [Panel("$find <p99>", "ms", [latency], log=True), Panel("load", "slots/s", [rate])],
        caption="from bench-x.json & scale-y.json",
    )
    root = ET.fromstring(text)  # raises on anything that is not well-formed XML
    assert root.tag == f"{SVG}svg"
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    for name in ("typical p99", "initial load"):
        points = _points(root, name)
        assert sorted(int(p.get("data-size", "0")) for p in points) == SIZES
    # x follows the size, on a log axis: 10k, 100k, 1M, 10M evenly apart
    xs = sorted(float(p.get("cx", "0")) for p in _points(root, "initial load"))
    gaps = {round(b - a, 1) for a, b in itertools.pairwise(xs)}
    assert len(gaps) == 1
    # a bar from the least to the greatest run at every point
    assert len(root.findall(f".//{SVG}path[@class='spread']")) == 2 * len(SIZES)


def test_a_size_without_a_figure_is_a_gap_and_one_run_has_no_bar() -> None:
    series = Series(
        "broad p99",
        [
            (10_000, Figure(20.0, 20.0, 20.0, 1)),
            (100_000, Figure(None, None, None, 0)),  # that part failed
            (1_000_000, Figure(500.0, 500.0, 500.0, 1)),
        ],
    )
    root = ET.fromstring(render([Panel("latency", "ms", [series], log=True)]))
    assert [p.get("data-size") for p in _points(root, "broad p99")] == ["10000", "1000000"]
    assert root.findall(f".//{SVG}polyline") == []  # no line drawn across the gap
    assert root.findall(f".//{SVG}path[@class='spread']") == []
