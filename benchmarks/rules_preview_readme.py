"""``python -m benchmarks rules-preview-readme``: the README's rules preview figure, from
the newest committed ``benchmarks/results/rules-preview-<date>.json`` (as the API runs it,
with ``$find``'s offer memo) and ``rules-preview-nomemo-<date>.json`` (as ``slotsync
rules diff`` runs it); a test keeps them equal."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import readme_blocks
from .readme_blocks import RESULTS, ROOT

NAME = "rules-preview"


def newest() -> tuple[Path | None, Path | None]:
    """The newest result with the memo and the newest without (names sort by date)."""
    with_memo = sorted(RESULTS.glob("rules-preview-20*.json"))
    without = sorted(RESULTS.glob("rules-preview-nomemo-20*.json"))
    return (with_memo[-1] if with_memo else None, without[-1] if without else None)


def _run(path: Path) -> str:
    result = json.loads(path.read_text())["rules-preview"]
    broad, one, meta = result["broad"], result["one_visit_type"], result["meta"]
    load = ", ".join(f"{x:g}" for x in meta["load_average_before"])
    return (
        f"broad change {broad['seconds']:.1f} s ({broad['cpu_seconds']:.1f} s CPU,"
        f" {broad['rss_growth_mb']:+.0f} MB), one visit type's change {one['seconds']:.1f} s"
        f" ({one['rss_growth_mb']:+.0f} MB); `{meta['command']}` at commit {meta['commit']},"
        f" load average before [{load}], `{path.relative_to(ROOT).as_posix()}`"
    )


def block_content(with_memo: Path, without: Path) -> str:
    result = json.loads(with_memo.read_text())["rules-preview"]
    return (
        f"Over {result['slots']:,} cached slots on {result['schedules']:,} schedules"
        f" ({result['broad']['offers_before']:,} offers under the live rules,"
        f" {result['broad']['offers_after']:,} under the broad change; target"
        f" {result['target_seconds']:.0f} s, {result['slots_held']:,} slots held):\n\n"
        f"- as the API runs it, with `$find`'s offer memo: {_run(with_memo)};\n"
        f"- as `slotsync rules diff` runs it, no memo: {_run(without)}."
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p  # nothing to choose: the newest results


def run(args: argparse.Namespace) -> dict[str, Any]:
    with_memo, without = newest()
    if with_memo is None or without is None:
        raise SystemExit(
            "run `rules-preview --out benchmarks/results/rules-preview-<date>.json` and"
            " `rules-preview --no-memo --out benchmarks/results/rules-preview-nomemo-<date>.json`"
        )
    readme_blocks.write(NAME, block_content(with_memo, without))
    return {"readme": "updated", "from": [with_memo.name, without.name]}
