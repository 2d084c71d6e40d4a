"""A standby's Kafka door: it leads Kafka clients to the owner (decision record 0013).

A cluster agent that does not own the data has no engine, so it cannot answer Kafka
requests itself. Refusing connections (what a standby did before) leaves a client whose
bootstrap list, or whose one load-balanced bootstrap address, reaches a standby retrying
until it happens to reach the owner. Instead a standby's Kafka port *relays* the few
requests a client sends before it knows the cluster: ApiVersions, Metadata,
FindCoordinator and DescribeCluster (and, on a door with authentication, SaslHandshake
and SaslAuthenticate, which authenticate the relay's upstream connection of that
client) go, frame for frame, to the owner's Kafka door, and
its answers come back unchanged. They name the owner (its advertised address) as the
only broker, the leader of every partition and the coordinator of every group, so the
client's next connection goes to the owner, as a Kafka broker redirects through
metadata.

Any other request on a standby's connection (a Produce, a Fetch, a group request: the
client's metadata went stale in a failover) closes the connection: the client treats
that as a broker lost, refreshes its metadata, and finds the new owner. So does every
request while no owner is known (a failover in progress).

With TLS (``--tls-cert``), the relay serves TLS with the doors' context and reaches the
owner over TLS too, trusting ``--tls-ca`` (else the system's CAs) and presenting the
agent's own certificate (which mTLS asks for).

Bounded like the Kafka door: frames up to ``kafka_frame_bytes_max``, connections by the
door's caps, a request that stops arriving or an owner that does not answer within the
door's ``request_seconds`` closes the connection; one request is relayed at a time per
connection (Kafka answers in order on a connection, so a pipelining client waits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import threading
from collections.abc import Callable

from odradek import limits
from odradek.protocols import connections
from odradek.protocols.kafka.codec.api import ApiKey, frame_size
from odradek.protocols.kafka.codec.primitives import DecodeError

log = logging.getLogger(__name__)

#: What a client asks before it knows the cluster: relayed to the owner.
RELAYED = frozenset(
    {
        ApiKey.API_VERSIONS,
        ApiKey.METADATA,
        ApiKey.FIND_COORDINATOR,
        ApiKey.DESCRIBE_CLUSTER,
        # With authentication the owner asks for SASL before Metadata: the client's
        # exchange goes to the owner on the relay's one upstream connection.
        ApiKey.SASL_HANDSHAKE,
        ApiKey.SASL_AUTHENTICATE,
    }
)
_API_KEY = struct.Struct(">h")
_PREFIX_BYTES = 4

#: Where the owner's Kafka door is now (``host``, ``port``), or None while none is known.
OwnerAddress = Callable[[], tuple[str, int] | None]


class KafkaRelay:
    """The relay on ``host:port`` (see the module docstring); runs on its own thread."""

    def __init__(
        self,
        host: str,
        port: int,
        owner: OwnerAddress,
        bounds: connections.DoorLimits | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        upstream_tls: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._owner = owner
        self._tls = tls  # served to clients
        self._upstream_tls = upstream_tls  # to reach the owner (made per connection: reloads)
        self.bounds = bounds or connections.KAFKA
        self.slots = connections.ConnectionSlots.of("kafka", self.bounds)
        self.relayed = 0  # requests relayed to the owner
        self.refused = 0  # connections closed on a request that is not relayed, or no owner
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> KafkaRelay:
        """Listen; return once the port accepts connections (raises if it cannot bind)."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                failure.append(exc)
                started.set()
                self._loop.close()
                return
            started.set()
            try:
                self._loop.run_forever()
            finally:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
                self._loop.close()

        self._thread = threading.Thread(target=run, name="odradek-kafka-relay", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve,
            self.host,
            self.port,
            limit=1 << 20,
            ssl=self._tls,
            ssl_handshake_timeout=limits.tls_handshake_seconds_max if self._tls is not None else None,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("Kafka door on %s:%d relays to the owner (this agent stands by)", self.host, self.port)

    def close(self) -> None:
        """Stop listening and close every connection (the port is free on return)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._stop(), self._loop)
        try:
            future.result(timeout=limits.shutdown_drain_seconds_max)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            thread.join(timeout=limits.shutdown_drain_seconds_max)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- connections -----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host = connections.peer_host(writer.get_extra_info("peername"))
        if self.slots.acquire(host) is not None:
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                request = await self._read(reader, self.bounds.idle_seconds)
                if request is None:
                    return
                target = self._owner()
                if _api_key(request) not in RELAYED or target is None:
                    self.refused += 1
                    log.debug(
                        "Kafka relay: closing a connection on API %d (%s)",
                        _api_key(request),
                        "no owner known" if target is None else "served by the owner only",
                    )
                    return
                if upstream is None:
                    secure = self._upstream_tls() if self._upstream_tls is not None else None
                    upstream = await asyncio.wait_for(
                        asyncio.open_connection(
                            *target, limit=1 << 20, ssl=secure, server_hostname=target[0] if secure else None
                        ),
                        self.bounds.request_seconds,
                    )
                upstream[1].write(request)
                await upstream[1].drain()
                response = await self._read(upstream[0], self.bounds.request_seconds)
                if response is None:
                    return  # the owner closed: so does this connection
                writer.write(response)
                await writer.drain()
                self.relayed += 1
        except (OSError, TimeoutError, asyncio.IncompleteReadError, DecodeError, ssl.SSLError) as exc:
            log.debug("Kafka relay: connection closed: %s", exc)
        finally:
            if task is not None:
                self._connections.discard(task)
            self.slots.release(host)
            for stream in (writer, upstream[1] if upstream is not None else None):
                if stream is not None:
                    with contextlib.suppress(OSError, RuntimeError):
                        stream.close()

    @staticmethod
    async def _read(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
        """One whole frame, its size prefix included; None at a clean end of stream."""
        try:
            prefix = await asyncio.wait_for(reader.readexactly(_PREFIX_BYTES), seconds)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return None
        body = await asyncio.wait_for(reader.readexactly(frame_size(prefix)), seconds)
        return prefix + body


def _api_key(frame: bytes) -> int:
    """The API key of a request frame (after its size prefix)."""
    if len(frame) < _PREFIX_BYTES + _API_KEY.size:
        raise DecodeError("a request frame too short for its header")
    return int(_API_KEY.unpack_from(frame, _PREFIX_BYTES)[0])


def start_kafka_relay(
    host: str,
    port: int,
    owner: OwnerAddress,
    bounds: connections.DoorLimits | None = None,
    *,
    tls: ssl.SSLContext | None = None,
    upstream_tls: Callable[[], ssl.SSLContext] | None = None,
) -> KafkaRelay:
    """Relay on ``host:port`` to the owner that ``owner()`` names (module docstring);
    ``tls``: the server context clients meet; ``upstream_tls``: makes the client context
    that reaches the owner."""
    return KafkaRelay(host, port, owner, bounds, tls=tls, upstream_tls=upstream_tls).start()
