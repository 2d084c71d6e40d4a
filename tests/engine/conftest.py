"""Shared fixtures of the engine tests.

Every test gets a fresh data directory under ``tmp_path``. Clients are opened with
``fsync=False`` unless durability is what a test is about: the tests here check
semantics, and the crash tests (test_crash.py) check what survives a power cut.
Helpers that several files need (opening and reopening a client, reading a whole topic
into one table, building records) are fixtures, so the test files never import each
other.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest

import odradek
from odradek.records import STORED_SCHEMA


@pytest.fixture
def data_dir(tmp_path: os.PathLike[str]) -> str:
    return os.path.join(os.fspath(tmp_path), "data")


@pytest.fixture
def open_client(data_dir: str) -> Iterator[Callable[..., odradek.EmbeddedClient]]:
    """A factory: ``open_client(**options)`` opens the test's data directory.

    Every client it opened is closed at the end of the test (closing twice is fine).
    """
    opened: list[odradek.EmbeddedClient] = []

    def factory(**options: Any) -> odradek.EmbeddedClient:
        options.setdefault("fsync", False)
        client = odradek.open(data_dir, **options)
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.close()


@pytest.fixture
def client(open_client: Callable[..., odradek.EmbeddedClient]) -> odradek.EmbeddedClient:
    return open_client()


@pytest.fixture
def reopen(
    open_client: Callable[..., odradek.EmbeddedClient],
) -> Callable[..., odradek.EmbeddedClient]:
    """``reopen(client)`` closes ``client`` cleanly and opens the same directory again."""

    def do_reopen(old: odradek.EmbeddedClient, **options: Any) -> odradek.EmbeddedClient:
        old.close()
        return open_client(**options)

    return do_reopen


@pytest.fixture
def read_all() -> Callable[..., pa.Table]:
    """``read_all(client, pattern, **read_options)``: everything a non-waiting read
    yields, as one table (empty tables keep the stored schema)."""

    def do_read(client: odradek.EmbeddedClient, pattern: str, **options: Any) -> pa.Table:
        options.setdefault("wait", 0)
        batches = list(client.read(pattern, **options))
        if not batches:
            return STORED_SCHEMA.empty_table()
        return pa.Table.from_batches(batches)

    return do_read


@pytest.fixture
def make_records() -> Callable[..., list[dict[str, Any]]]:
    """``make_records(n, keys=None, size=8, prefix=b"v")``: n dict records whose
    values are ``prefix + index`` padded to ``size`` bytes; ``keys`` cycles."""

    def make(
        count: int, keys: list[bytes | None] | None = None, size: int = 8, prefix: bytes = b"v"
    ) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for index in range(count):
            value = (prefix + str(index).encode()).ljust(size, b".")
            record: dict[str, Any] = {"value": value}
            if keys:
                record["key"] = keys[index % len(keys)]
            records.append(record)
        return records

    return make


class BackgroundRead:
    """Iterates a read on a daemon thread; the test takes what it yielded from a queue.

    The read iterator is created by the caller (in the test's thread), so its start
    position is fixed before anything else happens. Timeouts only guard against hangs.
    """

    def __init__(self, batches: Iterator[pa.RecordBatch], stop_after_rows: int | None = None) -> None:
        self._batches = batches
        self._stop_after_rows = stop_after_rows
        self._queue: queue.Queue[pa.RecordBatch] = queue.Queue()
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rows = 0
        try:
            for batch in self._batches:
                self._queue.put(batch)
                rows += batch.num_rows
                if self._stop_after_rows is not None and rows >= self._stop_after_rows:
                    break
        except BaseException as error:  # noqa: BLE001 - the test checks it
            self.error = error
        finally:
            self.done.set()

    def take(self, rows: int, timeout: float = 30.0) -> pa.Table:
        """The next batches, ``rows`` records in all (fails the test if they never come)."""
        batches: list[pa.RecordBatch] = []
        count = 0
        while count < rows:
            try:
                batch = self._queue.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"the reader yielded {count} of {rows} records (error: {self.error!r})")
            batches.append(batch)
            count += batch.num_rows
        return pa.Table.from_batches(batches)

    def rest(self) -> list[pa.RecordBatch]:
        """What the reader yielded and nobody took yet (call after it ended)."""
        batches = []
        while not self._queue.empty():
            batches.append(self._queue.get_nowait())
        return batches

    def finish(self, timeout: float = 30.0) -> None:
        """Wait for the read to end by itself; fail the test if it does not."""
        if not self.done.wait(timeout):
            pytest.fail("the read did not end")
        self._thread.join(timeout)


@pytest.fixture
def background_read() -> Callable[..., BackgroundRead]:
    return BackgroundRead
