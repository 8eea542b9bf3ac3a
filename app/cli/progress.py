"""Progress bars for long sync runs, in this process or watched on the workers (CLI, demo).

On a terminal only: written to a file or a pipe, a run says what it did in one line at
the end (and the logs say the rest). ``quiet`` drops that line too, for output that is
read by a program (``--json``).
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.cache import runs as runs_repo
from app.cache.db import transaction
from app.core.errors import SlotsyncError
from app.sync.context import SyncContext
from app.sync.messages import ResyncRequest
from app.sync.runs import ChunkRun, PlannedRun, RunSummary, run_in_process, summary

console = Console(stderr=True)


class RunTimeout(SlotsyncError, TimeoutError):
    """A watched run did not finish in time (it goes on at the workers)."""


def _progress(*, quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks · {task.fields[slots]} slots · {task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=quiet or not console.is_terminal,
    )


def report(result: RunSummary) -> None:
    colour = "green" if result.status == "ok" else "red"
    console.print(
        f"[{colour}]run {result.run_id} {result.status}[/{colour}]: {result.seen} free slots "
        f"in {result.chunks} chunks ({result.upserted} written, {result.deleted} removed, "
        f"{result.failed} chunks failed)"
    )


def run_with_progress(
    ctx: SyncContext, request: ResyncRequest, *, quiet: bool = False
) -> RunSummary:
    """Plan and run here (embedded mode, or ``slotsync resync`` without ``--enqueue``)."""
    with _progress(quiet=quiet) as progress:
        task = progress.add_task("planning", total=None, slots=0, failed=0)
        seen = failed = 0

        def planned(run: PlannedRun) -> None:
            progress.update(task, description="loading slots", total=len(run.seqs))

        def advance(outcome: ChunkRun) -> None:
            nonlocal seen, failed
            seen += outcome.result.seen if outcome.result else 0
            failed += outcome.status == "failed"
            progress.update(task, advance=1, slots=seen, failed=failed)

        result = run_in_process(ctx, request, on_planned=planned, on_chunk=advance)
    if not quiet:
        report(result)
    return result


def watch_run(
    ctx: SyncContext, token: str, *, timeout: float, interval: float = 0.5, quiet: bool = False
) -> RunSummary:
    """Follow a run the workers execute, by its planner's token, until it finishes."""
    deadline = time.monotonic() + timeout
    with _progress(quiet=quiet) as progress:
        task = progress.add_task("waiting for a worker", total=None, slots=0, failed=0)
        while True:
            with transaction(ctx.engine) as session:
                run = runs_repo.run_by_token(session, token)
                state = (
                    None
                    if run is None
                    else (
                        run.id,
                        run.status,
                        run.chunks_total,
                        run.chunks_done,
                        run.chunks_failed,
                        run.slots_seen,
                    )
                )
            if state is not None:
                run_id, status, total, done, failed, seen = state
                progress.update(
                    task,
                    description="loading slots",
                    total=total,
                    completed=done + failed,
                    slots=seen,
                    failed=failed,
                )
                if status in ("ok", "failed"):  # not while planning
                    break
            if time.monotonic() > deadline:
                raise RunTimeout(f"run {token} did not finish within {timeout:.0f}s")
            time.sleep(interval)
    result = summary(ctx, run_id)
    if not quiet:
        report(result)
    return result
