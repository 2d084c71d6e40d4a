"""Odradek embedded on an object store: the agent of issue 13 against the directory
backend, in the same run.

* ``odradek-store``: the store is moto's S3 server on loopback (bench/s3server.py),
  reached through the S3 client as a real bucket would be.
* ``odradek-store-10ms`` / ``odradek-store-60ms``: an in-memory store wrapped in the
  fault-injecting store with a fixed latency per request: 10 ms PUTs and 5 ms reads (S3
  Express One Zone-like), 60 ms PUTs and 20 ms reads (S3 Standard-like).

The engine is the one ``odradek.open(path, store=..., store_settings=...)`` gives a
user; the data directory is only its cache. Everything else is the embedded row's:
same datasets, same batches, except where an append must wait for a PUT:

* ingest pipelines ``append_many`` with a window of ``ingest_window`` batches (the
  directory row uses the default 8): each append waits for its journal flush, so
  throughput needs that many flushes' worth of batches in flight;
* single-record latency is open-loop from a pool of producer threads (an append waits
  a flush window plus a PUT, far longer than the 1 ms between sends);
* a catch-up read first restarts the agent on an empty cache (not timed), so what it
  reads comes from the store;
* the journal keeps its default settings (StoreSettings()), reported in the systems
  table.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gc
import shutil
import threading
import uuid
from pathlib import Path

import pyarrow as pa

import odradek
from odradek.bench import s3server, timing
from odradek.bench.datasets import Dataset
from odradek.bench.systems.base import Progress, check_count, package_version
from odradek.bench.systems.odradek import (
    OdradekEmbedded,
    batch_bytes_max,
    batch_records_max,
    topic_name,
)
from odradek.bench.units import MIB, format_value
from odradek.storage.agent import StoreSettings
from odradek.storage.objectfaults import FaultyObjectStore
from odradek.storage.objects import DELETE, GET, HEAD, LIST, PUT, ObjectStore, RequestCounts, open_store

# Batches of 10,000 records appended ahead of the oldest acknowledgement: one per
# journal flush in flight (StoreSettings.in_flight_max, 32), so a 60 ms PUT does not
# leave the pipeline empty.
ingest_window = 32
# Producer threads for open-loop single appends: at 1,000/s and ~100 ms a flush window
# plus a PUT (and queueing behind a checkpoint), about a hundred appends are in flight.
producer_threads_max = 256


@dataclasses.dataclass
class Restart:
    """One restart of the agent: how long it took and what it asked of the store."""

    seconds: float
    requests: RequestCounts


def journal_settings(settings: StoreSettings) -> str:
    return (
        f"journal flush {settings.flush_seconds * 1000:g} ms or "
        f"{settings.flush_bytes // MIB} MiB, {settings.in_flight_max} flushes in flight, "
        f"checkpoint every {settings.checkpoint_seconds:g} s or "
        f"{settings.checkpoint_bytes // MIB} MiB (StoreSettings defaults)"
    )


class OdradekStore(OdradekEmbedded):
    """The embedded engine on moto's S3 server (subclasses change the store)."""

    name = "odradek-store"
    title = "Odradek on S3 (moto, loopback)"
    durability = (
        "in the object store before ack: the journal object holding the append was PUT to moto's "
        "S3 server on loopback (moto keeps objects in memory: S3's protocol, not S3's durability)"
    )
    durability_label = "store PUT before ack"
    networked = False  # the client is in-process; the store is behind it
    store_description = "moto's S3 server on loopback, no injected latency"

    def __init__(self) -> None:
        super().__init__()
        self.settings = StoreSettings()
        self._store: ObjectStore | None = None
        self._server: s3server.MotoS3 | None = None
        self._data: Path | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        #: What each catch-up read's restart and read took from the store (for the note).
        self.read_log: list[tuple[Restart, RequestCounts]] = []
        self.tuning = self.describe_tuning()

    def describe_tuning(self) -> str:
        return (
            f"{self.store_description}; {journal_settings(self.settings)}; ingest pipelined with "
            f"append_many, {ingest_window} batches of 10,000 records in flight (directory row: 8); "
            f"single appends open-loop from {producer_threads_max} producer threads started before the "
            "first timed append; gc.freeze() after start as `odradek serve` does; each catch-up "
            "read after restarting the agent on an empty cache (not timed)"
        )

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._store

    def prepare(self, allow_install: bool, progress: Progress) -> None:
        s3server.require_moto()

    def open_store(self, scratch: Path, progress: Progress) -> ObjectStore:
        self._server = s3server.MotoS3(scratch)
        progress(f"{self.name}: starting moto's S3 server on port {self._server.port}")
        self._server.start()
        return self._server.open(f"bench-{uuid.uuid4().hex[:8]}")

    def start(self, scratch: Path, progress: Progress) -> None:
        self._store = self.open_store(scratch, progress)
        self._data = scratch / "data"
        self._open()

    def _open(self) -> None:
        if self._data is None:
            raise RuntimeError(f"{self.name} is not started")
        self._client = odradek.open(self._data, store=self.store, store_settings=self.settings)
        # As `odradek serve` does once it has started (an agent is a served process):
        # what start made lives as long as the agent, so later full collections do not
        # scan it. Without this, one full collection of the bench process (the engine
        # plus every dataset) stalls every append in flight for 30-40 ms.
        gc.freeze()

    def restart(self) -> Restart:
        """Close the agent (its last checkpoint), delete its cache, start it again on the
        store: the figure is the start, which rebuilds the cache from the store."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        if self._data is not None:
            shutil.rmtree(self._data, ignore_errors=True)
        before = self.store.counts()
        started = timing.now()
        self._open()
        return Restart(timing.now() - started, self.store.counts() - before)

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        try:
            super().stop()
        finally:
            self._store = None  # an in-memory store's objects go with it
            server, self._server = self._server, None
            if server is not None:
                server.stop()

    def versions(self) -> dict[str, str]:
        found = super().versions()
        found["obstore"] = package_version("obstore")
        if self._server is not None:
            found["moto"] = package_version("moto")
        return found

    # -- operations -------------------------------------------------------------------

    def write(self, stream: str, data: Dataset) -> float:
        """As the directory row writes (the same batches), with ``ingest_window`` in flight."""
        topic = topic_name(stream)
        self.client.create_topic(topic)
        value_size = max(1, data.value_bytes // max(1, len(data)))
        batches = data.batches(max(1, min(batch_records_max, batch_bytes_max // value_size)))
        started = timing.now()
        self.client.append_many(topic, batches, window=ingest_window)
        return timing.now() - started

    def read_all(self, stream: str, expected: int) -> float:
        restart = self.restart()
        before = self.store.counts()
        started = timing.now()
        received = sum(
            batch.num_rows for batch in self.client.read(topic_name(stream), start="earliest", wait=0)
        )
        elapsed = timing.now() - started
        self.read_log.append((restart, self.store.counts() - before))
        check_count("read", received, expected)
        return elapsed

    def append_latencies(self, stream: str, data: Dataset, rate_per_second: float) -> list[float]:
        """Open loop: each append is handed to a producer thread at its scheduled time
        and timed from then to its acknowledgement (waiting for a free thread counts)."""
        topic = topic_name(stream)
        singles = data.batches(1)
        latencies = [0.0] * len(singles)
        append = self.client.append

        def one(index: int, batch: pa.RecordBatch, send_at: float) -> None:
            append(topic, batch)
            latencies[index] = timing.now() - send_at

        pool = self._producers()
        sent = []
        send_times = timing.schedule(len(singles), rate_per_second)
        for index, (batch, send_at) in enumerate(zip(singles, send_times, strict=True)):
            timing.wait_until(send_at)
            sent.append(pool.submit(one, index, batch, send_at))
        for future in sent:
            future.result()
        return latencies

    def _producers(self) -> concurrent.futures.ThreadPoolExecutor:
        """The producer threads, started before the first timed append and kept across
        runs: an executor starts a thread per submit until it has enough, and timing that
        (thousands of thread starts in a run's first 100 ms) measured the harness."""
        if self._pool is None:
            pool = concurrent.futures.ThreadPoolExecutor(
                producer_threads_max, thread_name_prefix="bench-producer"
            )
            started = threading.Barrier(producer_threads_max + 1)
            for _ in range(producer_threads_max):
                pool.submit(started.wait)
            started.wait()
            self._pool = pool
        return self._pool


class OdradekStoreLatency(OdradekStore):
    """The embedded engine on an in-memory store whose requests take a fixed time."""

    def __init__(self, put_seconds: float, read_seconds: float, name: str, like: str) -> None:
        super().__init__()
        self.put_seconds = put_seconds
        self.read_seconds = read_seconds
        self.name = name
        milliseconds = f"{put_seconds * 1000:g} ms"
        self.title = f"Odradek on a store, {milliseconds} PUTs"
        self.durability = (
            f"in the object store before ack: the journal object holding the append was PUT to an "
            f"in-memory store that takes {milliseconds} per PUT ({like}-like latency; the memory store "
            "itself keeps nothing across a crash: this row models the latency, not the durability)"
        )
        self.store_description = (
            f"memory:// store with injected latency per request: PUT and DELETE "
            f"{milliseconds}, GET, HEAD and LIST {read_seconds * 1000:g} ms ({like}-like)"
        )
        self.tuning = self.describe_tuning()

    def prepare(self, allow_install: bool, progress: Progress) -> None:
        """Nothing to install: the store is in this process."""

    def open_store(self, scratch: Path, progress: Progress) -> ObjectStore:
        store = FaultyObjectStore(open_store("memory://"), seed=1)
        for kind in (PUT, DELETE):
            store.set_latency(kind, self.put_seconds)
        for kind in (GET, HEAD, LIST):
            store.set_latency(kind, self.read_seconds)
        return store


def express_like() -> OdradekStoreLatency:
    return OdradekStoreLatency(0.010, 0.005, "odradek-store-10ms", "S3 Express One Zone")


def standard_like() -> OdradekStoreLatency:
    return OdradekStoreLatency(0.060, 0.020, "odradek-store-60ms", "S3 Standard")


def read_note(system: OdradekStore) -> str:
    """Where a catch-up read's bytes came from, median over its runs."""
    if not system.read_log:
        return ""
    restarts = [restart for restart, _ in system.read_log]
    reads = [read for _, read in system.read_log]
    return (
        "each run on a fresh agent: the restart before it (not timed, median "
        f"{format_value(timing.median([r.seconds for r in restarts]))} s) downloaded "
        f"{format_value(timing.median([r.requests.bytes_got / MIB for r in restarts]))} MiB in "
        f"{timing.median([r.requests.gets for r in restarts]):,.0f} GETs (the active segment "
        "and the key index: a topic smaller than a segment comes down whole at start); the timed read "
        f"fetched {format_value(timing.median([r.bytes_got / MIB for r in reads]))} MiB in "
        f"{timing.median([r.gets for r in reads]):,.0f} GETs (sealed segments)"
    )
