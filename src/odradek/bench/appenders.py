"""Single-record appenders, closed loop: one client in this process, or many clients in
processes of their own, the same way for every system.

An *append session* is one client of one system with ``threads`` appenders sharing
it, each appending one record at a time and waiting for its acknowledgement before the
next (a thread, or an asyncio task for an asyncio-only client). ``run`` starts them
all at a given wall-clock time and stops them after ``seconds``; it returns every
append's latency, so the caller has both the count (appends/s) and the distribution.
The records (single-record batches, or the peers' Python objects) are built before
the clock starts.

:class:`AppenderProcesses` runs one session per child process (``spawn``, so no
child inherits a client or a lock of this one). Children are started once per
workload and given one command per run; a session's connection stays open between
runs, as a client's would. Each system names its session class by ``module:class``
(``System.append_target``), so a child builds it without the parent's objects.
"""

from __future__ import annotations

import dataclasses
import importlib
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from odradek.bench import datasets, timing
from odradek.bench.datasets import Dataset

# Records each session cycles through (built before the clock): enough distinct keys
# and values that no system sees one record repeated back to back.
session_records = 1000
# How long before a run's start its command is sent: children wait for the same
# wall-clock moment, so every client starts together.
start_lead_seconds = 0.2
# A child that neither starts nor answers a run in this long is taken as failed.
child_deadline_seconds = 120.0
# How often a wait for the children looks whether one of them died.
child_poll_seconds = 0.5


class AppendSession(Protocol):
    """One client with ``threads`` closed-loop appenders (see the module docstring)."""

    def run(self, start_at: float, seconds: float) -> list[float]: ...

    def close(self) -> None: ...


class Runner(Protocol):
    """Appender sessions ready to run: ``run(seconds)`` returns every append's latency;
    ``note`` says how they run when that differs from the workload's usual shape."""

    note: str

    def run(self, seconds: float) -> list[float]: ...

    def close(self) -> None: ...


class InProcess:
    """One session in this process."""

    def __init__(self, session: AppendSession, note: str = "") -> None:
        self._session = session
        self.note = note

    def run(self, seconds: float) -> list[float]:
        return self._session.run(time.time() + start_lead_seconds, seconds)

    def close(self) -> None:
        self._session.close()


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a child process connects: ``session`` is ``module:class`` of a class with
    ``open(address, stream, threads, data) -> AppendSession``."""

    session: str
    address: str
    stream: str


def session_data(value_bytes: int, seed: int) -> Dataset:
    return datasets.keyed(session_records, session_records, value_bytes, seed=seed)


def open_session(target: Target, threads: int, data: Dataset) -> AppendSession:
    module, _, name = target.session.partition(":")
    cls = getattr(importlib.import_module(module), name)
    session: AppendSession = cls.open(target.address, target.stream, threads, data)
    return session


def run_threads(
    threads: int, start_at: float, seconds: float, append: Callable[[int, int], None]
) -> list[float]:
    """``threads`` threads, each calling ``append(thread, n)`` for n = 0, 1, 2... from
    ``start_at`` (``time.time()``) until ``seconds`` later; every call's latency."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        _sleep_until(start_at)
        deadline = timing.now() + seconds
        mine = latencies[thread]
        count = 0
        try:
            while True:
                started = timing.now()
                if started >= deadline:
                    return
                append(thread, count)
                mine.append(timing.now() - started)
                count += 1
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,), name=f"bench-appender-{t}") for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return [latency for mine in latencies for latency in mine]


def _sleep_until(wall_clock: float) -> None:
    remaining = wall_clock - time.time()
    if remaining > 0:
        time.sleep(remaining)


class AppenderProcesses:
    """``processes`` children, each with one session of ``threads`` appenders."""

    note = ""

    def __init__(self, target: Target, processes: int, threads: int, value_bytes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._results: Any = context.Queue()
        self._commands = [context.Queue() for _ in range(processes)]
        self._children = [
            context.Process(
                target=_child,
                args=(target, threads, value_bytes, index + 1, commands, self._results),
                name=f"bench-appenders-{index}",
                daemon=True,
            )
            for index, commands in enumerate(self._commands)
        ]
        for child in self._children:
            child.start()
        try:
            self._collect("ready")
        except BaseException:
            self.close()
            raise

    def run(self, seconds: float) -> list[float]:
        """Every append's latency, from all children, over one run of ``seconds``."""
        start_at = time.time() + start_lead_seconds
        for commands in self._commands:
            commands.put(("run", start_at, seconds))
        latencies: list[float] = []
        for answer in self._collect("ran"):
            latencies.extend(answer)
        return latencies

    def _collect(self, kind: str) -> list[Any]:
        answers: list[Any] = []
        deadline = time.monotonic() + child_deadline_seconds
        while len(answers) < len(self._children):
            try:
                got, payload = self._results.get(timeout=child_poll_seconds)
            except queue.Empty:
                dead = [child for child in self._children if child.exitcode is not None]
                if dead:
                    raise RuntimeError(f"an appender process exited with code {dead[0].exitcode}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"an appender process did not answer within {child_deadline_seconds:.0f} s"
                    ) from None
                continue
            if got == "error":
                raise RuntimeError(f"an appender process failed: {payload}")
            if got != kind:
                raise RuntimeError(f"an appender process answered {got!r}, expected {kind!r}")
            answers.append(payload)
        return answers

    def close(self) -> None:
        for commands in self._commands:
            commands.put(("stop", 0.0, 0.0))
        for child in self._children:
            child.join(timeout=30.0)
            if child.is_alive():
                child.kill()
                child.join()
        self._results.close()
        for commands in self._commands:
            commands.close()

    def __enter__(self) -> AppenderProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _child(target: Target, threads: int, value_bytes: int, seed: int, commands: Any, results: Any) -> None:
    try:
        session = open_session(target, threads, session_data(value_bytes, seed))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        results.put(("error", f"{type(exc).__name__}: {exc}"))
        return
    results.put(("ready", None))
    try:
        while True:
            command, start_at, seconds = commands.get()
            if command != "run":
                return
            try:
                results.put(("ran", session.run(start_at, seconds)))
            except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
                results.put(("error", f"{type(exc).__name__}: {exc}"))
                return
    finally:
        session.close()
