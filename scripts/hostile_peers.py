"""Hostile peers against a real `odradek serve`: its memory and threads, before and after.

    python scripts/hostile_peers.py [--inflight-bytes 256MiB] [--request-read-seconds 10]
                                    [--skip kafka,flight,metrics,registry]

Starts `odradek serve` (a temporary data directory, fsync off, every door on a free
loopback port) with the given in-flight budget and request deadline, passed as
ODRADEK_* environment variables (a server without these settings ignores them, so the
same script measures an older version too). Then, one after the other:

  kafka     8 connections, each declaring a 95 MiB frame and sending all of it but
            1 MiB, then stalling; held until the server drops them or the deadline
            plus 10 s pass
  flight    one DoPut of a single 1 GiB record batch (a message over the door's limit)
  metrics   2,000 connections to /metrics left idle for a few seconds
  registry  300 slow-loris clients sending a request one byte at a time, for the
            deadline plus 5 s

For each: the server's RSS (VmRSS) and threads from /proc/<pid>/status before, at
their peak during the scenario (sampled every 10 ms), and after its connections are
gone; whether the server still takes a normal append (Flight) and answers the registry
(from another peer address, 127.0.0.2) afterwards. Prints a Markdown table; the target
is a peak RSS within the budget + 100 MiB of the RSS before.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.flight as flight

import odradek
from odradek.config import parse_size
from odradek.ports import free_port

MiB = 1024 * 1024
KAFKA_CONNECTIONS = 8
KAFKA_FRAME_BYTES = 95 * MiB
DOPUT_BYTES = 1024 * MiB
METRICS_CONNECTIONS = 2000
SLOW_CLIENTS = 300
READY_SECONDS_MAX = 60.0


class Server:
    """One `odradek serve` process on free loopback ports."""

    def __init__(self, data_dir: str, inflight_bytes: str, request_read_seconds: float) -> None:
        self.kafka_port = free_port()
        self.registry_port = free_port()
        self.metrics_port = free_port()
        command = [
            sys.executable,
            "-m",
            "odradek.cli.main",
            "serve",
            "--data-dir",
            data_dir,
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            f"127.0.0.1:{self.kafka_port}",
            "--registry-listen",
            f"127.0.0.1:{self.registry_port}",
            "--metrics-listen",
            f"127.0.0.1:{self.metrics_port}",
            "--no-fsync",
            "--log-level",
            "error",
        ]
        environment = {
            **os.environ,
            "ODRADEK_INFLIGHT_BYTES": inflight_bytes,
            "ODRADEK_REQUEST_READ_SECONDS": str(request_read_seconds),
        }
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=environment
        )
        self.url = self._wait_ready()

    def _wait_ready(self) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + READY_SECONDS_MAX
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            match = re.search(r"ready url=(\S+)", line)
            if match:
                return match.group(1)
        self.process.kill()
        raise SystemExit("odradek serve did not become ready")

    def status(self) -> tuple[int, int]:
        """(RSS in MiB, threads) of the server process."""
        rss = threads = 0
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) // 1024
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        return rss, threads

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Peak:
    """The server's highest RSS and thread count while the block runs."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.rss = 0
        self.threads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            with contextlib.suppress(OSError):
                rss, threads = self.server.status()
                self.rss = max(self.rss, rss)
                self.threads = max(self.threads, threads)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- the scenarios ------------------------------------------------------------------------------


def _closed_by_server(sockets: list[socket.socket], seconds: float) -> int:
    """Wait up to ``seconds`` for the server to close ``sockets``; how many it closed."""
    closed = 0
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + seconds
        while closed < len(sockets) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(sock)
                    closed += 1
    return closed


