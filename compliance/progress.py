"""Progress display for long work (rich), switchable off for tests and --quiet."""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


class Reporter:
    """Stages with optional progress bars; a no-op when ``enabled`` is False.

    Args:
        enabled: show anything at all.
        console: where to draw (stderr by default).
        eta: add a column with the estimated time left (for long stages of many similar units).
    """

    def __init__(self, enabled: bool = True, console: Optional[Console] = None, eta: bool = False):
        self.enabled = enabled
        self.eta = eta
        self.console = console or Console(stderr=True)
        self._progress: Optional[Progress] = None

    def __enter__(self) -> "Reporter":
        if self.enabled:
            self._progress = Progress(
                SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn(), *([TimeRemainingColumn()] if self.eta else []),
                console=self.console, transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    @contextlib.contextmanager
    def stage(self, description: str, total: Optional[int] = None) -> Iterator["Stage"]:
        """A unit of work; ``total`` gives it a bar, otherwise it shows a spinner until done."""
        if self._progress is None:
            yield Stage(None, None)
            return
        task = self._progress.add_task(description, total=total if total is not None else 1)
        stage = Stage(self._progress, task)
        try:
            yield stage
        finally:
            if total is None:
                self._progress.update(task, completed=1)
            else:
                self._progress.update(task, completed=self._progress.tasks[task].total)
            self._progress.refresh()

    def log(self, message: str) -> None:
        if self.enabled:
            self.console.log(message)


class Stage:
    def __init__(self, progress: Optional[Progress], task):
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def set(self, completed: int, description: Optional[str] = None) -> None:
        if self._progress is not None:
            kwargs = {"completed": completed}
            if description:
                kwargs["description"] = description
            self._progress.update(self._task, **kwargs)

    def describe(self, description: str) -> None:
        """Change what the stage's line says, keeping its progress."""
        if self._progress is not None:
            self._progress.update(self._task, description=description)
