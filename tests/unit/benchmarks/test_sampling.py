"""The samplers' skeleton: a sample on entry, in the thread while entered, and on exit."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

from benchmarks.load import CpuMeter
from benchmarks.processes import MemorySampler, Sampling


@dataclass
class Counting(Sampling):
    interval: float = 0.01
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        self.samples += 1


def test_a_run_shorter_than_the_interval_still_has_a_first_and_a_last_sample() -> None:
    with Counting(interval=60) as counting:
        pass
    assert counting.samples == 2


def test_samples_keep_coming_while_entered_and_stop_after() -> None:
    with Counting() as counting:
        time.sleep(0.2)
    seen = counting.samples
    assert seen > 5
    time.sleep(0.05)
    assert counting.samples == seen


def test_the_memory_sampler_and_the_cpu_meter_measure_this_process() -> None:
    with (
        MemorySampler(os.getpid(), interval=0.01) as memory,
        CpuMeter({"me": os.getpid()}, "no-such-database", interval=0.01) as cpu,
    ):
        sum(range(15_000_000))  # ~0.2 s of CPU: above the meter's 0.1 s rounding
    assert memory.as_json()["peak_rss_largest_process_mb"] > 10
    assert cpu.as_json()["me"] > 0
