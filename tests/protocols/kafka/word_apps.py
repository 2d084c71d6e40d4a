"""A stream processor's word-count app as a subprocess, for the Faust and Quix Streams
tests: every ``COUNT <word> <n>`` line it prints is kept in order; a wait for counts
ends with the app's last output when the deadline passes or the app exits."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

import confluent_kafka

COUNT_LINE = re.compile(rb"COUNT (\w+) (\d+)")
WORDS = ["apple", "pear", "plum"]


class WatchedApp:
    """An app as a subprocess whose output lines matching ``line`` (two groups: a word
    and a number) are kept in order in ``lines``; a wait ends with the app's last output
    when the deadline passes or the app exits."""

    def __init__(
        self,
        command: Sequence[str],
        line: re.Pattern[bytes],
        deadline_seconds: float,
        env: dict[str, str] | None = None,
    ) -> None:
        self.line = line
        self.deadline_seconds = deadline_seconds
        self.lines: list[tuple[str, int]] = []
        self.changed = threading.Condition()
        self.process = subprocess.Popen(
            list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        self.output: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            match = self.line.search(line)
            if match:
                with self.changed:
                    self.lines.append((match.group(1).decode(), int(match.group(2))))
                    self.changed.notify_all()

    def wait_until(self, done: Callable[[], bool], what: str | Callable[[], str]) -> None:
        """Wait until ``done()``; else fail naming ``what`` (or saying ``what()``) with the
        app's last output."""
        deadline = time.monotonic() + self.deadline_seconds
        with self.changed:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    said = what() if callable(what) else f"{what}: never seen; the app's output"
                    raise AssertionError(f"{said}:\n{self.tail()}")
                self.changed.wait(min(left, 0.5))

    def tail(self) -> str:
        return b"".join(self.output[-40:]).decode(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


class WordCountApp(WatchedApp):
    """``lines`` holds every (word, count) the app printed, in order."""

    def __init__(
        self, command: Sequence[str], deadline_seconds: float, env: dict[str, str] | None = None
    ) -> None:
        super().__init__(command, COUNT_LINE, deadline_seconds, env)

    @property
    def counts(self) -> dict[str, int]:
        """The latest count printed per word."""
        return {word: count for word, count in self.lines}

    def wait_for(self, expected: dict[str, int]) -> dict[str, int]:
        self.wait_until(
            lambda: all(self.counts.get(w, 0) >= n for w, n in expected.items()),
            lambda: f"counts {self.counts}, expected {expected}",
        )
        return self.counts


def produce(bootstrap: str, rounds: int) -> None:
    """``rounds`` rounds of the words to topic ``words``, keyed by the word."""
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap})
    for _ in range(rounds):
        for word in WORDS:
            producer.produce("words", key=word.encode(), value=word.encode())
    assert producer.flush(30) == 0
