"""How the costs grow with the cache: the load and ``$find`` parts of a ``make bench``
result per size, joined by larger sizes from a ``scale`` result (10M slots), as the
README's growth table, its chart, and what the figures predict for 100M slots.

Every number here is worked out from a committed result file; the predictions are
formulas over its medians, and the README prints the formula beside the number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .chart import Panel, Series, size_label
from .repeats import Figure, figure, normalize

TARGET_SIZE = 100_000_000
MIB = 1024 * 1024

# (series name, part, path into one run's result) per chart panel
LATENCY = (
    ("typical p50", "find", ("typical", "single_client", "p50_ms")),
    ("typical p99", "find", ("typical", "single_client", "p99_ms")),
    ("broad p50", "find", ("broad", "single_client", "p50_ms")),
    ("broad p99", "find", ("broad", "single_client", "p99_ms")),
)
LOAD_RATE = (("initial load", "load", ("slots_per_second",)),)
MEMORY = (
    ("worker, all processes", "load", ("peak_rss_total_mb",)),
    ("API, largest process", "find", ("api_memory", "peak_rss_largest_process_mb")),
    ("API, all processes", "find", ("api_memory", "peak_rss_total_mb")),
)


@dataclass(frozen=True, slots=True)
class Size:
    """One size of the curve: its load and ``$find`` parts and the file they came from."""

    size: int
    load: dict[str, Any] | None
    find: dict[str, Any] | None
    source: str

    def fig(self, part: str, *path: str) -> Figure:
        return figure(getattr(self, part), *path)

    def median(self, part: str, *path: str) -> float | None:
        return self.fig(part, *path).median


def curve(sources: list[tuple[str, dict[str, Any]]]) -> list[Size]:
    """``sources``: (file name, result) with the ``make bench`` result first; a later
    source adds only sizes beyond those before it (a ``scale`` run's 10M)."""
    out: list[Size] = []
    for name, result in sources:
        largest = max((s.size for s in out), default=0)
        keys = {int(k) for part in ("load", "find") for k in (result.get(part) or {})}
        for size in sorted(k for k in keys if k > largest):
            load = (result.get("load") or {}).get(str(size))
            find = (result.get("find") or {}).get(str(size))
            out.append(
                Size(
                    size=size,
                    load=None if load is None else normalize(load),
                    find=None if find is None else normalize(find),
                    source=name,
                )
            )
    return out


def panels(sizes: list[Size]) -> list[Panel]:
    def series(specs: tuple[tuple[str, str, tuple[str, ...]], ...]) -> list[Series]:
        return [
            Series(name, [(s.size, s.fig(part, *path)) for s in sizes])
            for name, part, path in specs
        ]

    return [
        Panel("$find, single client", "ms", series(LATENCY), log=True),
        Panel("initial load rate", "slots/s", series(LOAD_RATE)),
        Panel("peak RSS", "MB", series(MEMORY)),
    ]


def _f(value: float | None, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f}{unit}"
    return f"{value:,.{digits}f}{unit}"


def _pair(a: float | None, b: float | None, unit: str) -> str:
    return f"{_f(a)} / {_f(b)}{unit}" if a is not None and b is not None else "-"


def table(sizes: list[Size]) -> str:
    """One row per size; "x prev" compares with the row above, so a linear load shows the
    size's factor in both columns (and a flat time per slot)."""
    rows = [
        "| sandbox slots | slots loaded | load wall (x prev) | load slots/s | load time per"
        " slot | worker peak RSS | `$find` typical p50 / p99 | `$find` broad p50 / p99 |"
        " API RSS per process | EHR page (slots) | from |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    previous: Size | None = None
    for s in sizes:
        loaded = s.median("load", "slots_loaded")
        wall = s.median("load", "wall_seconds")
        ratio = ""
        if previous is not None and wall is not None:
            before = previous.median("load", "wall_seconds")
            if before:
                ratio = f" (x{wall / before:.1f} for x{s.size / previous.size:g} slots)"
        per_slot = f"{wall / loaded * 1e6:,.0f} µs" if wall and loaded else "-"
        rows.append(
            f"| {s.size:,} | {_f(loaded)} | {_f(wall, ' s')}{ratio} |"
            f" {_f(s.median('load', 'slots_per_second'))} | {per_slot} |"
            f" {_f(s.median('load', 'peak_rss_total_mb'), ' MB')} |"
            f" {_pair(s.median('find', 'typical', 'single_client', 'p50_ms'), s.median('find', 'typical', 'single_client', 'p99_ms'), ' ms')} |"  # noqa: E501
            f" {_pair(s.median('find', 'broad', 'single_client', 'p50_ms'), s.median('find', 'broad', 'single_client', 'p99_ms'), ' ms')} |"  # noqa: E501
            f" {_f(s.median('find', 'api_memory', 'peak_rss_largest_process_mb'), ' MB')} |"
            f" {_f(s.median('load', 'page_size'))} |"
            f" `{s.source.rsplit('/', 1)[-1]}` |"
        )
        previous = s
    return "\n".join(rows)


def _duration(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def _ms(value: float) -> str:
    return f"{value / 1000:,.1f} s" if value >= 10_000 else f"{value:,.0f} ms"


def _per_decade(small: float, large: float, decades: float) -> float:
    """The factor per 10x slots that takes ``small`` to ``large`` over ``decades``."""
    return float((large / small) ** (1 / decades))


def predictions(sizes: list[Size], target: int = TARGET_SIZE) -> list[str]:
    """What the smallest and largest measured sizes predict for ``target`` slots, each
    line with its formula; a figure missing at either end leaves its line out."""
    measured = [s for s in sizes if s.median("load", "slots_loaded")]
    if len(measured) < 2:
        return [f"(needs load results at two sizes to extrapolate to {target:,} slots)"]
    a, b = measured[0], measured[-1]
    big, tag = target, size_label(target)
    decades = math.log10(b.size / a.size)
    ahead = math.log10(big / b.size)
    loaded_b = b.median("load", "slots_loaded") or 0.0
    share = loaded_b / b.size
    free = big * share
    lines = [
        f"Slots to hold at {tag}: {free:,.0f} free in the horizon ({tag} x {share:.3f},"
        f" the share of free slots loaded at {size_label(b.size)}); each one row of"
        " PostgreSQL's `slots` table, its indexes and an entry in every API process's index."
    ]
    rate = b.median("load", "slots_per_second")
    if rate:
        seconds = free / rate
        lines.append(
            f"Initial load at {tag}: {_duration(seconds)} for one worker process at the"
            f" {size_label(b.size)} rate ({free:,.0f} / {rate:,.0f} slots/s); w workers on"
            f" w hosts: {_duration(seconds)} / w, while the EHR and PostgreSQL keep up."
        )
    api_a = a.median("find", "api_memory", "peak_rss_largest_process_mb")
    api_b = b.median("find", "api_memory", "peak_rss_largest_process_mb")
    cached_a, cached_b = a.median("find", "slots_cached"), b.median("find", "slots_cached")
    if api_a and api_b and cached_a is not None and cached_b and cached_b > cached_a:
        per_slot = (api_b - api_a) * MIB / (cached_b - cached_a)
        at_big = api_b + per_slot * (free - cached_b) / MIB
        lines.append(
            f"API memory per process at {tag}: {at_big / 1024:,.1f} GiB ="
            f" {api_b:,.0f} MB at {size_label(b.size)} + {per_slot:,.0f} bytes per slot"
            f" (({api_b:,.0f} - {api_a:,.0f}) MB / ({cached_b:,.0f} - {cached_a:,.0f}) slots)"
            f" x {free - cached_b:,.0f} more slots; every replica holds the whole index."
        )
    for kind in ("typical", "broad"):
        p_a = a.median("find", kind, "single_client", "p99_ms")
        p_b = b.median("find", kind, "single_client", "p99_ms")
        if p_a and p_b and decades > 0:
            factor = _per_decade(p_a, p_b, decades)
            lines.append(
                f"`$find` {kind} p99 at {tag}: {_ms(p_b * factor**ahead)}, if it keeps"
                f" growing x{factor:.2f} per 10x slots as from {size_label(a.size)} to"
                f" {size_label(b.size)} ({p_a:g} -> {p_b:g} ms)."
            )
    w_a, w_b = a.median("load", "peak_rss_total_mb"), b.median("load", "peak_rss_total_mb")
    if w_a and w_b and decades > 0:
        factor = _per_decade(w_a, w_b, decades)
        lines.append(
            f"Worker peak RSS at {tag}: {w_b * factor**ahead:,.0f} MB, at x{factor:.2f} per"
            f" 10x slots as from {size_label(a.size)} to {size_label(b.size)}"
            f" ({w_a:g} -> {w_b:g} MB); a load holds pages, not the whole cache."
        )
    rps = b.median("find", "typical", "throughput_at_p99_100ms")
    if rps:
        lines.append(
            f"`$find` throughput: {rps:,.0f} typical requests/s with p99 <= 100 ms at"
            f" {size_label(b.size)} from one API host (2 workers on the benchmark's 2 cores,"
            " shared with PostgreSQL and the load generator); R requests/s need about"
            f" R / {rps:,.0f} such replicas behind the load balancer."
        )
    return lines
