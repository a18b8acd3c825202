"""Progress of a batch: a live bar (rich) on a terminal; a few plain lines elsewhere (CI logs)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from grader.batch.gradebook import Result


class Progress:
    """Counts graded / errors / timeouts as results come, and shows them."""

    def __init__(self, total: int, skipped: int = 0, stream: TextIO | None = None,
                 live: bool | None = None):
        self.total, self.skipped = total, skipped
        self.counts = {"graded": 0, "error": 0, "timeout": 0}
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.started = time.monotonic()
        self._next_line = 0.1  # plain mode: a line at every tenth of the batch
        self._bar: Any = None
        if self.live and total:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn("grading"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(),
                            console=Console(file=self.stream), transient=False)
            self._task = self._bar.add_task("grading", total=total, counts=self._counts())
            self._bar.start()
        elif total:
            self._print(f"batch: {total} to grade" + (f", {skipped} already graded" if skipped else ""))

    @property
    def done(self) -> int:
        """How many results have come in."""
        return sum(self.counts.values())

    def _counts(self) -> str:
        c = self.counts
        return f"graded {c['graded']}  errors {c['error']}  timeouts {c['timeout']}"

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def add(self, result: Result) -> None:
        """One more result."""
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, counts=self._counts())
        elif self.total and self.done / self.total >= self._next_line - 1e-9:
            while self._next_line <= self.done / self.total + 1e-9:
                self._next_line += 0.1
            elapsed = time.monotonic() - self.started
            eta = elapsed / self.done * (self.total - self.done)
            self._print(f"batch: {self.done}/{self.total}  {self._counts()}  "
                        f"elapsed {elapsed:.0f} s  ETA {eta:.0f} s")

    def close(self) -> None:
        """Stop the live bar (the last state stays on screen)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
