"""Progress bars on standard error for the long commands (codes import, broadcast)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)


@contextmanager
def codes_progress(flow_id: str, size: int) -> Iterator[Callable[[int, int], None]]:
    """A bar over the file's bytes with the codes read so far; call it with (bytes, codes)."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[codes]:,} codes"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(flow_id, total=size or 1, codes=0)

        def show(done: int, codes: int) -> None:
            progress.update(task, completed=done, codes=codes)

        yield show
        progress.update(task, completed=size or 1)


@contextmanager
def recipients_progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A bar over recipients, shown from the first call on (a dry run shows none); call it with
    (done, recipients)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    task: list[TaskID] = []

    def show(done: int, total: int) -> None:
        if not task:
            progress.start()
            task.append(progress.add_task(description, total=total))
        progress.update(task[0], completed=done, total=total)

    try:
        yield show
    finally:
        if task:
            progress.stop()
