"""Figures against cache size as a standalone SVG: panels side by side, a logarithmic
size axis (10k, 100k, 1M, 10M sit evenly apart), one marked point per measured size
with a bar from the least to the greatest run, and a line through the medians.

No chart library (the project has none, and the README needs only a file GitHub
shows); app/console/charts.py draws against time for a live page, this one against
size for a committed picture. The output depends only on its input, so a test can
keep the committed SVG equal to a rendering of the committed result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from .repeats import Figure

PANEL_W, PLOT_TOP, PLOT_H = 320, 34, 190
LEFT, RIGHT, PAD = 44, 14, 14
LEGEND_ROW = 15
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: Sequence[tuple[int, Figure]]  # (size, figure); a None median is a gap


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    unit: str
    series: Sequence[Series]
    log: bool = False  # a logarithmic value axis, for figures that span decades


def size_label(size: int) -> str:
    if size >= 1_000_000 and size % 1_000_000 == 0:
        return f"{size // 1_000_000}M"
    if size >= 1000 and size % 1000 == 0:
        return f"{size // 1000}k"
    return f"{size:,}"


def _value_label(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _nice(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value``."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value * (1 - 1e-9):
            return step * power
    return 10 * power


def _values(panel: Panel) -> list[float]:
    out: list[float] = []
    for series in panel.series:
        for _, fig in series.points:
            out.extend(v for v in (fig.median, fig.low, fig.high) if v is not None and v > 0)
    return out


class _Axis:
    """Maps sizes and values of one panel to pixels."""

    def __init__(self, panel: Panel, sizes: Sequence[int], x0: float) -> None:
        self.x0, self.x1 = x0 + LEFT + PAD, x0 + PANEL_W - RIGHT - PAD
        self.lo_size, self.hi_size = math.log10(min(sizes)), math.log10(max(sizes))
        self.y0, self.y1 = PLOT_TOP + PLOT_H, PLOT_TOP
        values = _values(panel) or [1.0]
        self.log = panel.log
        if self.log:
            self.lo = 10.0 ** math.floor(math.log10(min(values)))
            self.hi = 10.0 ** math.ceil(math.log10(max(values)))
            if self.hi <= self.lo:
                self.hi = self.lo * 10
            decades = round(math.log10(self.hi / self.lo))
            self.ticks = [self.lo * 10.0**d for d in range(decades + 1)]
        else:
            self.lo, self.hi = 0.0, _nice(max(values))
            self.ticks = [0.0, self.hi / 2, self.hi]

    def x(self, size: int) -> float:
        span = self.hi_size - self.lo_size
        if span == 0:
            return (self.x0 + self.x1) / 2
        return self.x0 + (self.x1 - self.x0) * (math.log10(size) - self.lo_size) / span

    def y(self, value: float) -> float:
        if self.log:
            share = math.log10(max(value, self.lo) / self.lo) / math.log10(self.hi / self.lo)
        else:
            share = (value - self.lo) / (self.hi - self.lo)
        return self.y0 - (self.y0 - self.y1) * min(max(share, 0.0), 1.0)


def _panel(panel: Panel, sizes: Sequence[int], x0: float) -> list[str]:
    axis = _Axis(panel, sizes, x0)
    left, right = x0 + LEFT, x0 + PANEL_W - RIGHT
    heading = f"{panel.title}, {panel.unit}" if panel.unit else panel.title
    heading += " (log scale)" if panel.log else ""
    out = [
        f'<g class="panel" data-title={quoteattr(panel.title)}>',
        f'<text x="{left:.1f}" y="18" font-weight="bold">{escape(heading)}</text>',
        f'<rect x="{left:.1f}" y="{PLOT_TOP}" width="{right - left:.1f}" height="{PLOT_H}"'
        ' fill="none" stroke="#999"/>',
    ]
    for tick in axis.ticks:
        y = axis.y(tick)
        out.append(
            f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" stroke="#eee"/>'
        )
        out.append(
            f'<text x="{left - 4:.1f}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_value_label(tick)}</text>"
        )
    for size in sizes:
        x = axis.x(size)
        out.append(
            f'<text x="{x:.1f}" y="{PLOT_TOP + PLOT_H + 16}" text-anchor="middle">'
            f"{size_label(size)}</text>"
        )
    out.append(
        f'<text x="{(left + right) / 2:.1f}" y="{PLOT_TOP + PLOT_H + 32}"'
        ' text-anchor="middle">sandbox slots</text>'
    )
    for n, series in enumerate(panel.series):
        colour = COLOURS[n % len(COLOURS)]
        out.extend(_series(series, axis, colour))
        y = PLOT_TOP + PLOT_H + 52 + n * LEGEND_ROW
        out.append(
            f'<line x1="{left:.1f}" y1="{y - 4}" x2="{left + 18:.1f}" y2="{y - 4}"'
            f' stroke="{colour}" stroke-width="2"/>'
        )
        out.append(f'<text x="{left + 24:.1f}" y="{y}">{escape(series.name)}</text>')
    out.append("</g>")
    return out


def _series(series: Series, axis: _Axis, colour: str) -> list[str]:
    out = [f'<g class="series" data-series={quoteattr(series.name)}>']
    stretch: list[str] = []
    stretches: list[list[str]] = []
    for size, fig in sorted(series.points):
        if fig.median is None:
            stretches.append(stretch)
            stretch = []
            continue
        stretch.append(f"{axis.x(size):.1f},{axis.y(fig.median):.1f}")
    stretches.append(stretch)
    for points in stretches:
        if len(points) > 1:
            out.append(
                f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}"'
                ' stroke-width="2"/>'
            )
    for size, fig in sorted(series.points):
        if fig.median is None:
            continue
        x, y = axis.x(size), axis.y(fig.median)
        if fig.spread and fig.low is not None and fig.high is not None:
            y_lo, y_hi = axis.y(fig.low), axis.y(fig.high)
            out.append(
                f'<path d="M{x - 4:.1f},{y_lo:.1f}H{x + 4:.1f}M{x:.1f},{y_lo:.1f}V{y_hi:.1f}'
                f'M{x - 4:.1f},{y_hi:.1f}H{x + 4:.1f}" stroke="{colour}" class="spread"/>'
            )
            spread = f" (runs: {fig.low:,}-{fig.high:,})"
        else:
            spread = ""
        tip = f"{series.name} at {size:,} slots: {fig.median:,}{spread}"
        out.append(
            f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"'
            f' data-size="{size}" data-value="{fig.median}"><title>{escape(tip)}</title></circle>'
        )
    out.append("</g>")
    return out


def render(panels: Sequence[Panel], caption: str = "") -> str:
    """The SVG document: ``panels`` side by side over the same sizes, ``caption`` under."""
    sizes = sorted({size for p in panels for s in p.series for size, _ in s.points}) or [1]
    rows = max((len(p.series) for p in panels), default=0)
    width = PANEL_W * max(len(panels), 1)
    caption_y = PLOT_TOP + PLOT_H + 52 + rows * LEGEND_ROW + 8
    height = caption_y + (14 if caption else 0)
    body: list[str] = []
    for n, panel in enumerate(panels):
        body.extend(_panel(panel, sizes, n * PANEL_W))
    if caption:
        body.append(f'<text x="8" y="{caption_y}" fill="#555">{escape(caption)}</text>')
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
            f' viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
            *body,
            "</svg>",
            "",
        ]
    )
