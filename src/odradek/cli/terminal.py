"""What the command line writes for people, without Arrow: sizes, counts, durations,
dates, the progress line, and a closed stdout.

Kept free of heavy imports: the parser, ``--help`` and error paths use it (start time,
docs/cli.md).
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from typing import TextIO

# The progress line is redrawn at most this often (a terminal shows no more).
progress_interval_seconds = 0.5


def human_bytes(count: int) -> str:
    """1,536 -> '1.5 KiB': sizes as people read them."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def plural(count: int, noun: str) -> str:
    """``1 record``, ``2 records``, ``3,000,000 records``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def human_duration(seconds: float | None) -> str:
    """604800 -> '7d', 5400 -> '1h30m', None -> 'forever'."""
    if seconds is None:
        return "forever"
    if seconds == 0:
        return "0s"
    remaining = int(seconds)
    if remaining != seconds:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if remaining >= size:
            parts.append(f"{remaining // size}{unit}")
            remaining %= size
    return "".join(parts)


def human_time(microseconds: int | None) -> str:
    """A timestamp in microseconds since the epoch as ISO-8601 UTC to the second."""
    if microseconds is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(microseconds / 1e6, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


class Progress:
    """One line on stderr redrawn in place (``\\r`` and erase-to-end), only on a terminal.

    ``update`` redraws at most every ``progress_interval_seconds``; ``finish`` replaces
    the line with its final text (or erases it) so no characters of a longer earlier
    line stay behind.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.started = time.monotonic()
        self.shown = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, text: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if force or now - self.shown >= progress_interval_seconds:
            self.shown = now
            self.stream.write(f"\r{text}\033[K")
            self.stream.flush()

    def finish(self, text: str | None = None) -> None:
        """End the line: with ``text`` as its last content, or erased."""
        if not self.enabled:
            return
        if text is not None:
            self.stream.write(f"\r{text}\033[K\n")
        elif self.shown:
            self.stream.write("\r\033[K")
        self.stream.flush()


def stdout_is_closed_error(exc: BaseException) -> bool:
    """True for the error a closed pipe (``| head``) gives on write."""
    return isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == 32)


def silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the exit flush does not fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
