"""Helpers of the object-store agent tests: store URLs on each backend, `odradek serve
--store` subprocesses, a moto S3 server that can be stopped and started again on one
port, and a history of acknowledged appends to compare a log with.

The S3 servers come from tests/storage/object_servers.py and the `odradek serve`
subprocesses from tests/cli/odradek_process.py; conftest.py puts both directories on
the import path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from object_servers import S3Server, free_ports, moto_server, unique_prefix
from odradek_process import Server

import odradek

# Tests use a short journal window: an append waits for its flush, and a test makes
# thousands of them.
FLUSH_MS = "2"
# Generous deadlines for conditions a test waits for (never an assertion about speed).
DEADLINE_SECONDS = 60.0


@dataclasses.dataclass
class StoreURL:
    """Where a test's store is: the URL and the environment that reaches it."""

    url: str
    env: dict[str, str]
    options: dict[str, str | bool]


def file_store(tmp_path: Path) -> StoreURL:
    return StoreURL(f"file://{tmp_path / 'store'}", {}, {})


def moto_store(server: S3Server) -> StoreURL:
    return StoreURL(server.url(unique_prefix()), server.env, server.options)


class StoreServer(Server):
    """`odradek serve --store URL` on free loopback ports (Flight, Kafka, registry)."""

    def __init__(self, data_dir: Path, store: StoreURL, *args: str) -> None:
        self.kafka_port, self.registry_port = free_ports(2)
        self.store = store
        super().__init__(
            data_dir,
            "--store",
            store.url,
            "--store-flush-ms",
            FLUSH_MS,
            "--kafka-listen",
            f"127.0.0.1:{self.kafka_port}",
            "--registry-listen",
            f"127.0.0.1:{self.registry_port}",
            *args,
            env=store.env,
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def registry(self) -> str:
        return f"http://127.0.0.1:{self.registry_port}"


def wait_for(condition: Callable[[], bool], what: str, deadline: float = DEADLINE_SECONDS) -> None:
    """Wait until ``condition()`` holds; fail naming ``what`` after a generous deadline."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not happen within {deadline:g} s")
        time.sleep(0.02)


def moto_on_port(directory: Path, port: int) -> contextlib.AbstractContextManager[S3Server]:
    """moto's S3 server on ``port`` with the test bucket (a server started again on the
    port is empty, its bucket made anew)."""
    return moto_server(directory, port)


class History:
    """Every acknowledged (key, value) of a test's appenders, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acked: list[tuple[int, bytes, bytes]] = []  # (offset, key, value)
        self.failures: list[BaseException] = []

    def record(self, base_offset: int, keys: list[bytes], values: list[bytes]) -> None:
        with self._lock:
            self.acked.extend(
                (base_offset + index, key, value) for index, (key, value) in enumerate(zip(keys, values))
            )

    def fail(self, error: BaseException) -> None:
        with self._lock:
            self.failures.append(error)

    def check(self, table: pa.Table) -> None:
        """Every acknowledged record is in ``table`` exactly once, at its offset;
        offsets are dense from 0."""
        offsets = table.column("offset").to_pylist()
        assert offsets == list(range(len(offsets))), "offsets are not dense from 0"
        keys = table.column("key").to_pylist()
        values = table.column("value").to_pylist()
        seen: dict[bytes, int] = {}
        for value in values:
            seen[value] = seen.get(value, 0) + 1
        for offset, key, value in self.acked:
            assert offset < len(values), f"acknowledged record {value!r} at {offset} is missing"
            assert (keys[offset], values[offset]) == (key, value), (
                f"acknowledged record {value!r} is not at its offset {offset}"
            )
            assert seen[value] == 1, f"acknowledged record {value!r} is in the log {seen[value]} times"


def read_all(client: odradek.EmbeddedClient | odradek.RemoteClient, topic: str) -> pa.Table:
    return pa.Table.from_batches(list(client.read(topic, wait=0)))


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.communicate()
