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

Bounds (protocols/connections.py, budget.py)
--------------------------------------------
* At most ``bounds.connections_max`` connections at once, and
  ``bounds.connections_per_peer_max`` from one peer address; one over a cap is closed
  on accept with a warning naming the peer and the cap.
* A connection with no request for ``bounds.idle_seconds`` is closed, and so is one
  that takes no response bytes for that long.
* A frame reserves its declared size in the server's in-flight byte budget as soon as
  its size prefix is read, before any of it is buffered, and holds it until its
  response is ready (for a Produce: until its records are durable). While the budget
  is exhausted the connection is not read (TCP pushes back on the client). A frame
  larger than the whole budget closes the connection like an oversized one.
* A frame must arrive whole within ``bounds.request_seconds`` of its first byte,
  waiting for the budget included; otherwise the connection is closed and the partial
  frame freed. At most ``limits.kafka_responses_unwritten_max`` responses of a
  connection wait to be written; then its next request is not read.

:func:`start_kafka_listener` runs the listener on its own event loop thread, for a
synchronous caller (``odradek serve``, tests); :class:`KafkaListener` runs inside an
existing loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from odradek import limits
from odradek.budget import ByteBudget, Reservation
from odradek.engine import Engine
from odradek.errors import OdradekError
from odradek.node import Node
from odradek.protocols import connections, request_ids
from odradek.protocols.kafka import (
    admin,
    data,
    group_api,
    log_admin,
    quota_api,
    share_fetch,
    share_groups,
    tenancy,
    txn_api,
)
from odradek.protocols.kafka import observe as observe_kafka
from odradek.protocols.kafka.acl_api import API_KEYS as ACL_API_KEYS
from odradek.protocols.kafka.acl_api import Finish, finishing, gate
from odradek.protocols.kafka.acl_api import serve as serve_acl_apis
from odradek.protocols.kafka.authentication import ConnectionAuth, api_versions_for, not_authenticating
from odradek.protocols.kafka.broker import NODE_ID, Broker, client_host
from odradek.protocols.kafka.cells import COORDINATOR_ONLY, KafkaCells
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
from odradek.security.authenticator import Authenticator
from odradek.security.authorizer import authorizer_of
from odradek.security.principal import current_principal
from odradek.security.quotas import Metering, QuotaManager
from odradek.security.tenants import RAW, Namespace, namespace_of

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
    ApiKey.CONSUMER_GROUP_HEARTBEAT: group_api.consumer_group_heartbeat,
    ApiKey.CONSUMER_GROUP_DESCRIBE: group_api.consumer_group_describe,
    ApiKey.SHARE_GROUP_HEARTBEAT: share_groups.share_group_heartbeat,
    ApiKey.SHARE_GROUP_DESCRIBE: share_groups.share_group_describe,
    ApiKey.SHARE_FETCH: share_fetch.share_fetch,
    ApiKey.SHARE_ACKNOWLEDGE: share_fetch.share_acknowledge,
    ApiKey.CREATE_TOPICS: admin.create_topics,
    ApiKey.DELETE_TOPICS: admin.delete_topics,
    ApiKey.CREATE_PARTITIONS: admin.create_partitions,
    ApiKey.DESCRIBE_CONFIGS: admin.describe_configs,
    ApiKey.ALTER_CONFIGS: admin.alter_configs,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: admin.incremental_alter_configs,
    ApiKey.DESCRIBE_CLUSTER: admin.describe_cluster,
    ApiKey.DELETE_RECORDS: log_admin.delete_records,
    ApiKey.DESCRIBE_LOG_DIRS: log_admin.describe_log_dirs,
    ApiKey.DESCRIBE_PRODUCERS: log_admin.describe_producers,
    ApiKey.OFFSET_DELETE: log_admin.offset_delete,
    ApiKey.SASL_HANDSHAKE: admin.sasl_handshake,
    ApiKey.ADD_PARTITIONS_TO_TXN: txn_api.add_partitions_to_txn,
    ApiKey.ADD_OFFSETS_TO_TXN: txn_api.add_offsets_to_txn,
    ApiKey.END_TXN: txn_api.end_txn,
    ApiKey.TXN_OFFSET_COMMIT: txn_api.txn_offset_commit,
    ApiKey.DESCRIBE_TRANSACTIONS: txn_api.describe_transactions,
    ApiKey.LIST_TRANSACTIONS: txn_api.list_transactions,
}


def _out_of_engine(namespace: Namespace, finish: Finish | None) -> Finish:
    """An answer's names as ``namespace`` says them, then ``finish`` (the refused parts
    of the request, named as the client named them)."""

    def finished(body: Any) -> Any:
        body = tenancy.out_of_engine(namespace, body)
        return body if finish is None else finish(body)

    return finished


