"""A progress bar on stderr for downloads that start implicitly (a model pulled on first use, an EvalPlus file
fetched on first load), fed by the ``progress(description, done, total)`` callback that `cache` reports to."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from mucode.models.cache import Progress as ProgressCallback


@contextmanager
def progress_bar(console: Console | None = None) -> Iterator[ProgressCallback]:
    """A rich progress bar on stderr (or ``console``), one line per step.

    The bar starts with the first sized step, so a download that returns at once or fails early prints nothing;
    a step of unknown size (pip's download, a requantisation) prints one line when it starts.
    """
    output = console or Console(stderr=True)
    tasks: dict[str, TaskID] = {}
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                   console=output)

    def report(description: str, done: int, total: int) -> None:
        if total == 0:
            output.print(f"{description}…", highlight=False, markup=False, soft_wrap=True)
        elif description not in tasks:
            bar.start()
            tasks[description] = bar.add_task(description, total=total, completed=done)
        else:
            bar.update(tasks[description], completed=done)

    try:
        yield report
    finally:
        if bar.live.is_started:  # stopping a bar that never started prints a blank line
            bar.stop()
