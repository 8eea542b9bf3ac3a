"""Line charts as server-rendered SVG geometry: no chart library, no script, so the
console's Content-Security-Policy stays strict and the page works on a locked-down
network. The template draws the polyline and labels this module works out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

WIDTH, HEIGHT = 600, 160
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 10, 22


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    unit: str
    lines: list[str]  # SVG polyline "points", one per unbroken stretch of samples
    top_label: str
    latest: str
    samples: int
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


def _nice(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value``."""
    if value <= 0:
        return 1.0
    power = 1.0
    while power * 10 <= value:
        power *= 10
    while power > value:
        power /= 10
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _label(value: float, unit: str) -> str:
    if unit == "s" and value >= 3600:
        return f"{value / 3600:.3g} h"
    if unit == "s" and value >= 60:
        return f"{value / 60:.3g} min"
    if value >= 1_000_000:
        return f"{value / 1_000_000:.3g} M{unit and ' ' + unit}"
    if value >= 10_000:
        return f"{value / 1000:.3g} k{unit and ' ' + unit}"
    shown = f"{value:.0f}" if value >= 100 else f"{value:.3g}"
    return f"{shown}{unit and ' ' + unit}"


def line_chart(
    title: str,
    points: Sequence[tuple[datetime, float | None]],
    *,
    start: datetime,
    end: datetime,
    unit: str = "",
    gap_seconds: float = 900,
) -> Chart:
    """``points`` in time order over [start, end]; a missing value or a pause longer than
    ``gap_seconds`` between samples breaks the line rather than drawing over the gap."""
    values = [v for _, v in points if v is not None]
    top = _nice(max(values, default=0.0))
    span = max((end - start).total_seconds(), 1.0)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    lines: list[str] = []
    current: list[str] = []
    previous: datetime | None = None
    for moment, value in points:
        broken = previous is not None and (moment - previous).total_seconds() > gap_seconds
        if value is None or broken:
            if len(current) > 1:
                lines.append(" ".join(current))
            current = []
        if value is not None:
            x = LEFT + inner_w * min(max((moment - start).total_seconds() / span, 0.0), 1.0)
            y = TOP + inner_h * (1 - value / top)
            current.append(f"{x:.1f},{y:.1f}")
        previous = moment
    if len(current) > 1:
        lines.append(" ".join(current))
    elif len(current) == 1:  # a lone sample: a short flat stroke, so it shows
        lone_x, lone_y = current[0].split(",")
        lines.append(f"{float(lone_x) - 2:.1f},{lone_y} {float(lone_x) + 2:.1f},{lone_y}")
    latest = next((v for _, v in reversed(points) if v is not None), None)
    return Chart(
        title=title,
        unit=unit,
        lines=lines,
        top_label=_label(top, unit),
        latest=_label(latest, unit) if latest is not None else "no data",
        samples=len(values),
    )
