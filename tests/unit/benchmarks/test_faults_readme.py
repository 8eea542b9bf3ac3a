"""The README's reliability table is the rendering of the committed `make faults` results."""

from __future__ import annotations

from benchmarks.faults_readme import README, block, current_block, result_files


def test_the_readme_table_is_generated_from_the_committed_fault_runs() -> None:
    files = result_files()
    assert files, "no committed benchmarks/results/faults-*.json"
    shown = current_block(README.read_text())
    assert shown is not None, "README.md lost its faults:start/faults:end block"
    assert shown == block(files), "run `python -m benchmarks faults-readme`"


def test_the_readme_states_the_newest_clean_clone_timing():
    from benchmarks import readme_blocks
    from benchmarks.first_find_readme import block_content, newest

    path = newest()
    assert path is not None, "a committed benchmarks/results/first-find-*.json"
    expected = readme_blocks.wrap("first-find", block_content(path))
    assert readme_blocks.current(README.read_text(), "first-find") == expected


def test_the_readme_feed_figures_are_the_newest_smart_feed_result():
    from benchmarks import readme_blocks
    from benchmarks.smart_feed_readme import block_content, newest

    path = newest()
    assert path is not None, "a committed benchmarks/results/smart-feed-*.json"
    expected = readme_blocks.wrap("smart-feed", block_content(path))
    assert readme_blocks.current(README.read_text(), "smart-feed") == expected


def test_the_readme_console_figure_is_the_newest_console_result():
    from benchmarks import readme_blocks
    from benchmarks.console_readme import block_content, newest

    path = newest()
    assert path is not None, "a committed benchmarks/results/console-*.json"
    expected = readme_blocks.wrap("console", block_content(path))
    assert readme_blocks.current(README.read_text(), "console") == expected


def test_the_readme_rules_preview_figure_is_the_newest_rules_preview_results():
    from benchmarks import readme_blocks
    from benchmarks.rules_preview_readme import NAME, block_content, newest

    with_memo, without = newest()
    assert with_memo is not None and without is not None, "committed rules-preview results"
    expected = readme_blocks.wrap(NAME, block_content(with_memo, without))
    assert readme_blocks.current(README.read_text(), NAME) == expected
