"""The chaos run's object store: an S3 server as a subprocess (moto's, or SeaweedFS's
with ``server="seaweedfs"``: chaos/seaweedfs.py says why), and a fault proxy in front of
it through which the agents reach it.

The agents are other processes, so the in-process fault wrapper
(``storage/objectfaults.py``) cannot reach their stores; the proxy does the same from
outside: every request the agents make passes through it, and on demand it delays them
(latency drawn uniformly from a range) or answers ``503 SlowDown`` without forwarding
(refused before anything was done, as S3 throttling is), at a given probability. The
agents' stores retry, back off and, past their retries, fail the flush, which is what
the chaos test wants exercised. Requests are forwarded whole (the Host header kept, so
signatures stay valid), one upstream connection per client connection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import random
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from odradek.chaos import seaweedfs
from odradek.chaos.processes import Process, wait_until
from odradek.errors import InvalidRequest
from odradek.ports import free_ports

BUCKET = "odradek-chaos"
SERVERS = ("moto", "seaweedfs")
# moto imports Flask and boto at start, SeaweedFS starts five servers: slow on a loaded machine.
START_SECONDS_MAX = 90.0
PROBE_SECONDS = 5.0
# A request body or a response the proxy holds at once: the largest object an agent
# writes is a compacted segment, at most segment_bytes_default (256 MiB).
PROXY_BODY_BYTES_MAX = 512 * 1024 * 1024
# Upstream requests wait this long for moto; past it the client gets a 504.
UPSTREAM_SECONDS = 60.0
LATENCY_SECONDS_MAX = 30.0  # an injected delay, at most (a longer one is an outage)
# Headers of one hop only (RFC 9110 §7.6.1), never forwarded; content-length is set anew.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate. (injected by the chaos proxy)</Message>"
    b"<RequestId>chaos</RequestId></Error>"
)


@dataclasses.dataclass(frozen=True)
class StoreFaults:
    """What the proxy does to requests now: a latency range in seconds (each request
    waits a uniform draw from it) and the probability of a 503 SlowDown."""

    latency_seconds: tuple[float, float] = (0.0, 0.0)
    error_probability: float = 0.0

    def __post_init__(self) -> None:
        low, high = self.latency_seconds
        if not 0.0 <= low <= high <= LATENCY_SECONDS_MAX or not 0.0 <= self.error_probability <= 1.0:
            raise InvalidRequest(
                f"store faults: need 0 <= latency low <= high <= {LATENCY_SECONDS_MAX} s and an error "
                f"probability from 0 to 1, got {self.latency_seconds} and {self.error_probability}"
            )

    @property
    def none(self) -> bool:
        return self.latency_seconds[1] == 0.0 and self.error_probability == 0.0


class FaultProxy:
    """An HTTP proxy on a free loopback port in front of ``upstream`` (host, port)."""

    def __init__(self, upstream: tuple[str, int], *, seed: int = 0) -> None:
        self.upstream = upstream
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._faults = StoreFaults()
        self.counts: Counter[str] = Counter()  # requests, delayed, refused, upstream_errors
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.proxy = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="chaos-store-proxy", daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(PROBE_SECONDS)

    def set_faults(self, faults: StoreFaults) -> None:
        with self._lock:
            self._faults = faults

    def clear(self) -> None:
        self.set_faults(StoreFaults())

    @property
    def faults(self) -> StoreFaults:
        with self._lock:
            return self._faults

    def draw(self) -> tuple[float, bool]:
        """For one request: how long it waits, and whether it is refused."""
        with self._lock:
            faults = self._faults
            self.counts["requests"] += 1
            if faults.none:
                return 0.0, False
            low, high = faults.latency_seconds
            delay = self._random.uniform(low, high) if high else 0.0
            refused = self._random.random() < faults.error_probability
            self.counts["delayed"] += delay > 0
            self.counts["refused"] += refused
            return delay, refused

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy

    def handle_error(self, request: object, client_address: object) -> None:
        """A connection the client dropped (an agent killed mid-request) is counted, not
        printed."""
        self.proxy.count("connections_dropped")


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # An answer's head and body are two writes: with Nagle's algorithm the body waits for
    # the client's delayed ACK of the head, 40 ms a request.
    disable_nagle_algorithm = True
    server: _ProxyServer
    _upstream: http.client.HTTPConnection | None = None
    error_message_format: ClassVar[str] = "%(code)d %(message)s\n"  # type: ignore[misc]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        return  # quiet: a run makes millions of requests

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def do_PUT(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_DELETE(self) -> None:
        self._forward()

    def finish(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
        super().finish()

    def _forward(self) -> None:
        proxy = self.server.proxy
        try:
            body = self._body()
        except ValueError as exc:
            self.send_error(400, str(exc))
            return
        delay, refused = proxy.draw()
        if delay:
            time.sleep(delay)
        if refused:
            self._answer(503, "Slow Down", [("Content-Type", "application/xml")], _SLOW_DOWN)
            return
        headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP}
        try:
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(*proxy.upstream, timeout=UPSTREAM_SECONDS)
            self._upstream.request(self.command, self.path, body=body, headers=headers)
            response = self._upstream.getresponse()
            data = response.read(PROXY_BODY_BYTES_MAX + 1)
        except (OSError, http.client.HTTPException) as exc:
            if self._upstream is not None:
                self._upstream.close()
                self._upstream = None
            proxy.count("upstream_errors")
            self._answer(502, "Bad Gateway", [("Content-Type", "text/plain")], f"upstream: {exc}\n".encode())
            return
        if len(data) > PROXY_BODY_BYTES_MAX:
            self._answer(502, "Bad Gateway", [("Content-Type", "text/plain")], b"upstream answer too large\n")
            self.close_connection = True
            return
        kept = [(name, value) for name, value in response.getheaders() if name.lower() not in _HOP_BY_HOP]
        self._answer(response.status, response.reason, kept, data)

    def _answer(self, status: int, reason: str, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response(status, reason)
        head = self.command == "HEAD"
        for name, value in headers:
            # A HEAD's Content-Length describes the object, not this (empty) answer.
            if name.lower() != "content-length" or head:
                self.send_header(name, value)
        if not head:
            self.send_header("Content-Length", str(len(data)))
        elif not any(name.lower() == "content-length" for name, _ in headers):
            self.send_header("Content-Length", "0")
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > PROXY_BODY_BYTES_MAX:
            raise ValueError(f"a body of {length} bytes (at most {PROXY_BODY_BYTES_MAX})")
        return self.rfile.read(length) if length else None

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline(64).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > PROXY_BODY_BYTES_MAX:
                raise ValueError(f"a chunked body over {PROXY_BODY_BYTES_MAX} bytes")
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)  # the chunk's CRLF


@dataclasses.dataclass
class S3Store:
    """An S3 server behind the fault proxy: ``url(prefix)`` for ``--store``, ``env`` for
    the agents (they reach the server through the proxy), ``proxy`` to inject faults."""

    server: Process
    server_endpoint: str
    proxy: FaultProxy
    kind: str = "moto"

    def url(self, prefix: str) -> str:
        return f"s3://{BUCKET}/{prefix}"

    @property
    def env(self) -> dict[str, str]:
        return seaweedfs.env(self.proxy.endpoint)

    @property
    def options(self) -> dict[str, str | bool]:
        """The same as open_store options (through the proxy)."""
        return seaweedfs.options(self.proxy.endpoint)


@contextlib.contextmanager
def s3_store(directory: Path, *, seed: int = 0, server: str = "moto") -> Iterator[S3Store]:
    """The S3 server ``server`` (moto: objects in its memory; seaweedfs: in
    ``directory``) with the bucket made, behind a fault proxy with no faults; both
    stopped at the end."""
    if server not in SERVERS:
        raise InvalidRequest(f"unknown S3 server {server!r}: choose from {', '.join(SERVERS)}")
    directory.mkdir(parents=True, exist_ok=True)
    leftovers: tuple[Path, ...] = ()
    if server == "seaweedfs":
        if not seaweedfs.weed_binary().exists():
            raise InvalidRequest(f"SeaweedFS's weed is not at {seaweedfs.weed_binary()}: {seaweedfs.MISSING}")
        made = seaweedfs.command(directory, BUCKET)
        process = Process(
            "seaweedfs", made.argv, directory / "weed.log", cwd=directory, stop_signal=seaweedfs.STOP_SIGNAL
        )
        endpoint, leftovers = made.endpoint, made.leftovers
    else:
        (port,) = free_ports(1)
        endpoint = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "odradek.chaos.motoserver", "-H", "127.0.0.1", "-p", str(port)]
        process = Process("moto", command, directory / "moto.log", cwd=directory)
    host, _, port_text = endpoint.removeprefix("http://").partition(":")
    proxy = FaultProxy((host, int(port_text)), seed=seed)
    process.start()
    try:
        if server == "moto":
            process.wait_for(
                lambda: _bucket_made(endpoint), START_SECONDS_MAX, "the S3 server has its bucket"
            )
        else:
            process.wait_for(lambda: _answers(endpoint), START_SECONDS_MAX, "the S3 server answers")
        proxy.start()
        try:
            wait_until(lambda: _answers(proxy.endpoint), START_SECONDS_MAX, "the store proxy answers")
            yield S3Store(process, endpoint, proxy, server)
        finally:
            proxy.close()
    finally:
        process.stop()
        for path in leftovers:
            path.unlink(missing_ok=True)


def _bucket_made(endpoint: str) -> bool:
    """moto takes an unsigned bucket creation: True once it made the bucket."""
    request = urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=PROBE_SECONDS) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _answers(endpoint: str) -> bool:
    """A signed listing of the bucket at ``endpoint`` succeeds."""
    return seaweedfs.answers(endpoint, BUCKET)
