"""Subprocesses of the chaos harness (etcd members, the S3 server, agents): started with
their output in a log file, killed, paused and resumed by signal, waited on with
deadlines. A server that does not come up raises HarnessError with its log's tail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from odradek.errors import OdradekError

STOP_SECONDS_MAX = 15.0  # a SIGTERM'd server exits within this, else it is killed
POLL_SECONDS = 0.05  # how often a wait looks at its condition again
LOG_TAIL_CHARACTERS = 6000  # of a server's output, shown when it fails


class HarnessError(OdradekError):
    """The chaos harness could not do what it needed: a server did not start, the
    cluster did not come back within its deadline. Not an anomaly of the system under
    test (those are the checker's), but the run cannot go on."""

    code = "chaos_harness"


class StackedHarness:
    """A harness of servers as a context manager: ``_start`` starts them, registering
    each one's stop on ``self._stack``; whatever was started is stopped, last first, at
    exit or when ``_start`` fails half-way."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def _start(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stack.close()


def wait_until(
    condition: Callable[[], bool], seconds: float, what: str, output: Callable[[], str] = str
) -> None:
    """Poll ``condition`` until it holds; past ``seconds`` raise HarnessError naming
    ``what`` (and ``output()``, e.g. a log's tail)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            tail = output()
            raise HarnessError(f"{what}: not within {seconds:g} s" + (f"\n{tail}" if tail else ""))
        time.sleep(POLL_SECONDS)


class Process:
    """One subprocess, its stdout and stderr appended to ``log_path`` (kept across
    restarts, so the log tells the whole story)."""

    def __init__(
        self,
        name: str,
        command: list[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.popen: subprocess.Popen[bytes] | None = None
        self.paused = False

    def start(self) -> None:
        if self.alive():
            raise HarnessError(f"{self.name} is running already")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- {self.name} started {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env} if self.env is not None else None,
                cwd=self.cwd,
            )
        self.paused = False

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash (a paused process dies too)."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(STOP_SECONDS_MAX)
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the process stops where it is, its sockets stay open."""
        if self.alive():
            os.kill(self.popen.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            self.paused = True

    def resume(self) -> None:
        if self.alive():
            os.kill(self.popen.pid, signal.SIGCONT)  # type: ignore[union-attr]
        self.paused = False

    def stop(self, seconds: float = STOP_SECONDS_MAX) -> int | None:
        """The stop signal (SIGTERM unless given; after SIGCONT if paused), then SIGKILL
        past ``seconds``; the exit status, None if it was not running."""
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        if self.paused:
            self.resume()
        self.popen.send_signal(self.stop_signal)
        try:
            return self.popen.wait(seconds)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(STOP_SECONDS_MAX)

    def output(self, characters: int = LOG_TAIL_CHARACTERS) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(max(self.log_path.stat().st_size - characters, 0))
            return log.read().decode(errors="replace")

    def wait_for(self, condition: Callable[[], bool], seconds: float, what: str) -> None:
        """``wait_until`` that also fails at once if the process exits."""

        def ready() -> bool:
            if not self.alive():
                code = None if self.popen is None else self.popen.returncode
                raise HarnessError(f"{self.name} exited (status {code}) before {what}\n{self.output()}")
            return condition()

        wait_until(ready, seconds, f"{self.name}: {what}", self.output)
