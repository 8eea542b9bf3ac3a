"""The A/B benchmark's verdict: the per-round difference and its bootstrap interval."""

from __future__ import annotations

import random

from benchmarks.find_ab import paired_difference


def test_arms_that_differ_only_by_noise_get_an_interval_holding_zero() -> None:
    rng = random.Random(1)
    a = [5 + rng.gauss(0, 1) for _ in range(400)]
    b = [5 + rng.gauss(0, 1) for _ in range(400)]
    verdict = paired_difference(a, b, seed=3)
    assert verdict["ci95_low_ms"] < 0 < verdict["ci95_high_ms"]


def test_a_slower_arm_gets_an_interval_above_zero() -> None:
    rng = random.Random(2)
    a = [5 + rng.gauss(0, 1) for _ in range(400)]
    b = [x + 0.8 + rng.gauss(0, 0.2) for x in a]
    verdict = paired_difference(a, b, seed=3)
    assert 0 < verdict["ci95_low_ms"] <= verdict["median_ms"] <= verdict["ci95_high_ms"]
    assert abs(verdict["median_ms"] - 0.8) < 0.1
