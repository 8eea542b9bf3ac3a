"""The machine probe kept with each ``$find`` run: the CPU shares come from the
kernel's counters between two readings, and the loop timing is a real timing."""

from __future__ import annotations

from pathlib import Path

from benchmarks.machine import cpu_during, cpu_probe_ms, cpu_times, shares

# user nice system idle iowait irq softirq steal guest guest_nice
BEFORE = "cpu  1000 0 500 8000 100 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
AFTER = "cpu  1600 0 700 8800 200 0 0 300 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"


def test_the_shares_are_each_kinds_part_of_the_time_between_the_readings(tmp_path: Path) -> None:
    before, after = tmp_path / "before", tmp_path / "after"
    before.write_text(BEFORE)
    after.write_text(AFTER)
    # spent: user 600, system 200, idle 800, iowait 100, steal 300: 2000 ticks
    assert shares(cpu_times(before), cpu_times(after)) == {
        "busy_share": 0.55,
        "steal_share": 0.15,
        "iowait_share": 0.05,
    }


def test_no_counters_means_no_shares_not_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert cpu_times(missing) is None
    with cpu_during(missing) as found:
        pass
    assert found == {}
    assert shares(cpu_times(tmp_path / "x"), None) is None


def test_the_probe_times_the_loop_and_grows_with_it() -> None:
    short = cpu_probe_ms(loops=20_000, goes=3)
    long = cpu_probe_ms(loops=400_000, goes=3)
    assert 0 < short < long


def test_the_block_on_this_machine_reads_the_real_counters() -> None:
    assert cpu_times() is not None  # Linux, as the benchmarks' machine class
    with cpu_during() as found:
        cpu_probe_ms(goes=15)  # ~0.2 s: a couple of dozen clock ticks
    assert 0 <= found["steal_share"] <= 1 and 0 < found["busy_share"] <= 1
