"""How fast the machine itself was while a benchmark measured: a probe kept with each run.

Why: the three runs of one commit's ``make bench`` once differed by nearly twice in
single-client ``$find`` latency while the bare SQL read beside them did not move, and
nothing in the result could tell a slow run of the code from a slow run of the
machine (another tenant on the host, a daemon on the 2 cores). So each ``$find`` run
records:

- ``cpu_probe_ms``: the time of a fixed pure-Python loop, the kind of work an API
  request does, taken just before the measuring starts (the median of a few short
  goes, so one preemption does not decide it). On a quiet machine it is the same from
  run to run; a run whose probe is well above its siblings' ran on a slower machine.
- ``cpu``: over the measured part, the shares of the machine's CPU time that went to
  ``steal`` (the hypervisor gave the core to another guest) and ``iowait``, from
  ``/proc/stat``; None where there is no such file.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PROC_STAT = Path("/proc/stat")
# /proc/stat's cpu line: user nice system idle iowait irq softirq steal (then guests,
# which user already counts)
_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
PROBE_LOOPS = 200_000
PROBE_GOES = 7


def _loop(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def cpu_probe_ms(loops: int = PROBE_LOOPS, goes: int = PROBE_GOES) -> float:
    """The median time, in ms, of ``goes`` runs of a fixed loop on this thread."""
    times = []
    for _ in range(goes):
        t0 = time.perf_counter()
        _loop(loops)
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def cpu_times(stat: Path = PROC_STAT) -> dict[str, int] | None:
    """The machine's CPU time so far by kind, in clock ticks (None: no /proc/stat)."""
    try:
        first = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if first[0] != "cpu":
        return None
    return dict(zip(_FIELDS, map(int, first[1 : 1 + len(_FIELDS)]), strict=False))


def shares(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, Any] | None:
    """The shares of the CPU time between two readings that each kind took (0-1)."""
    if before is None or after is None:
        return None
    spent = {k: after.get(k, 0) - before.get(k, 0) for k in _FIELDS}
    total = sum(spent.values())
    if total <= 0:
        return None
    busy = total - spent["idle"] - spent["iowait"]
    return {
        "busy_share": round(busy / total, 3),
        "steal_share": round(spent["steal"] / total, 4),
        "iowait_share": round(spent["iowait"] / total, 4),
    }


@contextmanager
def cpu_during(stat: Path = PROC_STAT) -> Iterator[dict[str, Any]]:
    """A dict filled, when the block ends, with :func:`shares` over the block."""
    found: dict[str, Any] = {}
    before = cpu_times(stat)
    try:
        yield found
    finally:
        found.update(shares(before, cpu_times(stat)) or {})
