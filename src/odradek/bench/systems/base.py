"""What every benchmarked system provides: the same operations, each done the system's
best honest way through its Python client.

Logical stream names (``ingest-1``, ``replay``) are lower-case words and digits; each
system maps them to its own names (an Odradek topic, a Redis key, a NATS stream and
subject space). Timed operations return the seconds their timed section took and check
that they did all the work they were asked (counts read back), raising otherwise: a
fast wrong answer is not a result.
"""

from __future__ import annotations

import abc
import importlib.metadata
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from odradek.bench import appenders
from odradek.bench.datasets import Dataset
from odradek.bench.outcomes import NotYetAvailable

Progress = Callable[[str], None]


class System(abc.ABC):
    #: Short identifier used by ``--systems`` and in the JSON.
    name: str = ""
    #: Name in tables and charts.
    title: str = ""
    #: What an acknowledged write means, in full (systems table) and short (every result row).
    durability: str = ""
    durability_label: str = ""
    #: True when acked writes can be lost on a machine crash (labelled in every table).
    weaker_durability: bool = False
    #: True when data crosses a socket between client and server.
    networked: bool = True
    is_odradek: bool = False
    #: What was tuned for this system, for BENCHMARKS.md and the JSON.
    tuning: str = ""
    #: Workloads this system does not run, each with the reason (shown in the table).
    skipped_workloads: Mapping[str, str] = MappingProxyType({})

    def prepare(self, allow_install: bool, progress: Progress) -> None:  # noqa: B027 - optional hook
        """Check (and if allowed install) what the system needs; raise Skipped if it cannot run."""

    @abc.abstractmethod
    def start(self, scratch: Path, progress: Progress) -> None:
        """Start servers and connect; ``scratch`` is a fresh directory for this system's data."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Disconnect and stop servers; safe to call after a failed start."""

    def versions(self) -> dict[str, str]:
        return {}

    # -- operations -------------------------------------------------------------------

    @abc.abstractmethod
    def write(self, stream: str, data: Dataset) -> float:
        """Create ``stream`` and write ``data`` in order, keyed; seconds until all is acked."""

    def load_for_replay(self, stream: str, data: Dataset) -> None:
        """Lay ``data`` out the way this system replays one key (default: as ``write`` does)."""
        self.write(stream, data)

    @abc.abstractmethod
    def drop(self, stream: str) -> None:
        """Delete ``stream`` and what belongs to it."""

    @abc.abstractmethod
    def read_all(self, stream: str, expected: int) -> float:
        """Read ``stream`` from the start until ``expected`` records were received; seconds."""

    @abc.abstractmethod
    def append_latencies(self, stream: str, data: Dataset, rate_per_second: float) -> list[float]:
        """Append each record of ``data`` alone, at a fixed rate (``timing.schedule``, made
        after any preparation); per append, seconds from its scheduled time to its ack.
        ``stream`` exists (written by ``write``)."""

    def append_target(self, stream: str) -> appenders.Target | None:
        """Where an appender process connects to append to ``stream`` one record at a
        time (its session class and the server's address); None if this system has none."""
        return None

    def append_sessions(
        self, stream: str, processes: int, threads: int, value_bytes: int
    ) -> appenders.Runner:
        """Closed-loop single appenders on ``stream`` (which exists): ``threads`` sharing
        one client in each of ``processes`` processes; one process is this one."""
        target = self.append_target(stream)
        if target is None:
            raise NotYetAvailable(f"{self.name} has no closed-loop appender")
        if processes == 1:
            data = appenders.session_data(value_bytes, seed=1)
            return appenders.InProcess(appenders.open_session(target, threads, data))
        return appenders.AppenderProcesses(target, processes, threads, value_bytes)

    @abc.abstractmethod
    def replay_key(self, stream: str, key: bytes, expected: int) -> float:
        """Read every record of ``key`` in ``stream`` (laid out by ``load_for_replay``); seconds."""

    @abc.abstractmethod
    def consume_group(self, stream: str, group: str, count: int) -> float:
        """A new consumer group on ``stream`` from its start receives and acks ``count``
        records; seconds. Raises NotYetAvailable where the system has no groups."""


def check_count(what: str, received: int, expected: int) -> None:
    """Raise unless an operation handled exactly the records it was asked to."""
    if received != expected:
        raise RuntimeError(f"{what} returned {received} records, expected {expected}")


def package_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
