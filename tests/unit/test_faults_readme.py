"""The README's reliability table is the rendering of the committed `make faults` results."""

from __future__ import annotations

from benchmarks.faults_readme import README, block, current_block, result_files


def test_the_readme_table_is_generated_from_the_committed_fault_runs() -> None:
    files = result_files()
    assert files, "no committed benchmarks/results/faults-*.json"
    shown = current_block(README.read_text())
    assert shown is not None, "README.md lost its faults:start/faults:end block"
    assert shown == block(files), "run `python -m benchmarks faults-readme`"
