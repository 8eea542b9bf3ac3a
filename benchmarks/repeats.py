"""One figure from several runs: the median and the spread (min to max) of each number.

A benchmark on a shared 2-core machine moves by tens of percent from one run to the
next, so a single run says little. ``make bench`` repeats every part (``--repeat``,
default 3) and stores each part as::

    {"median": {...}, "min": {...}, "max": {...}, "runs": [{...}, ...], "failed_runs": 0}

where ``median``, ``min`` and ``max`` have the shape of one run's result with every
number replaced by the median, least and greatest over the runs that did not fail, and
``runs`` keeps each run's own figures. :func:`normalize` reads a part written before
repetition (one run's result itself) as one run, so older result files still render.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

VIEWS = ("median", "min", "max")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _median(values: Sequence[float]) -> float:
    middle = statistics.median(values)
    return round(middle, 2) if isinstance(middle, float) else middle


def _combine(values: list[Any], pick: Callable[[Sequence[float]], float]) -> Any:
    """``values`` are one path's leaves across runs (a run that lacks the path omitted)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(_is_number(v) for v in present):
        return pick(present)
    if all(isinstance(v, dict) for v in present):
        keys = list(dict.fromkeys(k for v in present for k in v))
        return {k: _combine([v[k] for v in present if k in v], pick) for k in keys}
    if all(isinstance(v, list) for v in present) and len({len(v) for v in present}) == 1:
        return [_combine([v[i] for v in present], pick) for i in range(len(present[0]))]
    # text, flags, or lists that differ in shape: what most runs said
    counted = Counter(repr(v) for v in present)
    winner = counted.most_common(1)[0][0]
    return next(v for v in present if repr(v) == winner)


def failed(run: Any) -> bool:
    return not isinstance(run, dict) or "error" in run


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median, min and max of every figure over ``runs``; failed runs are kept in
    ``runs`` and counted, not averaged in. Every run failed: the first one's error."""
    good = [r for r in runs if not failed(r)]
    part: dict[str, Any] = {}
    if good:
        part["median"] = _combine(good, _median)
        part["min"] = _combine(good, min)
        part["max"] = _combine(good, max)
    else:
        part["error"] = runs[0].get("error") if runs else "not run"
    part["runs"] = runs
    part["failed_runs"] = len(runs) - len(good)
    return part


def normalize(part: Any) -> dict[str, Any]:
    """A part in the repeated shape; an older file's part (one run's result) is one run."""
    if not isinstance(part, dict):
        return aggregate([])
    if "runs" in part and ("median" in part or "error" in part):
        return part
    return aggregate([part])


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of a part: its median and spread over ``runs`` good runs."""

    median: float | None
    low: float | None
    high: float | None
    runs: int
    failed: int = 0  # runs of the part that failed, left out of the figure

    @property
    def spread(self) -> bool:
        """Whether there is a spread to show: more than one run measured it."""
        return self.runs > 1 and self.low is not None and self.high is not None


def _get(data: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def figure(part: Any, *path: str) -> Figure:
    """The figure at ``path`` (keys into one run's result) of a part, either shape."""
    whole = normalize(part)
    values = {view: _get(whole.get(view), path) for view in VIEWS}
    usable = {k: v if _is_number(v) else None for k, v in values.items()}
    bad = int(whole.get("failed_runs", 0))
    good = len(whole.get("runs", [])) - bad
    return Figure(usable["median"], usable["min"], usable["max"], good, bad)
