"""What this machine can do at best: the limits the systems' figures are compared with.

* fsync'd sequential write bandwidth: append fixed-size chunks to a new file and
  ``fdatasync`` after each one, as a log that acknowledges every write would. Done with
  8 MiB chunks (the size of Odradek's large-value appends, and the disk's best case:
  the ingest figures are compared with this one), 1 MiB and 64 KiB chunks.
* fsync latency: one 100-byte append plus ``fdatasync``, the floor under any durable
  single-record append.
* loopback TCP bandwidth: a sender thread and a receiver thread over a socket pair on
  127.0.0.1, 1 MiB sends into a 1 MiB receive buffer (both release the GIL in the call).

Each probe runs once as a warm-up and then ``runs`` times; the median is the limit.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from odradek.bench import timing
from odradek.bench.units import MIB, format_value

tcp_chunk_bytes = MIB
fsync_latency_record_bytes = 100


@dataclasses.dataclass(frozen=True)
class Limit:
    name: str
    title: str
    unit: str
    value: float
    runs: list[float]


@dataclasses.dataclass(frozen=True)
class ProbeSizes:
    fsync_total_bytes: int
    fsync_latency_samples: int
    tcp_total_bytes: int


def probe_all(scratch: Path, sizes: ProbeSizes, runs: int, progress: Callable[[str], None]) -> list[Limit]:
    limits = [
        _repeat(
            "fsync_write_8mib",
            "fsync'd sequential write, 8 MiB writes",
            "MiB/s",
            runs,
            progress,
            lambda: fsync_write_bandwidth(scratch, 8 * MIB, sizes.fsync_total_bytes),
        ),
        _repeat(
            "fsync_write_1mib",
            "fsync'd sequential write, 1 MiB writes",
            "MiB/s",
            runs,
            progress,
            lambda: fsync_write_bandwidth(scratch, MIB, sizes.fsync_total_bytes),
        ),
        _repeat(
            "fsync_write_64kib",
            "fsync'd sequential write, 64 KiB writes",
            "MiB/s",
            runs,
            progress,
            lambda: fsync_write_bandwidth(scratch, 64 * 1024, sizes.fsync_total_bytes // 4),
        ),
        _repeat(
            "fsync_latency_p50",
            "100 B write + fdatasync, median latency",
            "ms",
            runs,
            progress,
            lambda: fsync_latency_ms(scratch, sizes.fsync_latency_samples),
        ),
        _repeat(
            "loopback_tcp",
            "loopback TCP, one connection",
            "MiB/s",
            runs,
            progress,
            lambda: loopback_tcp_bandwidth(sizes.tcp_total_bytes),
        ),
    ]
    return limits


def _repeat(
    name: str, title: str, unit: str, runs: int, progress: Callable[[str], None], measure: Callable[[], float]
) -> Limit:
    measure()  # warm-up: file system metadata, socket buffers, page cache
    values = [measure() for _ in range(runs)]
    limit = Limit(name, title, unit, timing.median(values), values)
    runs_text = ", ".join(format_value(v) for v in values)
    progress(f"limit {name}: {format_value(limit.value)} {unit} (runs {runs_text})")
    return limit


def fsync_write_bandwidth(scratch: Path, chunk_bytes: int, total_bytes: int) -> float:
    """MiB/s of ``write`` + ``fdatasync`` of ``chunk_bytes`` chunks into a new file."""
    chunk = os.urandom(chunk_bytes)
    count = max(1, total_bytes // chunk_bytes)
    path = scratch / f"fsync-probe-{chunk_bytes}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        started = timing.now()
        for _ in range(count):
            os.write(fd, chunk)
            os.fdatasync(fd)
        elapsed = timing.now() - started
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return count * chunk_bytes / MIB / elapsed


def fsync_latency_ms(scratch: Path, samples: int) -> float:
    """Median milliseconds of one small append plus ``fdatasync``."""
    record = os.urandom(fsync_latency_record_bytes)
    path = scratch / "fsync-latency-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    latencies: list[float] = []
    try:
        for _ in range(samples):
            started = timing.now()
            os.write(fd, record)
            os.fdatasync(fd)
            latencies.append(timing.now() - started)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return timing.median(latencies) * 1000.0


def loopback_tcp_bandwidth(total_bytes: int) -> float:
    """MiB/s through one TCP connection on 127.0.0.1, measured at the receiver."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        received: list[float] = []
        receiver = threading.Thread(target=_receive, args=(listener, total_bytes, received), daemon=True)
        receiver.start()
        with socket.create_connection(("127.0.0.1", port)) as sender:
            sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            chunk = memoryview(os.urandom(tcp_chunk_bytes))
            sent = 0
            while sent < total_bytes:
                sender.sendall(chunk)
                sent += len(chunk)
        receiver.join(timeout=60.0)
    if not received:
        raise RuntimeError("loopback probe: the receiver did not finish")
    return received[0]


def _receive(listener: socket.socket, total_bytes: int, result: list[float]) -> None:
    connection, _ = listener.accept()
    buffer = bytearray(tcp_chunk_bytes)
    with connection:
        got = connection.recv_into(buffer)
        started = timing.now()  # from the first byte: connection set-up is not bandwidth
        first = got
        while got < total_bytes:
            count = connection.recv_into(buffer)
            if count == 0:
                break
            got += count
        elapsed = timing.now() - started
    result.append((got - first) / MIB / elapsed)
