"""On a store, an append is acknowledged by the journal flush holding its own write.

Goal: an append waits for the journal object that holds its frame, and for nothing
later: with two flushes in flight, the append of the first is acknowledged (and
readable) as soon as the first is in the store, while the second is still uploading.
Durability still follows the journal's order: an append whose flush landed before an
earlier flush did is not acknowledged until that earlier one is in the store too, so an
acknowledged append never depends on a flush that could still fail. Many appenders
waiting side by side are each acknowledged once, with dense offsets, and what they were
told is what a reader and a new agent find.

Method: an engine on a memory store whose journal PUTs each wait at a gate the test
opens (the fault-injecting store's latency, paused until released), with a flush window
long enough that only the test cuts flushes. Appends are submitted (written) first and
waited for on threads afterwards, so both are written before either waits: the group
commit must find each append's own flush, not the one open when it looks. No timing
assertions: everything is awaited with generous deadlines.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from stores import read_all

from odradek.engine import Engine
from odradek.engine.topic import PendingAppend
from odradek.errors import OdradekError
from odradek.storage.agent import StoreSettings
from odradek.storage.objectfaults import FaultyObjectStore
from odradek.storage.objects import PUT, open_store
from odradek.storage.storedisk import StoreDisk

DEADLINE_SECONDS = 30.0


class Gates:
    """The pause of every PUT: each waits at its own gate, in the order they started."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.gates: list[threading.Event] = []
        self._lock = threading.Lock()

    def pause(self, _seconds: float) -> None:
        gate = threading.Event()
        with self._lock:
            self.gates.append(gate)
        self.started.release()
        if not gate.wait(DEADLINE_SECONDS):
            raise AssertionError("a PUT's gate was never opened")

    def release_all(self) -> None:
        with self._lock:
            for gate in self.gates:
                gate.set()


class Waiter:
    """A thread waiting for one pending append's acknowledgement."""

    def __init__(self, pending: PendingAppend) -> None:
        self.pending = pending
        self.error: OdradekError | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.pending.wait()
        except OdradekError as exc:  # reported by the test
            self.error = exc

    def acknowledged(self) -> bool:
        self.thread.join(DEADLINE_SECONDS)
        if self.error is not None:
            raise self.error
        return not self.thread.is_alive()


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[tuple[Engine, StoreDisk, Gates]]:
    gates = Gates()
    store = FaultyObjectStore(open_store("memory://"), seed=1, pause=gates.pause)
    settings = StoreSettings(flush_seconds=3600.0)  # only the test (or an idle journal) cuts
    engine = Engine(tmp_path / "cache", store=store, store_settings=settings)
    try:
        engine.create_topic("orders")
        disk = engine.disk
        assert isinstance(disk, StoreDisk)
        store.set_latency(PUT, 0.001)  # from here on every PUT waits at a gate
        yield engine, disk, gates
    finally:
        gates.release_all()
        store.clear()
        engine.close()


def _write_and_cut(engine: Engine, disk: StoreDisk, gates: Gates, value: bytes) -> PendingAppend:
    """Write one append, cut its flush and see its upload start (held at its gate)."""
    pending = engine.submit_append("orders", [{"key": b"k", "value": value}])
    disk.writer.cut()
    assert gates.started.acquire(timeout=DEADLINE_SECONDS), "the flush's upload did not start"
    return pending


def test_an_append_is_acknowledged_by_its_own_flush_while_a_later_one_uploads(
    gated: tuple[Engine, StoreDisk, Gates],
) -> None:
    engine, disk, gates = gated
    first = _write_and_cut(engine, disk, gates, b"1")
    second = _write_and_cut(engine, disk, gates, b"2")  # both written before either waits
    first_waiter, second_waiter = Waiter(first), Waiter(second)
    gates.gates[0].set()  # the first flush lands; the second is still held
    assert first_waiter.acknowledged(), "the first append waited for the flush after its own"
    assert not second.ready()
    assert read_all(engine, "orders").column("value").to_pylist() == [b"1"]  # only what is durable
    gates.gates[1].set()
    assert second_waiter.acknowledged()
    assert read_all(engine, "orders").column("value").to_pylist() == [b"1", b"2"]


def test_a_flush_landing_before_an_earlier_one_acknowledges_nothing_until_it_lands(
    gated: tuple[Engine, StoreDisk, Gates],
) -> None:
    engine, disk, gates = gated
    first = _write_and_cut(engine, disk, gates, b"1")
    second = _write_and_cut(engine, disk, gates, b"2")
    first_waiter, second_waiter = Waiter(first), Waiter(second)
    landed = disk.writer.flushes
    gates.gates[1].set()  # the later flush lands first
    deadline = threading.Event()
    for _ in range(int(DEADLINE_SECONDS / 0.01)):
        if disk.writer.flushes > landed:
            break
        deadline.wait(0.01)
    assert disk.writer.flushes == landed + 1, "the second flush did not land"
    assert not first.ready() and not second.ready()  # the first flush could still fail
    assert sum(batch.num_rows for batch in engine.read("orders", wait=0)) == 0
    gates.gates[0].set()
    assert first_waiter.acknowledged() and second_waiter.acknowledged()
    assert read_all(engine, "orders").column("value").to_pylist() == [b"1", b"2"]


def test_appends_from_many_threads_are_each_acknowledged_once_durable(tmp_path: Path) -> None:
    """Many appenders waiting side by side on a slow store: each is acknowledged with its
    own offsets, every acknowledged append is read back, and a new agent on an empty
    cache finds them all in the store."""
    store = FaultyObjectStore(open_store("memory://"), seed=1)
    store.set_latency(PUT, 0.005)
    settings = StoreSettings(flush_seconds=0.002)
    threads, appends = 32, 20
    results: dict[bytes, int] = {}
    failures: list[BaseException] = []
    lock = threading.Lock()
    with Engine(tmp_path / "cache", store=store, store_settings=settings) as engine:
        engine.create_topic("orders")

        def appender(thread: int) -> None:
            try:
                for index in range(appends):
                    value = f"{thread}-{index}".encode()
                    result = engine.append("orders", [{"key": b"k%d" % thread, "value": value}])
                    with lock:
                        results[value] = result.base_offset
            except OdradekError as exc:
                failures.append(exc)

        workers = [threading.Thread(target=appender, args=(thread,)) for thread in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(DEADLINE_SECONDS)
        assert not failures and not any(worker.is_alive() for worker in workers)
        assert sorted(results.values()) == list(range(threads * appends))  # dense, each once
        assert _offsets_by_value(read_all(engine, "orders")) == results
    with Engine(tmp_path / "fresh", store=store, store_settings=settings) as fresh:
        assert _offsets_by_value(read_all(fresh, "orders")) == results


def _offsets_by_value(table: pa.Table) -> dict[bytes, int]:
    return dict(zip(table.column("value").to_pylist(), table.column("offset").to_pylist(), strict=True))
