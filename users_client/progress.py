"""A progress bar on stderr (rich) when stderr is a terminal; a plain count otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import IO, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} rows/s")


class _CountColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        shown = f"{task.completed:,.0f}"
        if task.total is not None:
            shown += f"/{task.total:,.0f}"
        return Text(f"{shown} rows")


class RowProgress:
    """`with RowProgress("export", total=None) as progress: progress.advance(n)`.

    Counts rows whatever the terminal; draws only when `stream` is a terminal, with a
    total and an ETA when `total` is known."""

    def __init__(self, verb: str, total: int | None = None, stream: IO[str] | None = None):
        self.verb = verb
        self.count = 0
        self.started = time.monotonic()
        stream = sys.stderr if stream is None else stream
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if stream.isatty():
            columns: list[ProgressColumn | str] = [TextColumn(verb)]
            if total is not None:
                columns.append(BarColumn())
            columns += [_CountColumn(), _RateColumn(), TimeElapsedColumn()]
            if total is not None:
                columns.append(TimeRemainingColumn())
            self._progress = Progress(*columns, console=Console(file=stream))
            self._task = self._progress.add_task(verb, total=total)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def advance(self, rows: int) -> None:
        self.count += rows
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, rows)

    def summary(self, done: str) -> str:
        """One line: `exported 1,000 users in 0.4 s (2,500 users/s)`."""
        elapsed = self.elapsed
        rate = self.count / elapsed if elapsed > 0 else 0.0
        return f"{done} {self.count:,} users in {elapsed:.2f} s ({rate:,.0f} users/s)"

    def __enter__(self) -> Self:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
