"""Odradek through its own Python API: embedded in-process, and (once it exists) through
the native door, ``odradek.connect(url)`` against an ``odradek serve`` subprocess.

Both doors share one class: the remote one only differs in how the client is made.
Batches are Arrow record batches sliced from the dataset before the clock starts; the
timed loops hand whole batches to the client, never single records (except where the
workload is single-record appends).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

import odradek
from odradek import api
from odradek.bench import appenders, servers, timing
from odradek.bench.datasets import Dataset
from odradek.bench.outcomes import NotYetAvailable, Skipped
from odradek.bench.systems.base import Progress, System, check_count
from odradek.ports import free_port

# DESIGN §5: keyed ingest is measured with 10k-record batches. Large values are batched
# by bytes instead, well under the engine's 64 MiB append limit.
batch_records_max = 10_000
batch_bytes_max = 8 * 1024 * 1024
group_poll_records = 10_000


# The public client API (odradek.api), embedded or remote.
OdradekClient = api.Client


def topic_name(stream: str) -> str:
    return f"bench.{stream}"


class OdradekEmbedded(System):
    name = "odradek"
    title = "Odradek embedded"
    durability = "fsync before ack (group commit)"
    durability_label = "fsync before ack"
    networked = False
    is_odradek = True
    tuning = (
        "none beyond the workload's batching: 10,000-record appends for 100 B records, "
        "8 MiB appends for 64 KiB values, pipelined with append_many where the client has it; "
        "default engine settings"
    )

    def __init__(self) -> None:
        self._client: OdradekClient | None = None

    @property
    def client(self) -> OdradekClient:
        if self._client is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._client

    def start(self, scratch: Path, progress: Progress) -> None:
        self._client = odradek.open(scratch / "data")

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def versions(self) -> dict[str, str]:
        return {"odradek": odradek.__version__, "pyarrow": pa.__version__}

    # -- operations -------------------------------------------------------------------

    def write(self, stream: str, data: Dataset) -> float:
        topic = topic_name(stream)
        self.client.create_topic(topic)
        value_size = max(1, data.value_bytes // max(1, len(data)))
        per_batch = max(1, min(batch_records_max, batch_bytes_max // value_size))
        batches = data.batches(per_batch)
        append_many = getattr(self.client, "append_many", None)
        started = timing.now()
        if append_many is not None:  # pipelined: the next batch is written before the last is acked
            append_many(topic, batches)
        else:
            for batch in batches:
                self.client.append(topic, batch)
        return timing.now() - started

    def drop(self, stream: str) -> None:
        self.client.delete_topic(topic_name(stream))

    def read_all(self, stream: str, expected: int) -> float:
        started = timing.now()
        received = _count_rows(self.client.read(topic_name(stream), start="earliest", wait=0))
        elapsed = timing.now() - started
        check_count("read", received, expected)
        return elapsed

    def append_latencies(self, stream: str, data: Dataset, rate_per_second: float) -> list[float]:
        topic = topic_name(stream)
        singles = data.batches(1)
        send_times = timing.schedule(len(singles), rate_per_second)
        latencies: list[float] = []
        for batch, send_at in zip(singles, send_times, strict=True):
            timing.wait_until(send_at)
            self.client.append(topic, batch)
            latencies.append(timing.now() - send_at)
        return latencies

    def append_sessions(
        self, stream: str, processes: int, threads: int, value_bytes: int
    ) -> appenders.Runner:
        """All appenders as threads of this process, sharing the embedded client: a data
        directory belongs to one process."""
        data = appenders.session_data(value_bytes, seed=1)
        session = OdradekAppendSession(
            self.client, topic_name(stream), processes * threads, data, owned=False
        )
        note = ""
        if processes > 1:
            note = (
                f"{processes * threads} appenders as threads of one process, sharing the client "
                "(a data directory belongs to one process)"
            )
        return appenders.InProcess(session, note)

    def replay_key(self, stream: str, key: bytes, expected: int) -> float:
        started = timing.now()
        table = self.client.read_key(topic_name(stream), key)
        elapsed = timing.now() - started
        check_count("read_key", table.num_rows, expected)
        return elapsed

    def consume_group(self, stream: str, group: str, count: int) -> float:
        subscribe = getattr(self.client, "subscribe", None)
        if subscribe is None:
            door = type(self.client).__name__
            raise NotYetAvailable(f"consumer groups are not available through {door} yet (no subscribe)")
        # Default group settings: per-key ordered dispatch, one record in flight per key.
        consumer = subscribe(topic_name(stream), group=group, start="earliest")
        poll_batches = getattr(consumer, "poll_batches", None)
        try:
            received = 0
            started = timing.now()
            while received < count:
                wanted = min(group_poll_records, count - received)
                if poll_batches is not None:  # Arrow batches: no per-record objects
                    polled = poll_batches(max_records=wanted, timeout=1.0)
                    got = sum(batch.records.num_rows for batch in polled)
                else:
                    polled = consumer.poll(max_records=wanted, timeout=1.0)
                    got = len(polled)
                if not got:
                    break
                if poll_batches is not None:
                    for batch in polled:  # one per topic: here one
                        consumer.ack(batch)
                else:
                    consumer.ack(polled)
                received += got
            elapsed = timing.now() - started
        finally:
            consumer.close()
        check_count("consumer group", received, count)
        return elapsed


class OdradekAppendSession:
    """Closed-loop single appends through one client (appenders.py): each appender
    appends a one-record batch sliced from the session's records and waits for its
    result. Remote clients share one append stream among their threads."""

    def __init__(self, client: OdradekClient, topic: str, threads: int, data: Dataset, owned: bool) -> None:
        self._client = client
        self._topic = topic
        self._threads = threads
        self._singles = data.batches(1)
        self._owned = owned

    @classmethod
    def open(cls, address: str, stream: str, threads: int, data: Dataset) -> OdradekAppendSession:
        client = odradek.connect(address)
        session = cls(client, topic_name(stream), threads, data, owned=True)
        client.append(session._topic, session._singles[0])  # connected before the clock starts
        return session

    def run(self, start_at: float, seconds: float) -> list[float]:
        singles, count, topic, append = self._singles, len(self._singles), self._topic, self._client.append
        # Appenders start at different records, so they append different keys.
        spread = max(1, count // self._threads)

        def one(thread: int, n: int) -> None:
            append(topic, singles[(thread * spread + n) % count])

        return appenders.run_threads(self._threads, start_at, seconds, one)

    def close(self) -> None:
        if self._owned:
            self._client.close()


class OdradekRemote(OdradekEmbedded):
    """The native door: ``odradek serve`` in a subprocess, ``odradek.connect`` in here."""

    name = "odradek-remote"
    title = "Odradek native door"
    networked = True
    durability = "fsync before ack (group commit), then the reply over loopback"

    def __init__(self) -> None:
        super().__init__()
        self._server: servers.ServerProcess | None = None
        self._url = ""

    def prepare(self, allow_install: bool, progress: Progress) -> None:
        if not hasattr(odradek, "connect"):
            raise Skipped("odradek.connect does not exist yet in this build (native door pending)")
        if not _serve_command():
            raise Skipped("the odradek CLI (odradek serve) is not available yet")

    def start(self, scratch: Path, progress: Progress) -> None:
        port = free_port()
        argv = [
            *_serve_command(),
            "serve",
            "--data-dir",
            str(scratch / "data"),
            "--listen",
            f"127.0.0.1:{port}",
        ]
        self._server = servers.ServerProcess("odradek serve", argv, scratch / "server.log")
        self._server.start()
        self._server.wait_for_line("ready")
        self._url = f"grpc://127.0.0.1:{port}"
        self._client = odradek.connect(self._url)

    def append_target(self, stream: str) -> appenders.Target:
        return appenders.Target(f"{__name__}:OdradekAppendSession", self._url, stream)

    def append_sessions(
        self, stream: str, processes: int, threads: int, value_bytes: int
    ) -> appenders.Runner:
        return System.append_sessions(self, stream, processes, threads, value_bytes)

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            server, self._server = self._server, None
            if server is not None:
                server.stop()


def _serve_command() -> list[str]:
    """How to run the ``odradek`` CLI: the installed script, else the module; [] if absent."""
    try:
        if importlib.util.find_spec("odradek.cli.main") is None:
            return []
    except ImportError:
        return []
    script = shutil.which("odradek")
    return [script] if script else [sys.executable, "-m", "odradek.cli.main"]


def _count_rows(batches: Iterable[pa.RecordBatch]) -> int:
    return sum(batch.num_rows for batch in batches)