def _then(first: Finish, then: Finish) -> Finish:
    """``first``, then ``then``, on an answer."""
    return lambda body: then(first(body))


# Requests no quota throttles: those a client sends before it is authenticated.
_NOT_THROTTLED = frozenset((ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE))

_EXPIRY_INTERVAL_SECONDS = 0.25
# A frame's body is read in pieces of at most this size, so the stream reader's own
# buffer stays small (its limit is 1 MiB) and the frame grows as its bytes arrive.
_READ_PIECE_BYTES = 1 << 20


class _DropConnection(Exception):
    """The connection is closed without an answer (the reason is logged already)."""


async def _room_for_a_response(unwritten: asyncio.Semaphore, writing: asyncio.Task[None]) -> bool:
    """Wait until fewer than ``kafka_responses_unwritten_max`` responses wait to be
    written (one is taken; the writer gives it back once it wrote a response); False if
    the writer ended first (the connection is closing)."""
    if writing.done():
        return False
    room = asyncio.ensure_future(unwritten.acquire())
    await asyncio.wait((room, writing), return_when=asyncio.FIRST_COMPLETED)
    if room.done():
        return True
    room.cancel()
    return False


def _release_when_done(reservation: Reservation, _response: asyncio.Future[Chunks]) -> None:
    """A frame's bytes leave the budget once its response is ready."""
    reservation.release()


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
    """The Kafka door on the running event loop, serving a node (or an engine's node)."""

    def __init__(
        self,
        engine: Engine | Node,
        host: str = "127.0.0.1",
        port: int = 9092,
        advertised: str | tuple[str, int] | None = None,
        *,
        auto_create_topics: bool = True,
        default_partitions: int = 1,
        bounds: connections.DoorLimits | None = None,
        budget: ByteBudget | None = None,
        tls: ssl.SSLContext | None = None,
        serving: Callable[[], bool] | None = None,
        authenticator: Authenticator | None = None,
        quotas: QuotaManager | None = None,
        metering: Metering | None = None,
        cells: KafkaCells | None = None,
    ) -> None:
        self.engine = engine
        self.cells = cells  # the door serves one cell of several (cells.py); None: the only broker
        self.quotas = quotas  # client quotas (quota_api.py); None: none
        self.metering = metering
        self.tls = tls
        self.authenticator = authenticator  # None: no authentication (SASL refused)
        self._serving = serving  # a cluster owner's check that it still owns the data
        self._default_partitions = default_partitions
        self.host = host
        self.port = port
        self._advertised = advertised
        self._auto_create = auto_create_topics
        self.bounds = bounds or connections.KAFKA
        self.budget = budget or ByteBudget(limits.inflight_bytes_max_default)
        self.slots = connections.ConnectionSlots.of("kafka", self.bounds)
        self.broker: Broker | None = None
        self._server: asyncio.Server | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._shapes: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._stopping = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve,
            self.host,
            self.port,
            limit=1 << 20,
            ssl=self.tls,
            ssl_handshake_timeout=limits.tls_handshake_seconds_max if self.tls is not None else None,
        )
        bound = self._server.sockets[0].getsockname()
        self.port = int(bound[1])
        host, port = _advertised(self.host, self.port, self._advertised)
        self.broker = Broker(
            self.engine,
            host,
            port,
            auto_create_topics=self._auto_create,
            default_partitions=self._default_partitions,
            cells=self.cells,
        )
        self._expiry = asyncio.create_task(self._expire_members())
        if self.cells is not None:
            self._shapes = asyncio.create_task(self._publish_shapes())
        log.info(
            "Kafka listener on %s:%d (advertised as %s:%d)%s",
            self.host,
            self.port,
            host,
            port,
            " over TLS (security.protocol=SSL)" if self.tls is not None else "",
        )

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        # A connection accepted just before the close has a task that has not run yet:
        # let it start, see the stop and close its socket (left alone, the socket was
        # only closed by the garbage collector, with a ResourceWarning, after the loop).
        await asyncio.sleep(0)
        for task in (self._expiry, self._shapes):
            if task is not None:
                task.cancel()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self.broker is not None:
            self.broker.close()

    async def _publish_shapes(self) -> None:
        """Keep this cell's topics as the door shows them in etcd (cells.py): at once,
        then every ``kafka_shapes_seconds`` (topics created or deleted through other
        doors; only changes are written)."""
        while True:
            if self.broker is not None:
                try:
                    await self.broker.publish_shapes()
                except OdradekError as exc:  # (publish_shapes logs etcd's failures itself)
                    log.warning("the Kafka shapes of this cell were not published: %s", exc)
            await asyncio.sleep(limits.kafka_shapes_seconds)

    async def _expire_members(self) -> None:
        while True:
            await asyncio.sleep(_EXPIRY_INTERVAL_SECONDS)
            if self.broker is not None:
                self.broker.coordinator.expire()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        peer = writer.get_extra_info("peername")
        host = connections.peer_host(peer)
        if self._stopping or self.slots.acquire(host) is not None:
            writer.close()
            return
        if task is not None:
            self._connections.add(task)
        try:
            await self._serve_connection(reader, writer, peer, host)
        finally:
            if task is not None:
                self._connections.discard(task)
            self.slots.release(host)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Any, host: str
    ) -> None:
        client_host.set(str(peer[0]) if peer else "")
        responses: asyncio.Queue[asyncio.Future[Chunks] | None] = asyncio.Queue()
        unwritten = asyncio.Semaphore(limits.kafka_responses_unwritten_max)
        writing = asyncio.create_task(self._write_responses(responses, unwritten, writer, peer))
        in_flight = asyncio.Semaphore(limits.kafka_pipelined_produces_max)
        auth = ConnectionAuth(self.authenticator, peer, writer.get_extra_info("peercert"))
        quota = quota_api.ConnectionQuota(self.quotas, self.metering)
        try:
            while await _room_for_a_response(unwritten, writing):
                await quota.muted()  # a throttled client's next request waits (KIP-219)
                frame, reservation = await self._read_frame(reader, host)
                try:
                    response = await self._respond(frame, peer, in_flight, auth, quota)
                except BaseException:
                    reservation.release()
                    raise
                del frame
                if response is None:
                    reservation.release()
                    break
                response.add_done_callback(functools.partial(_release_when_done, reservation))
                responses.put_nowait(response)
                if auth.close_after_response:  # a refused authentication: answered, then closed
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError, _DropConnection):
            pass
        except Exception:
            log.exception("Kafka connection from %s failed; closing it", peer)
        finally:
            responses.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(writing), limits.shutdown_drain_seconds_max)
            except (TimeoutError, asyncio.CancelledError):
                writing.cancel()
            writer.close()

    async def _write_responses(
        self,
        responses: asyncio.Queue[asyncio.Future[Chunks] | None],
        unwritten: asyncio.Semaphore,
        writer: asyncio.StreamWriter,
        peer: Any,
    ) -> None:
        """Write responses in request order as they complete."""
        try:
            while (response := await responses.get()) is not None:
                chunks = await response
                if chunks:
                    writer.writelines(chunks)
                    async with asyncio.timeout(self.bounds.idle_seconds):
                        await writer.drain()
                unwritten.release()
        except TimeoutError:
            log.info(
                "dropping the Kafka connection from %s: it read no response bytes for %g s",
                peer,
                self.bounds.idle_seconds,
            )
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("Kafka connection from %s failed; closing it", peer)
        writer.close()

    async def _read_frame(self, reader: asyncio.StreamReader, host: str) -> tuple[bytearray, Reservation]:
        """The next frame (without its size prefix) and its reservation in the budget.

        Raises _DropConnection when the connection is to be closed: idle, a frame that
        is oversized or does not arrive whole in time (its bytes are freed)."""
        try:
            async with asyncio.timeout(self.bounds.idle_seconds):
                first = await reader.readexactly(1)
        except TimeoutError:
            log.debug("closing the Kafka connection from %s: idle for %g s", host, self.bounds.idle_seconds)
            raise _DropConnection from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.bounds.request_seconds
        try:
            async with asyncio.timeout_at(deadline):
                size = frame_size(first + await reader.readexactly(3))
                reservation = await self.budget.reserve_async(size, deadline - loop.time())
                try:
                    return await self._read_body(reader, size), reservation
                except BaseException:
                    reservation.release()
                    raise
        except TimeoutError:
            log.info(
                "dropping the Kafka connection from %s: a frame did not arrive whole within %g s",
                host,
                self.bounds.request_seconds,
                extra={"fields": {"peer": host, "request_seconds": self.bounds.request_seconds}},
            )
        except (DecodeError, OdradekError) as exc:  # oversized, or no room in the budget in time
            log.warning(
                "closing the Kafka connection from %s: %s",
                host,
                getattr(exc, "message", exc),
                extra={"fields": {"peer": host}},
            )
        raise _DropConnection

    async def _read_body(self, reader: asyncio.StreamReader, size: int) -> bytearray:
        """``size`` bytes, read in pieces; the buffer grows only as bytes arrive."""
        frame = bytearray()
        while len(frame) < size:
            piece = await reader.read(min(size - len(frame), _READ_PIECE_BYTES))
            if not piece:
                raise asyncio.IncompleteReadError(b"", size)
            frame += piece
        return frame

    async def _respond(
        self,
        frame: bytearray,
        peer: Any,
        in_flight: asyncio.Semaphore,
        auth: ConnectionAuth,
        quota: quota_api.ConnectionQuota,
    ) -> asyncio.Future[Chunks] | None:
        """The future response ([] when Kafka sends none), or None to close the connection.

        Every request is handled before the next one is read, except that a Produce's
        wait for durability runs on while the next requests are read (at most
        ``kafka_pipelined_produces_max`` of them per connection)."""
        loop = asyncio.get_running_loop()
        if self.broker is None:
            return None
        if self._serving is not None and not self._serving():
            # A cluster agent that no longer owns the data (its lease's safe window
            # closed, a paused owner waking up) answers nothing as the broker: the
            # connection closes and the client looks for the leader again.
            log.info("Kafka request from %s refused: this agent no longer owns the data", peer)
            return None
        if auth.raw_sasl:  # after SaslHandshake v0: a raw SASL token, answered raw
            token = auth.raw_token(bytes(frame))
            if token is None:
                return None
            raw: asyncio.Future[Chunks] = loop.create_future()
            raw.set_result([len(token).to_bytes(4, "big"), token])
            return raw
        try:
            # The codec reads through the buffer protocol; values it returns are copies.
            request = decode_request(cast(bytes, memoryview(frame)))
        except UnsupportedRequest as exc:
            if exc.api_key == ApiKey.API_VERSIONS:
                body = api_versions_for(
                    data.api_versions_response(ErrorCode.UNSUPPORTED_VERSION), auth.required
                )
                done: asyncio.Future[Chunks] = loop.create_future()
                done.set_result(encode_response(ApiKey.API_VERSIONS, 0, exc.correlation_id, body))
                return done
            log.warning("closing a Kafka connection from %s: %s", peer, exc)
            return None
        except DecodeError as exc:
            log.warning("closing a Kafka connection from %s: malformed request: %s", peer, exc)
            return None
        request_ids.current.set(f"{peer[0]}:{peer[1]}/{request.correlation_id}" if peer else None)
        if log.isEnabledFor(logging.DEBUG):  # the API's name costs an enum lookup per request
            log.debug(
                "request %s v%d from %s: %s",
                ApiKey(request.api_key).name,
                request.api_version,
                peer,
                request.body,
            )
        started = time.perf_counter()
        refused = auth.refusal(request)
        namespace = RAW
        if refused is None and auth.principal is not None and self.authenticator is not None:
            try:  # decision 0028: the names of the principal's namespace
                namespace = namespace_of(auth.principal, self.authenticator.store.tenant_exists)
            except OdradekError as exc:
                refused = exc.message
            refused = refused or tenancy.refusal(namespace, request)
        if refused is not None:
            log.warning("closing a Kafka connection from %s: %s", peer, refused)
            return None
        if self.broker.node_id != NODE_ID and (
            request.api_key in COORDINATOR_ONLY
            or (request.api_key == ApiKey.INIT_PRODUCER_ID and request.body.transactional_id is not None)
        ):
            # Groups, offsets and transactions are the home cell's door's (cells.py): the
            # client, losing its connection, finds its coordinator again.
            log.info(
                "closing a Kafka connection from %s: %s goes to the coordinator (broker %d), not broker %d",
                peer,
                ApiKey(request.api_key).name,
                NODE_ID,
                self.broker.node_id,
            )
            return None
        authorizer = authorizer_of(self.authenticator)
        finish: Finish | None = None
        refusal: asyncio.Future[Chunks]
        if namespace.translates:  # what binds every namespace, refused per part (tenancy.py)
            confined, finish = tenancy.confine(namespace, request)
            if confined is None:
                refusal = loop.create_future()
                refusal.set_result(self._encode(request, finish(None)))
                return refusal
            request = confined
        if authorizer is not None and auth.principal is not None:  # what it may do (acl_api.py)
            gated, gated_finish = await gate(self.broker, authorizer, auth.principal, request)
            finish = gated_finish if finish is None else _then(gated_finish, finish)
            if gated is None:
                refusal = loop.create_future()
                refusal.set_result(self._encode(request, finish(None)))
                return refusal
            request = gated
        if namespace is not RAW:  # (authorized above on the names the client said)
            request = tenancy.into_engine(namespace, request)
            request = await tenancy.fence_topic_ids(namespace, request, self._topic_name)
            finish = _out_of_engine(namespace, finish)
        throttle_ms = 0 if request.api_key in _NOT_THROTTLED else quota.requested(request, len(frame))
        if request.api_key == ApiKey.PRODUCE:
            await in_flight.acquire()
            try:
                complete = await data.produce_submit(self.broker, request)
            except BaseException:
                in_flight.release()
                raise
            if finish is not None:
                complete = finishing(complete, finish)
            return asyncio.ensure_future(self._finish(request, complete, in_flight, throttle_ms, started))
        if request.api_key == ApiKey.API_VERSIONS:
            body = api_versions_for(await data.api_versions(self.broker, request), auth.required)
        elif request.api_key == ApiKey.SASL_HANDSHAKE and auth.required:
            body = auth.handshake(request)
        elif request.api_key == ApiKey.SASL_AUTHENTICATE:
            body = auth.authenticate(request) if auth.required else not_authenticating()
        elif request.api_key in quota_api.API_KEYS:
            body = await self.broker.call(quota_api.serve, self.quotas, current_principal(), request)
        elif request.api_key in ACL_API_KEYS:
            body = await self.broker.call(serve_acl_apis, authorizer, request)
        else:
            body = await HANDLERS[request.api_key](self.broker, request)
        if finish is not None:
            body = finish(body)
        body = quota.answered(request, body, throttle_ms)
        observe_kafka.answered(request, body, started)
        finished: asyncio.Future[Chunks] = loop.create_future()
        finished.set_result(self._encode(request, body))
        return finished

    async def _topic_name(self, topic_id: Any) -> str | None:
        broker = self.broker
        view = None if broker is None else await broker.topic_by_id(topic_id)
        return None if view is None else view.name

    async def _finish(
        self,
        request: Request,
        complete: data.Completion,
        in_flight: asyncio.Semaphore,
        throttle_ms: int,
        started: float,
    ) -> Chunks:
        try:
            body = await complete()
            if throttle_ms and body is not None:
                body = dataclasses.replace(body, throttle_time_ms=throttle_ms)
            observe_kafka.answered(request, body, started)
            return self._encode(request, body)
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
    engine: Engine | Node,
    host: str = "127.0.0.1",
    port: int = 9092,
    advertised: str | tuple[str, int] | None = None,
    *,
    auto_create_topics: bool = True,
    default_partitions: int = 1,
    bounds: connections.DoorLimits | None = None,
    budget: ByteBudget | None = None,
    tls: ssl.SSLContext | None = None,
    serving: Callable[[], bool] | None = None,
    authenticator: Authenticator | None = None,
    quotas: QuotaManager | None = None,
    metering: Metering | None = None,
    cells: KafkaCells | None = None,
) -> KafkaListenerHandle:
    """Serve the Kafka protocol over ``engine`` (a node, or an engine: then its node,
    node.py) on ``host:port`` (port 0: any free port) from a background thread; returns
    once the port accepts connections.

    ``advertised`` (``"host:port"``) is the address given to clients in Metadata and
    FindCoordinator responses, for when they reach the listener by another address.
    ``bounds`` (connection caps and timeouts) default to the Kafka door's;
    ``budget`` is the server's in-flight byte budget (a private one when None).
    ``auto_create_topics`` (Kafka's ``auto.create.topics.enable``) lets a Metadata
    request create the topics it names, with ``default_partitions`` partitions (Kafka's
    ``num.partitions``). ``tls``: serve TLS with this server context (clients use
    ``security.protocol=SSL``); a handshake must end within
    ``limits.tls_handshake_seconds_max``. ``serving``: checked before every request (a
    cluster owner's ``is_owner``); when it says no, the connection closes unanswered.
    ``authenticator``: require SASL (or a client certificate naming a principal) before
    any request but ApiVersions     authentication (protocols/kafka/authentication.py); None: no
    authentication, SASL refused. ``quotas``: throttle clients over their quotas,
    serve DescribeClientQuotas/AlterClientQuotas; ``metering``: count each principal's
    bytes and records (quota_api.py). ``cells``: the door is one cell's of a cluster
    whose topics are spread over cells (cells.py).
    """
    loop = asyncio.new_event_loop()
    listener = KafkaListener(
        engine,
        host,
        port,
        advertised,
        auto_create_topics=auto_create_topics,
        default_partitions=default_partitions,
        bounds=bounds,
        budget=budget,
        tls=tls,
        serving=serving,
        authenticator=authenticator,
        quotas=quotas,
        metering=metering,
        cells=cells,
    )
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
