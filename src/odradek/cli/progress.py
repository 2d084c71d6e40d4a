"""Progress bars of long commands (produce, consume to a file, topic verify) on stderr.

On a terminal a :class:`Bar` is a ``rich`` progress bar: what is done (records, or
bytes), the rate, the elapsed time and, when the total is known, a bar and the time
left. It is drawn on stderr and erased at the end, where one plain line stays
(``t: 3,000,000 records in 7.3 s``). When stderr is not a terminal (a log file, a
pipe, CI) nothing is drawn: no control characters end up in a file.

``rich`` is imported by the first bar that is shown, never by the parser, ``--help``
or a command whose stderr is not a terminal (start time, docs/cli.md).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from odradek.cli import terminal

# The bar is redrawn this many times a second at most (rich's own default is 10).
refreshes_per_second = 4


class Bar:
    """``advance`` as the work goes; ``finish`` once, with the line that stays."""

    def __init__(
        self,
        description: str,
        *,
        total: int | None = None,
        unit: str = "records",
        enabled: bool | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.started = time.monotonic()
        self.done = 0
        self._progress: Any = None
        self._task: Any = None
        if self.enabled:
            self._progress, self._task = _rich_bar(self.stream, description, total, unit)
            self._progress.start()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def advance(self, amount: int, *, description: str | None = None) -> None:
        self.done += amount
        if self._progress is not None:
            fields: dict[str, Any] = {"rate": f"{self.done / max(self.elapsed(), 1e-9):,.0f}/s"}
            if description is not None:
                fields["description"] = description
            self._progress.update(self._task, advance=amount, **fields)

    def set_total(self, total: int | None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=total)

    def finish(self, text: str | None = None) -> None:
        """Erase the bar; ``text`` stays on its line (only where a bar was shown)."""
        if self._progress is None:
            return
        progress, self._progress = self._progress, None
        progress.stop()
        if text is not None:  # erased to its end: nothing of the bar stays beside it
            self.stream.write(f"\r{text}\033[K\n")
            self.stream.flush()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


def _rich_bar(stream: TextIO, description: str, total: int | None, unit: str) -> tuple[Any, Any]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    done: Any = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    rate: Any = (
        TransferSpeedColumn() if unit == "bytes" else TextColumn("{task.fields[rate]}", justify="right")
    )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        done,
        rate,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=stream),
        transient=True,
        refresh_per_second=refreshes_per_second,
    )
    task = progress.add_task(description, total=total, rate="")
    return progress, task


def count_line(what: str, count: int, noun: str, elapsed: float) -> str:
    """The line that stays once a bar is erased."""
    return f"{what}: {terminal.plural(count, noun)} in {elapsed:.1f} s"
