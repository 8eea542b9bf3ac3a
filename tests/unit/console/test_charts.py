"""The console's SVG line charts: scaled into the plot, broken over gaps, labelled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.console.charts import HEIGHT, LEFT, RIGHT, TOP, WIDTH, line_chart

END = datetime(2026, 12, 4, 12, tzinfo=UTC)
START = END - timedelta(hours=24)
BOTTOM = HEIGHT - 22


def coordinates(points: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (p.split(",") for p in points.split())]


def test_points_span_the_plot_from_zero_to_a_round_top() -> None:
    chart = line_chart("slots", [(START, 0.0), (END, 800.0)], start=START, end=END, gap_seconds=1e9)
    assert chart.top_label == "1000"  # 800 rounds up to a 1-2-5 step
    assert chart.latest == "800"
    [line] = chart.lines
    (x0, y0), (x1, y1) = coordinates(line)
    assert (x0, y0) == (LEFT, BOTTOM)
    assert x1 == WIDTH - RIGHT
    assert y1 == TOP + (BOTTOM - TOP) * 0.2


def test_a_pause_in_the_samples_or_a_missing_value_breaks_the_line() -> None:
    five = timedelta(minutes=5)
    points: list[tuple[datetime, float | None]] = [
        (START, 1.0),
        (START + five, 2.0),  # one stretch
        (START + timedelta(hours=2), 3.0),
        (START + timedelta(hours=2) + five, 3.0),  # after a gap
        (START + timedelta(hours=3), None),
        (START + timedelta(hours=3) + five, 4.0),  # a lone sample still shows
    ]
    chart = line_chart("lag", points, start=START, end=END, unit="s")
    assert len(chart.lines) == 3
    assert [len(coordinates(line)) for line in chart.lines] == [2, 2, 2]
    assert chart.samples == 5


def test_no_samples_draw_nothing_and_say_so() -> None:
    chart = line_chart("lag", [], start=START, end=END, unit="s")
    assert chart.lines == [] and chart.latest == "no data"


def test_seconds_read_as_minutes_and_hours() -> None:
    chart = line_chart("lag", [(END, 5400.0)], start=START, end=END, unit="s")
    assert chart.latest == "1.5 h"
    assert chart.top_label == "2.78 h"  # 10000 s
