"""Redis Streams through redis-py: one stream per topic, pipelined XADD, durability set
by the append-only file's fsync policy.

Tuned: commands are pipelined (no MULTI) so one round trip carries a whole batch and,
with ``appendfsync always``, one fsync covers the batch (Redis fsyncs the AOF once per
event-loop pass, before replying); the hiredis parser is used when installed; RDB
snapshots and automatic AOF rewrites are off so that no fork competes with the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from odradek.bench import appenders, servers, timing
from odradek.bench.datasets import Dataset
from odradek.bench.outcomes import Skipped
from odradek.bench.systems.base import Progress, System, check_count, package_version
from odradek.ports import free_port

# Commands per pipeline round trip: enough to amortize the round trip and the fsync,
# small enough that redis-py's reply list stays modest. Large values go by bytes.
pipeline_commands_max = 1000
pipeline_bytes_max = 4 * 1024 * 1024
read_count = 10_000
group_read_count = 1000
scan_count = 10_000

_DURABILITY_LABEL = {
    "always": "fsync before reply",
    "everysec": "fsync every 1 s (weaker)",
}
_DURABILITY = {
    "always": "AOF appendfsync always: fsync before the reply",
    "everysec": "AOF appendfsync everysec: acked writes of the last ~1 s lost on a crash (weaker)",
}


class RedisStreams(System):
    def __init__(self, appendfsync: str) -> None:
        if appendfsync not in _DURABILITY:
            raise ValueError(f"appendfsync must be one of {sorted(_DURABILITY)}")
        self.appendfsync = appendfsync
        self.name = f"redis-{appendfsync}"
        self.title = f"Redis Streams ({appendfsync})"
        self.durability = _DURABILITY[appendfsync]
        self.durability_label = _DURABILITY_LABEL[appendfsync]
        self.weaker_durability = appendfsync != "always"
        self.tuning = (
            f"pipelined XADD without MULTI, up to {pipeline_commands_max} commands or "
            f"{pipeline_bytes_max // 2**20} MiB per round trip; hiredis reply parser; XRANGE and "
            f"XREADGROUP with COUNT {read_count}/{group_read_count}, XACK pipelined with the next read; "
            "RDB snapshots and automatic AOF rewrite off"
        )
        self._binary = ""
        self._server: servers.ServerProcess | None = None
        self._client: Any = None
        self._version = ""
        self._address = ""

    def prepare(self, allow_install: bool, progress: Progress) -> None:
        try:
            import redis  # noqa: F401
        except ImportError as exc:
            raise Skipped("the redis Python client is missing: pip install 'odradek[bench]'") from exc
        self._binary = servers.find_or_install("redis-server", "redis-server", allow_install, progress)

    def start(self, scratch: Path, progress: Progress) -> None:
        import redis

        port = free_port()
        argv = [
            self._binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(scratch),
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--auto-aof-rewrite-percentage",
            "0",
        ]
        self._server = servers.ServerProcess(self.name, argv, scratch / "redis.log")
        self._server.start()
        self._address = f"127.0.0.1:{port}"
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=120.0)
        self._server.wait_ready(lambda: bool(client.ping()))
        self._client = client
        self._version = str(client.info("server").get("redis_version", ""))

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def versions(self) -> dict[str, str]:
        parser = f"hiredis {package_version('hiredis')}" if _has_hiredis() else "python"
        return {"redis-server": self._version, "redis-py": package_version("redis"), "parser": parser}

    # -- operations -------------------------------------------------------------------

    def write(self, stream: str, data: Dataset) -> float:
        name = _stream_key(stream)
        return self._xadd_all([name] * len(data), data)

    def load_for_replay(self, stream: str, data: Dataset) -> None:
        # The Redis idiom for a key's history is a stream per key.
        names = pc.binary_join_element_wise(_stream_key(stream) + ":", data.key_text, "")
        self._xadd_all(names.to_pylist(), data)

    def _xadd_all(self, names: list[str], data: Dataset) -> float:
        keys, values = data.key_list, data.value_list
        value_size = max(1, data.value_bytes // max(1, len(data)))
        per_round_trip = max(1, min(pipeline_commands_max, pipeline_bytes_max // value_size))
        started = timing.now()
        for start in range(0, len(keys), per_round_trip):
            pipe = self._client.pipeline(transaction=False)
            for index in range(start, min(start + per_round_trip, len(keys))):
                pipe.execute_command("XADD", names[index], "*", "k", keys[index], "v", values[index])
            pipe.execute()
        return timing.now() - started

    def drop(self, stream: str) -> None:
        name = _stream_key(stream)
        self._client.delete(name)
        for batch in _chunks(self._client.scan_iter(match=f"{name}:*", count=scan_count), scan_count):
            self._client.unlink(*batch)

    def read_all(self, stream: str, expected: int) -> float:
        name = _stream_key(stream)
        received = 0
        low = "-"
        started = timing.now()
        while True:
            entries = self._client.xrange(name, min=low, max="+", count=read_count)
            if not entries:
                break
            received += len(entries)
            low = b"(" + entries[-1][0]
        elapsed = timing.now() - started
        check_count("XRANGE", received, expected)
        return elapsed

    def append_latencies(self, stream: str, data: Dataset, rate_per_second: float) -> list[float]:
        name = _stream_key(stream)
        keys, values = data.key_list, data.value_list
        send_times = timing.schedule(len(keys), rate_per_second)
        latencies: list[float] = []
        for key, value, send_at in zip(keys, values, send_times, strict=True):
            timing.wait_until(send_at)
            self._client.execute_command("XADD", name, "*", "k", key, "v", value)
            latencies.append(timing.now() - send_at)
        return latencies

    def append_target(self, stream: str) -> appenders.Target:
        return appenders.Target(f"{__name__}:RedisAppendSession", self._address, stream)

    def replay_key(self, stream: str, key: bytes, expected: int) -> float:
        name = f"{_stream_key(stream)}:{key.decode()}"
        started = timing.now()
        entries = self._client.xrange(name, min="-", max="+")
        elapsed = timing.now() - started
        check_count("XRANGE of the key's stream", len(entries), expected)
        return elapsed

    def consume_group(self, stream: str, group: str, count: int) -> float:
        name = _stream_key(stream)
        self._client.xgroup_create(name, group, id="0")
        received = 0
        pending: list[bytes] = []
        started = timing.now()
        while received < count:
            pipe = self._client.pipeline(transaction=False)
            if pending:
                pipe.xack(name, group, *pending)
            pipe.xreadgroup(group, "bench", {name: ">"}, count=min(group_read_count, count - received))
            replies = pipe.execute()
            batch = replies[-1][0][1] if replies[-1] else []
            if not batch:
                break
            pending = [entry_id for entry_id, _fields in batch]
            received += len(batch)
        if pending:
            self._client.xack(name, group, *pending)
        elapsed = timing.now() - started
        check_count("XREADGROUP", received, count)
        return elapsed


class RedisAppendSession:
    """Closed-loop single XADDs through one redis-py client (appenders.py); its threads
    share the client's connection pool, as redis-py's threads do."""

    def __init__(self, client: Any, name: str, threads: int, data: Dataset) -> None:
        self._client = client
        self._name = name
        self._threads = threads
        self._keys, self._values = data.key_list, data.value_list

    @classmethod
    def open(cls, address: str, stream: str, threads: int, data: Dataset) -> RedisAppendSession:
        import redis

        host, _, port = address.rpartition(":")
        client = redis.Redis(host=host, port=int(port), socket_timeout=120.0)
        client.ping()  # connected before the clock starts
        return cls(client, _stream_key(stream), threads, data)

    def run(self, start_at: float, seconds: float) -> list[float]:
        keys, values, name, command = self._keys, self._values, self._name, self._client.execute_command
        count = len(keys)
        spread = max(1, count // self._threads)

        def one(thread: int, n: int) -> None:
            index = (thread * spread + n) % count
            command("XADD", name, "*", "k", keys[index], "v", values[index])

        return appenders.run_threads(self._threads, start_at, seconds, one)

    def close(self) -> None:
        self._client.close()


def _stream_key(stream: str) -> str:
    return f"bench:{stream}"


def _has_hiredis() -> bool:
    try:
        import hiredis  # noqa: F401
    except ImportError:
        return False
    return True


def _chunks(items: Any, size: int) -> Any:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