def kafka_partial_frames(server: Server, hold_seconds: float) -> str:
    sockets = [socket.create_connection(("127.0.0.1", server.kafka_port)) for _ in range(KAFKA_CONNECTIONS)]
    piece = b"\0" * MiB

    def send(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # closed by the server, or blocked until we close it
            sock.sendall(struct.pack(">i", KAFKA_FRAME_BYTES))
            for _ in range(KAFKA_FRAME_BYTES // MiB - 1):
                sock.sendall(piece)

    senders = [threading.Thread(target=send, args=(sock,), daemon=True) for sock in sockets]
    for sender in senders:
        sender.start()
    time.sleep(2.0)  # let the bytes that the server reads arrive before the drop is awaited
    closed = _closed_by_server(sockets, hold_seconds)
    for sock in sockets:
        sock.close()
    for sender in senders:
        sender.join(30)
    return f"{closed}/{len(sockets)} dropped by the server"


def flight_oversized_doput(server: Server, hold_seconds: float) -> str:
    with odradek.connect(server.url) as client:
        client.create_topic("hostile.big", exist_ok=True)
    batch = pa.record_batch({"value": pa.array([b"x" * MiB] * (DOPUT_BYTES // MiB), pa.binary())})
    raw = flight.connect(server.url)
    try:
        writer, reader = raw.do_put(flight.FlightDescriptor.for_path("hostile.big"), batch.schema)
        writer.write_batch(batch)
        writer.done_writing()
        reader.read()
        writer.close()
        outcome = "accepted"
    except flight.FlightError as exc:
        outcome = "refused: " + str(exc).split(". Detail")[0][:90]
    finally:
        raw.close()
    del batch
    return outcome


def metrics_idle_connections(server: Server, hold_seconds: float) -> str:
    sockets = []
    for _ in range(METRICS_CONNECTIONS):
        with contextlib.suppress(OSError):
            sockets.append(socket.create_connection(("127.0.0.1", server.metrics_port), timeout=10))
    time.sleep(3.0)
    closed = _closed_by_server(sockets, 2.0)
    for sock in sockets:
        sock.close()
    return f"{len(sockets)} opened, {closed} refused"


def registry_slow_loris(server: Server, hold_seconds: float) -> str:
    sockets = []
    for _ in range(SLOW_CLIENTS):
        with contextlib.suppress(OSError):
            sockets.append(socket.create_connection(("127.0.0.1", server.registry_port), timeout=10))
    request = b"POST /subjects/x/versions HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
    stop = threading.Event()
    gone: set[socket.socket] = set()

    def trickle() -> None:
        position = 0
        while not stop.wait(0.2):
            for sock in sockets:
                if sock in gone:
                    continue
                try:
                    sock.send(request[position % len(request) : position % len(request) + 1])
                except OSError:
                    gone.add(sock)
            position += 1

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    time.sleep(1.0)
    answered_during = _registry_answers(server)
    deadline = time.monotonic() + hold_seconds
    while len(gone) < len(sockets) and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    trickler.join()
    for sock in sockets:
        sock.close()
    during = "answered" if answered_during else "no answer"
    return f"{len(gone)}/{len(sockets)} dropped by the server; registry {during} meanwhile"


def _registry_answers(server: Server) -> bool:
    try:
        connection = http.client.HTTPConnection(
            "127.0.0.1", server.registry_port, timeout=10, source_address=("127.0.0.2", 0)
        )
        connection.request("GET", "/subjects")
        ok = connection.getresponse().status == 200
        connection.close()
        return ok
    except OSError:
        return False


def _serves(server: Server) -> str:
    try:
        with odradek.connect(server.url) as client:
            client.create_topic("hostile.check", exist_ok=True)
            client.append("hostile.check", [{"value": b"still here"}])
        appended = "append ok"
    except Exception as exc:  # noqa: BLE001 - reported in the table
        appended = f"append failed ({type(exc).__name__})"
    registry = "registry ok" if _registry_answers(server) else "registry failed"
    return f"{appended}, {registry}"


SCENARIOS: dict[str, tuple[str, Callable[[Server, float], str]]] = {
    "kafka": ("8 Kafka connections, partial 95 MiB frames", kafka_partial_frames),
    "flight": ("one 1 GiB DoPut", flight_oversized_doput),
    "metrics": ("2,000 idle metrics connections", metrics_idle_connections),
    "registry": ("300 slow-loris registry clients", registry_slow_loris),
}


@contextlib.contextmanager
def running(inflight_bytes: str, request_read_seconds: float) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="odradek-hostile-") as data_dir:
        server = Server(os.path.join(data_dir, "data"), inflight_bytes, request_read_seconds)
        try:
            yield server
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inflight-bytes", default="256MiB")
    parser.add_argument("--request-read-seconds", type=float, default=10.0)
    parser.add_argument("--skip", default="", help="comma-separated scenarios to leave out")
    args = parser.parse_args()
    budget_mib = (parse_size(args.inflight_bytes, "--inflight-bytes") or 0) // MiB
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # 2,000 sockets here and there
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 16_384)), hard))
    skipped = {name.strip() for name in args.skip.split(",") if name.strip()}
    print(f"budget {budget_mib} MiB, request deadline {args.request_read_seconds:g} s")
    print()
    print("| scenario | RSS before | peak RSS | RSS after | peak - before | threads before | peak | after "
          "| what happened | afterwards |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    with running(args.inflight_bytes, args.request_read_seconds) as server:
        for name, (title, scenario) in SCENARIOS.items():
            if name in skipped:
                continue
            time.sleep(1.0)
            rss_before, threads_before = server.status()
            with Peak(server) as peak:
                outcome = scenario(server, args.request_read_seconds + 10.0)
                time.sleep(1.0)
            time.sleep(2.0)  # closed connections end their threads
            rss_after, threads_after = server.status()
            growth = peak.rss - rss_before
            verdict = "within" if growth <= budget_mib + 100 else "OVER"
            print(
                f"| {title} | {rss_before} MiB | {peak.rss} MiB | {rss_after} MiB | {growth} MiB ({verdict} "
                f"budget + 100) | {threads_before} | {peak.threads} | {threads_after} | {outcome} "
                f"| {_serves(server)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
