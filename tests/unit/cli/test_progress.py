"""Progress bars only on a terminal; `quiet` (for --json) prints nothing at all."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from app.cli import progress
from app.sync.runs import RunSummary

RESULT = RunSummary(run_id=7, status="ok", chunks=3, failed=0, seen=42, upserted=40, deleted=1)


@pytest.fixture(autouse=True)
def three_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    def run_in_process(ctx: Any, request: Any, *, on_planned: Any, on_chunk: Any) -> RunSummary:
        on_planned(SimpleNamespace(seqs=[1, 2, 3]))
        for _ in range(3):
            on_chunk(SimpleNamespace(result=SimpleNamespace(seen=14), status="ok"))
        return RESULT

    monkeypatch.setattr(progress, "run_in_process", run_in_process)


def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=out, force_terminal=True, width=120))
    return out


def test_a_terminal_gets_a_bar_and_the_summary(monkeypatch):
    out = terminal(monkeypatch)
    assert progress.run_with_progress(None, None) == RESULT  # type: ignore[arg-type]
    text = out.getvalue()
    assert "loading slots" in text and "3/3" in text
    assert "free slots in" in text


def test_a_pipe_gets_only_the_summary_line(capsys):
    progress.run_with_progress(None, None)  # type: ignore[arg-type]
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines() == [
        "run 7 ok: 42 free slots in 3 chunks (40 written, 1 removed, 0 chunks failed)"
    ]


def test_quiet_prints_nothing_even_on_a_terminal(monkeypatch, capsys):
    out = terminal(monkeypatch)
    assert progress.run_with_progress(None, None, quiet=True) == RESULT  # type: ignore[arg-type]
    assert out.getvalue() == ""
    assert capsys.readouterr() == ("", "")
