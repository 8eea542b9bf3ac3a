"""``python -m benchmarks faults-readme``: the README's reliability table, from committed results.

The README never carries a typed-in figure: its block between the ``faults:start`` and
``faults:end`` markers is rendered from the ``benchmarks/results/faults-*.json`` files
that ``make faults`` wrote (the newest two runs, as the issue asks: run twice in a row),
and a test fails when the two disagree.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import faults, readme_blocks
from .readme_blocks import README, RESULTS, ROOT

START, END = readme_blocks.markers("faults")


def result_files(results: Path = RESULTS, runs: int = 2) -> list[Path]:
    """The newest ``runs`` full-size fault runs, oldest first."""
    files = sorted(results.glob("faults-*.json"))
    return files[-runs:]


def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    return data.get("faults", data)  # as written by ``--out`` (keyed by benchmark name)


def block(files: list[Path]) -> str:
    parts = [START]
    for n, path in enumerate(files, 1):
        r = _load(path)
        sizing = r.get("sizing", {})
        met = r.get("scenarios_meeting_target")
        parts.append(
            f"Run {n} (`{path.relative_to(ROOT).as_posix()}`): `{r.get('command')}`, started"
            f" {r.get('started_at')} at commit {str(r.get('git_commit') or '?')[:10]};"
            f" {r.get('sandbox_slots', '?'):,} sandbox slots"
            f" ({r.get('ehr_free_slots_in_horizon', '?'):,} free in the horizon),"
            f" {sizing.get('workers')} workers x {sizing.get('worker_concurrency')}"
            f" {sizing.get('worker_pool')}, {r.get('cpu_count')} cores, load average before"
            f" {r.get('load_average_before')}; {met} of {len(r.get('scenarios', []))}"
            f" scenarios met the target; {r.get('wall_seconds', 0) / 60:.0f} min in all."
        )
        parts.append("")
        parts.append(faults.table(r))
        parts.append("")
    parts.append(END)
    return "\n".join(parts)


def current_block(readme: str) -> str | None:
    return readme_blocks.current(readme, "faults")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=int, default=2, help="newest runs to show")


def run(args: argparse.Namespace) -> dict[str, Any]:
    files = result_files(runs=args.runs)
    if not files:
        raise SystemExit("no benchmarks/results/faults-*.json: run `make faults` first")
    text = README.read_text()
    old = current_block(text)
    if old is None:
        raise SystemExit(f"README.md has no {START!r} ... {END!r} block")
    README.write_text(text.replace(old, block(files)))
    return {"readme": "updated", "from": [f.name for f in files]}
