"""Running the initial load in this process with a progress bar (CLI resync and demo)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.runtime import ehr_client, get_engine
from app.settings import Settings
from app.sync.load import WindowResult, day_start, initial_load, utcnow

console = Console(stderr=True)


def run_load_with_progress(settings: Settings, horizon_days: int | None = None) -> None:
    """Initial load in this process, with a progress bar on a terminal."""
    days = horizon_days or settings.horizon_days
    windows = -(-days // settings.load_window_days)
    with (
        ehr_client(settings) as client,
        Progress(
            TextColumn("[bold]loading slots"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("windows · {task.fields[slots]} slots"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress,
    ):
        task = progress.add_task("load", total=windows, slots=0)
        seen = 0

        def advance(result: WindowResult) -> None:
            nonlocal seen
            seen += result.seen
            progress.update(task, advance=1, slots=seen)

        result = initial_load(
            get_engine(settings),
            client,
            start=day_start(utcnow()),
            horizon_days=days,
            window_days=settings.load_window_days,
            on_window=advance,
        )
    console.print(
        f"loaded {result.seen} free slots in {result.windows} windows "
        f"({result.upserted} written, {result.deleted} removed)"
    )
