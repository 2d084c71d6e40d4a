"""What the command line writes for people, without Arrow: sizes, counts, durations,
dates, the progress line, and a closed stdout.

Kept free of heavy imports: the parser, ``--help`` and error paths use it (start time,
docs/cli.md).
"""

from __future__ import annotations

import datetime
import os
import re
import sys
import time
from typing import TextIO

from odradek.errors import InvalidRequest

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


_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_AGO_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_moment(text: str, what: str, now: float | None = None) -> int:
    """A moment as microseconds since the epoch (UTC), from what a person types.

    ``10m``, ``2h``, ``1d`` (a duration with its unit: that long before ``now``), an
    ISO-8601 date or time (``2026-12-05``, ``2026-12-05T19:00``, ``...Z`` or with an
    offset; UTC when it has none), or a whole number of milliseconds since the epoch
    (as Kafka's timestamps are).
    """
    ago = _AGO.match(text)
    if ago:
        moment = (time.time() if now is None else now) - float(ago.group(1)) * _AGO_SECONDS[ago.group(2)]
        return int(moment * 1_000_000)
    if text.strip().isdigit():
        return int(text) * 1000
    try:
        parsed = datetime.datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise InvalidRequest(
            f"{what}: {text!r} is not a moment: give a duration ago (10m, 2h, 1d), an ISO-8601 "
            "date or time (2026-12-05T19:00:00Z; UTC unless an offset is given) or epoch milliseconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return int(parsed.timestamp() * 1_000_000)


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
