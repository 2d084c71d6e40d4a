"""The Kafka listener: an asyncio server, a thin shell around the codec and handlers.

Rules (as a Kafka broker's socket server)
-----------------------------------------
* Requests of one connection are handled in order, one at a time, and answered in
  order, so an idempotent producer's batches are appended in the order they were
  sent. The one overlap: once a Produce's records are written, its wait for fsync
  runs on while the next requests are read (``kafka_pipelined_produces_max`` per
  connection), so a producer with several requests in flight shares fsyncs with
  itself. Different connections are served concurrently.
* A frame larger than ``limits.kafka_frame_bytes_max`` closes the connection before it
  is read. A frame that does not decode, or names an API or version this broker does
  not serve, closes the connection (Kafka does the same: there is no response format
  for a request it cannot read) -- except ApiVersions, which is answered in version 0
  with UNSUPPORTED_VERSION and the supported ranges (KIP-511).
* A handler that fails unexpectedly is logged and closes its connection only; the
  listener keeps serving everybody else.

:func:`start_kafka_listener` runs the listener on its own event loop thread, for a
synchronous caller (``odradek serve``, tests); :class:`KafkaListener` runs inside an
existing loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from odradek import limits
from odradek.engine import Engine
from odradek.protocols.kafka import admin, data, group_api
from odradek.protocols.kafka.broker import Broker, client_host
from odradek.protocols.kafka.codec.api import (
    ApiKey,
    Request,
    UnsupportedRequest,
    decode_request,
    encode_response,
    frame_size,
)
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.primitives import DecodeError

log = logging.getLogger(__name__)

Handler = Callable[[Broker, Request], Awaitable[Any]]
Chunks = list[bytes | bytearray]

HANDLERS: dict[int, Handler] = {
    ApiKey.API_VERSIONS: data.api_versions,
    ApiKey.METADATA: data.metadata,
    ApiKey.PRODUCE: data.produce,
    ApiKey.FETCH: data.fetch,
    ApiKey.LIST_OFFSETS: data.list_offsets,
    ApiKey.INIT_PRODUCER_ID: data.init_producer_id,
    ApiKey.FIND_COORDINATOR: group_api.find_coordinator,
    ApiKey.JOIN_GROUP: group_api.join_group,
    ApiKey.SYNC_GROUP: group_api.sync_group,
    ApiKey.HEARTBEAT: group_api.heartbeat,
    ApiKey.LEAVE_GROUP: group_api.leave_group,
    ApiKey.OFFSET_COMMIT: group_api.offset_commit,
    ApiKey.OFFSET_FETCH: group_api.offset_fetch,
    ApiKey.DESCRIBE_GROUPS: group_api.describe_groups,
    ApiKey.LIST_GROUPS: group_api.list_groups,
    ApiKey.DELETE_GROUPS: group_api.delete_groups,
    ApiKey.CREATE_TOPICS: admin.create_topics,
    ApiKey.DELETE_TOPICS: admin.delete_topics,
    ApiKey.CREATE_PARTITIONS: admin.create_partitions,
    ApiKey.DESCRIBE_CONFIGS: admin.describe_configs,
    ApiKey.ALTER_CONFIGS: admin.alter_configs,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: admin.incremental_alter_configs,
    ApiKey.DESCRIBE_CLUSTER: admin.describe_cluster,
    ApiKey.SASL_HANDSHAKE: admin.sasl_handshake,
}

_EXPIRY_INTERVAL_SECONDS = 0.25


def _advertised(host: str, port: int, advertised: str | tuple[str, int] | None) -> tuple[str, int]:
    if advertised is None:
        if host in ("", "0.0.0.0", "::"):
            return socket.gethostname(), port
        return host, port
    if isinstance(advertised, tuple):
        return advertised
    name, _, number = advertised.rpartition(":")
    if not name:
        return advertised, port
    return name.strip("[]"), int(number)


class KafkaListener:
    """The Kafka door on the running event loop."""

    def __init__(
        self,
        engine: Engine,
        host: str = "127.0.0.1",
        port: int = 9092,
        advertised: str | tuple[str, int] | None = None,
        *,
        auto_create_topics: bool = True,
    ) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self._advertised = advertised
        self._auto_create = auto_create_topics
        self.broker: Broker | None = None
        self._server: asyncio.Server | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=1 << 20)
        bound = self._server.sockets[0].getsockname()
        self.port = int(bound[1])
        host, port = _advertised(self.host, self.port, self._advertised)
        self.broker = Broker(self.engine, host, port, auto_create_topics=self._auto_create)
        self._expiry = asyncio.create_task(self._expire_members())
        log.info("Kafka listener on %s:%d (advertised as %s:%d)", self.host, self.port, host, port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._expiry is not None:
            self._expiry.cancel()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self.broker is not None:
            self.broker.close()

    async def _expire_members(self) -> None:
        while True:
            await asyncio.sleep(_EXPIRY_INTERVAL_SECONDS)
            if self.broker is not None:
                self.broker.coordinator.expire()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        peer = writer.get_extra_info("peername")
        client_host.set(str(peer[0]) if peer else "")
        responses: asyncio.Queue[asyncio.Future[Chunks] | None] = asyncio.Queue()
        writing = asyncio.create_task(self._write_responses(responses, writer, peer))
        in_flight = asyncio.Semaphore(limits.kafka_pipelined_produces_max)
        try:
            while not writing.done():
                frame = await self._read_frame(reader)
                if frame is None:
                    break
                response = await self._respond(frame, peer, in_flight)
                if response is None:
                    break
                responses.put_nowait(response)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("Kafka connection from %s failed; closing it", peer)
        finally:
            responses.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(writing), limits.shutdown_drain_seconds_max)
            except (TimeoutError, asyncio.CancelledError):
                writing.cancel()
            if task is not None:
                self._connections.discard(task)
            writer.close()

    async def _write_responses(
        self, responses: asyncio.Queue[asyncio.Future[Chunks] | None], writer: asyncio.StreamWriter, peer: Any
    ) -> None:
        """Write responses in request order as they complete."""
        try:
            while (response := await responses.get()) is not None:
                chunks = await response
                if chunks:
                    writer.writelines(chunks)
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("Kafka connection from %s failed; closing it", peer)
        writer.close()

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes | None:
        prefix = await reader.readexactly(4)
        try:
            size = frame_size(prefix)
        except DecodeError as exc:
            log.warning("closing a Kafka connection: %s", exc)
            return None
        return await reader.readexactly(size)

    async def _respond(
        self, frame: bytes, peer: Any, in_flight: asyncio.Semaphore
    ) -> asyncio.Future[Chunks] | None:
        """The future response ([] when Kafka sends none), or None to close the connection.

        Every request is handled before the next one is read, except that a Produce's
        wait for durability runs on while the next requests are read (at most
        ``kafka_pipelined_produces_max`` of them per connection)."""
        loop = asyncio.get_running_loop()
        if self.broker is None:
            return None
        try:
            request = decode_request(frame)
        except UnsupportedRequest as exc:
            if exc.api_key == ApiKey.API_VERSIONS:
                body = data.api_versions_response(ErrorCode.UNSUPPORTED_VERSION)
                done: asyncio.Future[Chunks] = loop.create_future()
                done.set_result(encode_response(ApiKey.API_VERSIONS, 0, exc.correlation_id, body))
                return done
            log.warning("closing a Kafka connection from %s: %s", peer, exc)
            return None
        except DecodeError as exc:
            log.warning("closing a Kafka connection from %s: malformed request: %s", peer, exc)
            return None
        log.debug("request %s v%d from %s: %s", request.api_key, request.api_version, peer, request.body)
        if request.api_key == ApiKey.PRODUCE:
            await in_flight.acquire()
            try:
                complete = await data.produce_submit(self.broker, request)
            except BaseException:
                in_flight.release()
                raise
            return asyncio.ensure_future(self._finish(request, complete, in_flight))
        body = await HANDLERS[request.api_key](self.broker, request)
        finished: asyncio.Future[Chunks] = loop.create_future()
        finished.set_result(self._encode(request, body))
        return finished

    async def _finish(
        self, request: Request, complete: data.Completion, in_flight: asyncio.Semaphore
    ) -> Chunks:
        try:
            return self._encode(request, await complete())
        finally:
            in_flight.release()

    def _encode(self, request: Request, body: Any) -> Chunks:
        if body is None:
            return []
        return encode_response(request.api_key, request.api_version, request.correlation_id, body)


class KafkaListenerHandle:
    """A Kafka listener on its own thread; ``close()`` stops it (also a context manager)."""

    def __init__(
        self, listener: KafkaListener, loop: asyncio.AbstractEventLoop, thread: threading.Thread
    ) -> None:
        self.listener = listener
        self._loop = loop
        self._thread = thread

    @property
    def host(self) -> str:
        return self.listener.host

    @property
    def port(self) -> int:
        return self.listener.port

    @property
    def bootstrap(self) -> str:
        """``host:port`` to give Kafka clients as bootstrap servers."""
        broker = self.listener.broker
        if broker is None:
            return f"{self.host}:{self.port}"
        return f"{broker.host}:{broker.port}"

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self.listener.stop(), self._loop)
        try:
            future.result(timeout=limits.shutdown_drain_seconds_max)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=limits.shutdown_drain_seconds_max)

    def __enter__(self) -> KafkaListenerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_kafka_listener(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 9092,
    advertised: str | tuple[str, int] | None = None,
    *,
    auto_create_topics: bool = True,
) -> KafkaListenerHandle:
    """Serve the Kafka protocol over ``engine`` on ``host:port`` (port 0: any free
    port) from a background thread; returns once the port accepts connections.

    ``advertised`` (``"host:port"``) is the address given to clients in Metadata and
    FindCoordinator responses, for when they reach the listener by another address.
    """
    loop = asyncio.new_event_loop()
    listener = KafkaListener(engine, host, port, advertised, auto_create_topics=auto_create_topics)
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(listener.start())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            failure.append(exc)
            started.set()
            loop.close()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name="odradek-kafka-listener", daemon=True)
    thread.start()
    started.wait()
    if failure:
        raise failure[0]
    return KafkaListenerHandle(listener, loop, thread)
