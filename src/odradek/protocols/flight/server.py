"""The Arrow Flight door: a thin shell that decodes a call, calls the engine, encodes.

Calls (the wire is described in docs/flight-protocol.md; encoding is in messages.py)
------------------------------------------------------------------------------------
* DoPut: descriptor = the topic (path, or a JSON command with "topic" and options);
  every batch is one atomic append; its result goes back as a PutResult. Up to
  ``limits.append_window_default`` appends of a stream (or the command's ``window``)
  are in flight at once (pipeline.py): the next batches are written while the
  earlier ones sync. With a window of 1 each is acknowledged on the handler's thread.
* DoGet: ticket = JSON read / fetch / read_key request; batches are streamed.
* DoAction: administration (create/delete/list/describe topics and groups, key
  versions).
* DoExchange: one consumer-group member per stream (subscription.py), or, with the
  command ``{"kind": "append"}``, one client's single appends from any of its threads,
  each tagged and answered once durable, refusals in-band (append_stream.py).
* ListFlights / GetFlightInfo / GetSchema: topics as flights, so a plain Flight client
  can discover and read them.

Rules
-----
* No semantics here: every decision is the engine's. Each call is wrapped by
  ``_translate``, the one place where an OdradekError becomes a Flight error carrying
  ``errors.to_wire`` JSON in ``extra_info``; anything unexpected is logged and sent as
  an internal error, and the server keeps serving.
* Draining (``drain``): new calls are refused with Unavailable, reads end at their next
  wake-up, an in-flight DoPut acknowledges the batches it has written and refuses the
  next.

Bounds (protocols/connections.py, budget.py)
--------------------------------------------
* gRPC keeps its connections to itself, so the door bounds *calls* in progress: at most
  ``bounds.connections_max`` at once and ``bounds.connections_per_peer_max`` from one
  peer address (as gRPC reports it). A call over a cap is refused with Unavailable
  (retryable) and a warning naming the peer and the cap. A call holds its slot until
  gRPC completes it (a DoGet until its stream ends), through the ``_CallSlots``
  middleware.
* A DoPut batch (or an append stream's request) reserves its size in the server's
  in-flight byte budget before it is appended and holds it until it is acknowledged;
  while the budget is exhausted the stream is not read further (gRPC's flow control
  pushes back on the client). A batch larger than the budget, or than
  ``limits.flight_message_bytes_max``, is refused with RequestTooLarge, and the memory
  it took is given back to the system at once.
* Unlike the other doors, the Flight door cannot refuse a message *before* receiving it:
  gRPC reads a message whole before the service sees it, and pyarrow's
  FlightServerBase sets no receive limit and offers no way to pass gRPC server options
  (Arrow's ``builder_hook`` is C++ only). Nor can it time out a stream whose client
  stops sending. See docs/reliability.md ("Hostile peers").
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import ctypes.util
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, cast

import pyarrow as pa
import pyarrow.flight as flight

from odradek import defaults, limits
from odradek.budget import ByteBudget, Reservation
from odradek.cluster.keys import HOME_CELL, cell_names, validate_cell
from odradek.cluster.placement import create_placed
from odradek.cluster.stores import sibling_cell_store
from odradek.engine import Engine
from odradek.engine.engine import check_fetch
from odradek.engine.replica import CellReplica, Replicas, read_stored_topics
from odradek.engine.topic import PendingAppend
from odradek.errors import (
    ClosedError,
    InvalidRequest,
    NotOwner,
    OdradekError,
    RequestTooLarge,
    StorageError,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from odradek.groups import GroupOptions
from odradek.groups.info import GroupInfo, GroupListing, merge_infos, merge_listings
from odradek.names import compile_pattern, is_pattern
from odradek.node import Node
from odradek.protocols import connections, observe, request_ids
from odradek.protocols.flight import authorization, group_messages, messages
from odradek.protocols.flight.append_stream import AppendStream
from odradek.protocols.flight.cells_group import CellsMember, Part, PeerMember
from odradek.protocols.flight.cells_views import CellsTopics
from odradek.protocols.flight.peers import Peers, merge_streams
from odradek.protocols.flight.pipeline import AppendPipeline
from odradek.protocols.flight.subscription import Member, Subscription, membership
from odradek.protocols.tls import ServerTls
from odradek.records import STORED_SCHEMA
from odradek.security import acl_admin, quota_admin
from odradek.security import admin as security_admin
from odradek.security.authenticator import Authenticator
from odradek.security.authorizer import Authorizer, authorizer_of
from odradek.security.credentials import CredentialStore
from odradek.security.flight import MIDDLEWARE as FLIGHT_AUTHENTICATION
from odradek.security.flight import FlightAuthentication, call_credential, call_header, call_principal
from odradek.security.principal import ANONYMOUS, Principal
from odradek.security.quotas import QuotaManager
from odradek.security.revalidation import StreamGuard
from odradek.security.tenants import RAW, Namespace, local_error, namespace_of
from odradek.types import AppendResult
from odradek.views.waits import VIEW as VIEW_WAITER
from odradek.views.waits import parse as wait_parse

log = logging.getLogger(__name__)

# What a read of one topic streams, and what a wildcard read streams (DESIGN §3:
# reads across several topics add `topic`). The engine appends it as the last column.
WILDCARD_SCHEMA = STORED_SCHEMA.append(pa.field("topic", pa.utf8()))


class AppendObserver(Protocol):
    """Told about every append the door made; metrics implement it."""

    def appended(self, topic: str, records: int, size_bytes: int, seconds: float) -> None: ...

    def failed(self, call: str, code: str) -> None: ...


class FlightService(flight.FlightServerBase):  # type: ignore[misc]
    """Serves ``engine`` (a node, or an engine: then its node, node.py) on ``location``
    (``grpc://host:port``; port 0 picks a free one).

    The server accepts calls as soon as it is constructed.
    """

    def __init__(
        self,
        engine: Engine | Node | None,
        location: str = "grpc://127.0.0.1:0",
        *,
        observer: AppendObserver | None = None,
        bounds: connections.DoorLimits | None = None,
        budget: ByteBudget | None = None,
        cluster: ClusterGate | None = None,
        tls: ServerTls | None = None,
        authenticator: Authenticator | None = None,
        credentials: CredentialStore | None = None,
        quotas: QuotaManager | None = None,
    ) -> None:
        """``engine`` None: nothing is served until :meth:`serve_node` (a cluster
        agent's standby, with ``cluster`` saying who the owner is). ``tls``: serve
        ``grpc+tls://`` (``location`` says so) with its certificate, and with its CA
        require client certificates; gRPC keeps that certificate until the server
        stops (protocols/tls.py)."""
        self._node: Node | None = None if engine is None else Node.of(engine)
        self._cells: dict[str, Node] = {}  # the other cells this agent serves (decision 0032)
        self.cluster = cluster
        self.observer = observer
        self.bounds = bounds or connections.FLIGHT
        self.budget = budget or ByteBudget(limits.inflight_bytes_max_default)
        self.slots = connections.ConnectionSlots.of("flight", self.bounds)
        # Users and tokens the admin actions manage (security/admin.py); None: none here.
        self._credentials = credentials if credentials is not None else getattr(authenticator, "store", None)
        self._authenticator = authenticator  # its authorizer checks every call (authorization.py)
        self._draining = threading.Event()
        # Client quotas and metering (security/quotas.py): a call over its principal's
        # quota is delayed by its throttle time, never refused.
        self.quotas = quotas
        self.metering = getattr(observer, "metering", None)
        self._call = threading.local()  # the principal of the call this thread serves
        # Flight clients to the other agents, for the parts of a call they serve (decision 0035).
        self._peers = Peers(tls) if cluster is not None else None
        # A cluster agent's readers of the cells it does not serve, from the store
        # (decision 0042; set by the agent): None answers NotOwner for them.
        self.replicas: Replicas | None = None
        self._actions = {
            "create_topic": self._create_topic,
            "delete_topic": self._delete_topic,
            "list_topics": self._list_topics,
            "describe_topic": self._describe_topic,
            "alter_topic": self._alter_topic,
            "key_version": self._key_version,
            "snapshot": self._snapshot,
            "ping": self._ping,
            "list_groups": self._list_groups,
            "describe_group": self._describe_group,
            "delete_group": self._delete_group,
            "reset_offsets": self._reset_offsets,
            "kafka_partitions": self._kafka_partitions,
            "set_schema": self._set_schema,
            "get_schema": self._get_schema,
            "schema_versions": self._schema_versions,
            "check_schema": self._check_schema,
            "set_compatibility": self._set_compatibility,
            "verify_topic": self._verify_topic,
            "repair_topic": self._repair_topic,
            "cluster_status": self._cluster_status,
            "handover": self._handover,
            "release_topic": self._release_topic,
            "adopt_topic": self._adopt_topic,
            "create_view": self._create_view,
            "view_get": self._view_get,
            "view_scan": self._view_scan,
            "describe_view": self._describe_view,
            "list_views": self._list_views,
            "delete_view": self._delete_view,
            "check_waiters": self._check_waiters,
            "wait_for": self._wait_for,
        }
        super().__init__(
            location,
            middleware={
                _CALL_SLOTS: _CallSlots(self.slots),
                # every call authenticated before any handler (security/flight.py)
                **({FLIGHT_AUTHENTICATION: FlightAuthentication(authenticator)} if authenticator else {}),
            },
            **(tls.flight_arguments() if tls is not None else {}),
        )

    # -- what is served ---------------------------------------------------------------------

    @property
    def node(self) -> Node:
        """The node served; NotOwner (a standby) or Unavailable while there is none."""
        node = self._node
        if node is None:
            raise self._not_serving()
        return node

    @property
    def engine(self) -> Engine:
        """The engine the handlers call: the node's, or in a cluster of several cells
        the router that sends each call on one topic to its cell's engine."""
        if self._routed():
            return cast(Engine, _CellRouter(self))
        return self.node.engine

    def _routed(self) -> bool:
        return self.cluster is not None and self.cluster.cell_count() > 1

    def serve_node(self, node: Node, cell: str = HOME_CELL) -> None:
        """Serve ``node`` from now on as ``cell``'s (a cluster agent that became its owner)."""
        if self._routed():  # its groups' dead letters go to their topic's cell
            node.groups.dead_letters = functools.partial(self._write_dead_letters, cell)
            if cell == HOME_CELL:  # its views read every cell's topics (decision 0041)
                node.views.span(CellsTopics(self), limits.view_cells_poll_seconds)
        if cell == HOME_CELL:
            self._node = node
        else:
            self._cells[cell] = node

    def unserve(self, cell: str = HOME_CELL) -> Node | None:
        """Stop serving ``cell``'s node (a cluster agent that stops being its owner): new
        calls are refused with NotOwner; calls in flight fail as the node closes.
        Returns it."""
        if cell != HOME_CELL:
            return self._cells.pop(cell, None)
        node, self._node = self._node, None
        return node

    def node_of(self, topic: str, *, place: bool = False) -> Node:
        """The node of the cell holding ``topic`` (``place``: placing a new topic in the
        least loaded cell first), if this agent serves it; else NotOwner naming the
        agent that does."""
        assert self.cluster is not None
        cell = self.cluster.place(topic) if place else self.cluster.cell_of(topic)
        node = self.cell_node(cell)
        if node is None:
            raise self.cluster.not_owner(cell)
        return node

    def engine_of(self, topic: str, *, place: bool = False) -> Engine:
        return self.node_of(topic, place=place).engine

    def _write_dead_letters(self, cell: str, topic: str, batch: pa.RecordBatch) -> None:
        """Dead letters of a group of ``cell`` to ``topic`` in the topic's cell: the
        group's own when the topic is placed nowhere yet (placed and created there),
        through the agent serving it otherwise (decision 0038), with this agent's own
        credentials when authentication is on (decision 0040)."""
        assert self.cluster is not None and self._peers is not None
        target = cell if self.cluster.claim(topic, cell) else self.cluster.cell_of(topic)
        node = self.cell_node(target)
        if node is not None:
            engine, cluster = node.engine, self.cluster
            create_placed(  # a refused creation drops the placement, as a door's does
                topic,
                lambda: engine.create_topic(topic, exist_ok=True),
                lambda: topic in engine.list_topics(),
                lambda: cluster.forget(topic, target),
            )
            engine.append(topic, batch)
            return
        self._peers.append(self.owner_url(target), topic, batch, self.agent_authorization())

    def _served_nodes(self) -> list[Node]:
        return [node for node in (self._node, *self._cells.values()) if node is not None]

    def _not_serving(self) -> OdradekError:
        if self.cluster is not None:
            return self.cluster.not_owner()
        return Unavailable("the server serves no data yet; retry")

    # -- lifecycle ----------------------------------------------------------------------

    def drain(self, timeout: float = limits.shutdown_drain_seconds_max) -> bool:
        """Refuse new calls, let in-flight ones finish, stop the gRPC server.

        Returns False if calls were still running after ``timeout`` seconds (the caller
        may then close the engine anyway: those calls fail, nothing half-written is
        acknowledged). Does not close the engine.
        """
        self._draining.set()
        stopper = threading.Thread(target=self.shutdown, name="odradek-flight-shutdown", daemon=True)
        stopper.start()
        stopper.join(timeout)
        if self._peers is not None:  # the clients to other agents (reads over cells end with it)
            self._peers.close()
        return not stopper.is_alive()

    # -- DoPut: appends ---------------------------------------------------------------------

    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        with self._translate("do_put"):
            self._admit(context)
            target = _put_target(descriptor)
            self._authorize(context, "write", target.topic)
            guard = self._guard(
                context, lambda authorizer, who: authorizer.check(who, "write", "topic", target.topic)
            )
            topic = self._namespace().topic(target.topic)
            pipeline = AppendPipeline(
                lambda payload: writer.write(pa.py_buffer(payload)),
                functools.partial(self._acknowledged, topic),
                target.window,
            )
            held: collections.deque[Reservation] = collections.deque()
            try:
                try:
                    self._submit_stream(topic, target.options, reader, pipeline, held, guard)
                except BaseException:
                    pipeline.finish()  # the results of the batches before; an earlier failure wins
                    raise
                pipeline.finish()
            finally:
                for reservation in held:  # batches never acknowledged (a failed stream)
                    reservation.release()

    def _submit_stream(
        self,
        topic: str,
        descriptor_options: messages.AppendOptions,
        reader: flight.MetadataRecordBatchReader,
        pipeline: AppendPipeline,
        held: collections.deque[Reservation],
        guard: StreamGuard | None = None,
    ) -> None:
        """Submit every batch of the stream in order; the pipeline acknowledges them.

        Each batch's reservation in the budget goes into ``held`` (oldest first) until
        it is acknowledged."""
        first = True
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                return
            self._check_serving()
            if guard is not None:  # its token revoked, its user removed, its rights taken?
                guard.check()
            if chunk.data is None:  # a metadata-only message appends nothing
                continue
            size = chunk.data.get_total_buffer_size()  # free, and at least nbytes
            # Over a quota the stream waits before it takes room in the budget from others.
            self._throttle(
                self._principal(), produced=size, records_in=chunk.data.num_rows, tenant=self._tenant()
            )
            try:
                reservation = self._reserve(size)
            except RequestTooLarge:
                del chunk  # the message's memory goes before the refusal unwinds the stack
                _give_back_freed_memory()
                raise
            held.append(reservation)
            while held and held[0].released:
                held.popleft()
            options = descriptor_options if first else _NO_OPTIONS
            first = False
            metadata = chunk.app_metadata
            if metadata is not None and metadata.size:
                _, options = messages.decode_append_options(metadata.to_pybytes(), "batch app_metadata")
            pipeline.add(*self._submit(topic, chunk.data, options, reservation))

    def _reserve(self, size: int) -> Reservation:
        """The batch's bytes in the in-flight budget (waits while it is exhausted)."""
        if size > limits.flight_message_bytes_max:
            raise RequestTooLarge(
                f"a batch of {size} bytes is over the limit of {limits.flight_message_bytes_max} "
                "bytes per message; split it into several appends"
            )
        return self.budget.reserve(size, self.bounds.request_seconds)

    def _submit(
        self, topic: str, batch: pa.RecordBatch, options: messages.AppendOptions, reservation: Reservation
    ) -> tuple[PendingAppend, tuple[int, float, Reservation]]:
        started = time.perf_counter()
        pending = self.engine.submit_append(
            topic,
            batch,
            expect=options.expect,
            expect_offset=options.expect_offset,
            producer=options.producer,
        )
        return pending, (reservation.size, started, reservation)

    def _acknowledged(self, topic: str, result: AppendResult, context: object) -> bytes:
        """The PutResult of a durable append (on the pipeline's thread)."""
        size, started, reservation = cast(tuple[int, float, Reservation], context)
        reservation.release()
        if self.observer is not None:
            self.observer.appended(topic, result.count, size, time.perf_counter() - started)
        return messages.encode_append_result(result)

    # -- DoExchange {"kind": "append"}: a client's single appends on one stream ---------------

    def _serve_append_stream(
        self,
        command: bytes,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.MetadataRecordBatchWriter,
        authorized: tuple[Authorizer, Principal] | None = None,
        guard: StreamGuard | None = None,
    ) -> None:
        """Single appends from any thread of one client, tagged, answered as each is
        durable (append_stream.py); each checked for ``write`` on its topic, and the
        stream's principal checked again (``guard``) when the credentials changed."""
        submit = self._submit_append
        namespace = self._namespace()
        if authorized is not None or namespace is not RAW:

            def submit(
                topic: str, batch: pa.RecordBatch, options: messages.AppendOptions, size: int
            ) -> PendingAppend:
                if authorized is not None:  # on the name as the caller says it
                    authorized[0].check(authorized[1], "write", "topic", topic)
                return self._submit_append(namespace.topic(topic), batch, options, size)

        submit = self._metered(submit)
        serving, refusal = self._serving, self._refusal
        if guard is not None:  # a principal that fails its checks: refused, and the stream ends
            checked = guard

            def serving() -> bool:
                return self._serving() and not checked.ended()

            def refusal() -> OdradekError:
                return checked.failure or self._refusal()

        stream = AppendStream(
            submit,
            self._reserve,
            serving,
            messages.decode_append_stream_command(command),
            self.observer,
            _give_back_freed_memory,
            messages.decode_append_stream_requests_max(command),
            refusal,
        )
        stream.serve(reader, writer)

    def _submit_append(
        self, topic: str, batch: pa.RecordBatch, options: messages.AppendOptions, size: int
    ) -> PendingAppend:
        """One request of an append stream, submitted (``size`` is metered by the caller)."""
        return self.engine.submit_append(
            topic,
            batch,
            expect=options.expect,
            expect_offset=options.expect_offset,
            producer=options.producer,
        )

    # -- DoGet: reads -----------------------------------------------------------------------

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> flight.FlightDataStream:
        with self._translate("do_get"):
            # A one-cell cluster's standby (or an owner whose lease is gone) answers reads
            # of one topic from the store only (decision 0042), never from an engine.
            refused: NotOwner | None = None
            try:
                self._check_serving()
            except NotOwner as exc:
                if self.replicas is None:
                    raise
                refused = exc
            self._admit(context)
            request = messages.decode_ticket(ticket.ticket)
            authorized = self._authorized(context)
            if authorized is not None:
                topic = request.pattern if isinstance(request, messages.ReadRequest) else request.topic
                authorization.check_read(*authorized, topic)
            namespace = self._namespace()
            if isinstance(request, messages.FetchRequest):
                topic = namespace.topic(request.topic)
                batches = self._fetch(topic, request, refused)
                schema = batches[0].schema if batches else self.engine.read_schema(topic)
                records = sum(batch.num_rows for batch in batches)
                fetched = sum(b.nbytes for b in batches)
                self._throttle(self._principal(), fetched=fetched, records_out=records, tenant=self._tenant())
                return flight.RecordBatchStream(pa.Table.from_batches(batches, schema=schema))
            if isinstance(request, messages.ReadKeyRequest):
                if refused is not None:
                    raise refused
                table = self.engine.read_key(
                    namespace.topic(request.topic),
                    request.key,
                    request.from_version,
                    request.to_version,
                    from_snapshot=request.from_snapshot,
                )
                self._throttle(
                    self._principal(), fetched=table.nbytes, records_out=table.num_rows, tenant=self._tenant()
                )
                return flight.RecordBatchStream(table)
            wildcard = is_pattern(request.pattern)
            pattern = namespace.pattern(request.pattern) if wildcard else namespace.topic(request.pattern)
            said = request.pattern
            guard = self._guard(
                context, lambda authorizer, who: authorization.check_read(authorizer, who, said)
            )

            def stop() -> bool:
                return (
                    self._draining.is_set() or context.is_cancelled() or (guard is not None and guard.ended())
                )

            # Captured here: a wildcard read's parts run on threads of their own.
            user, tenant = self._principal(), self._tenant()

            def shape(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
                """Batches read here as the caller may see them, metered."""
                if wildcard and namespace.translates:  # each batch's topic column as the tenant says it
                    batches = map(namespace.local_batch, batches)
                if wildcard and authorized is not None:  # only the topics it may read
                    batches = authorization.only_readable(*authorized, batches)
                return self._metered_reads(batches, user, tenant)

            starts = None if request.starts is None else _engine_starts(namespace, request.starts)

            def read(engine: Engine, stopped: Callable[[], bool] = stop) -> Iterator[pa.RecordBatch]:
                """``engine``'s batches as the caller may see them, metered."""
                return shape(
                    engine.read(
                        pattern,
                        start=request.start,
                        wait=request.wait,
                        follow=request.follow,
                        max_records=request.max_records,
                        max_bytes=request.max_bytes,
                        stop=stopped,
                        starts=starts,
                    )
                )

            if wildcard and self._routed():  # every cell's topics (decision 0035)
                batches_iterator = self._read_cells(context, request, pattern, read, shape, stop)
                schema = WILDCARD_SCHEMA
            elif wildcard:
                if refused is not None:  # a one-cell cluster's standby: the store, then the owner
                    batches_iterator = self._standby_wildcard(context, request, pattern, shape, refused, stop)
                else:
                    batches_iterator = read(self.engine)
                schema = WILDCARD_SCHEMA
            else:
                try:
                    if refused is not None:
                        raise refused
                    batches_iterator = read(self.engine)
                    schema = self.engine.read_schema(pattern)
                except NotOwner:  # the history from the store, the tail from the owner
                    answered = self._read_from_store(context, request, pattern, stop)
                    if answered is None:
                        raise
                    schema, batches_iterator = answered
            return flight.GeneratorStream(schema, self._stream(batches_iterator, schema, namespace, guard))

    def _standby_wildcard(
        self,
        context: flight.ServerCallContext,
        request: messages.ReadRequest,
        pattern: str,
        shape: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]],
        refused: NotOwner,
        stop: Callable[[], bool],
    ) -> Iterator[pa.RecordBatch]:
        """A wildcard read at a one-cell cluster's standby (decision 0042): the cell's
        matching topics from the store, then the rest asked of the owner, as another
        cell's part of a wildcard read is (:meth:`_cell_part`); ``refused`` when this
        agent cannot read for the caller (a continued read, no store, a principal
        authenticated by its certificate): the client goes to the owner."""
        if self.replicas is None or request.starts is not None:
            raise refused
        try:
            header = self._forwardable_header(context, "a wildcard read at a standby")
        except InvalidRequest:
            raise refused from None
        return self._cell_part(HOME_CELL, request, pattern, shape, header, self._namespace(), stop)

    def _read_from_store(
        self,
        context: flight.ServerCallContext,
        request: messages.ReadRequest,
        topic: str,
        stop: Callable[[], bool],
    ) -> tuple[pa.Schema, Iterator[pa.RecordBatch]] | None:
        """A read of one topic whose cell another agent serves (decision 0042): its
        records from the cell's sealed segments in the store, then the rest asked of
        the agent serving the cell (with the caller's credentials), in one stream. None
        when the store holds nothing at the read's start (or the start is ``latest`` or
        a time, which only the owner knows): the caller is refused with NotOwner."""
        replica = self.replica_of(topic)
        if replica is None:
            return None
        start = request.start
        try:
            files = replica.topic(topic)
        except (OSError, StorageError):  # what its checkpoint names is gone: the owner reads
            return None
        if files is None:
            return None
        if start == "earliest" and files.whole:
            position = files.first_offset
        elif isinstance(start, int) and not isinstance(start, bool):
            position = start
        else:
            return None
        try:
            header = self._forwardable_header(context, "a read of another agent's topic")
        except InvalidRequest:
            return None  # a certificate's principal: the client reads at the owner
        per_batch = request.max_records if request.max_records is not None else defaults.fetch_records_max
        per_bytes = request.max_bytes if request.max_bytes is not None else defaults.fetch_bytes_max
        check_fetch(per_batch, per_bytes, "typed")
        first = replica.fetch(topic, position, max_records=per_batch, max_bytes=per_bytes)
        if first is None:
            return None
        peers, user, tenant = self.peers, self._principal(), self._tenant()

        def batches() -> Iterator[pa.RecordBatch]:
            """The store's part, metered here; the owner's, metered there."""
            nonlocal position
            answered: list[pa.RecordBatch] | None = first
            while answered:
                for batch in answered:
                    self._throttle(user, fetched=batch.nbytes, records_out=batch.num_rows, tenant=tenant)
                    yield batch
                    position = int(batch.column("offset")[-1].as_py()) + 1
                if stop():
                    return
                answered = replica.fetch(topic, position, max_records=per_batch, max_bytes=per_bytes)
            ticket = messages.encode_ticket(dataclasses.replace(request, start=position))
            yield from peers.read(self.owner_url(replica.cell), ticket, header, stop)

        return first[0].schema, batches()

    def replica_of(self, topic: str) -> CellReplica | None:
        """The reader of the store of ``topic``'s cell (decision 0042); None outside a
        cluster agent."""
        if self.replicas is None or self.cluster is None:
            return None
        return self.replicas.of(self.cluster.cell_of(topic) if self._routed() else HOME_CELL)

    def _fetch(
        self, topic: str, request: messages.FetchRequest, refused: NotOwner | None = None
    ) -> list[pa.RecordBatch]:
        """One fetch: by the engine of the topic's cell if this agent serves it; else,
        in a cluster, from the cell's sealed segments in the store when they hold the
        offset (decision 0042), else NotOwner naming the agent serving the cell (the
        owner's tail). ``refused``: this agent serves no engine now (a one-cell
        cluster's standby), only the store may answer."""
        value_format = request.value_format or "typed"
        try:
            if refused is not None:
                raise refused
            return self.engine.fetch(
                topic,
                request.offset,
                max_records=request.max_records,
                max_bytes=request.max_bytes,
                value_format=value_format,
            )
        except NotOwner:
            replica = self.replica_of(topic)
            if replica is None:
                raise
            check_fetch(request.max_records, request.max_bytes, value_format)
            answered = replica.fetch(
                topic,
                request.offset,
                max_records=request.max_records,
                max_bytes=request.max_bytes,
                value_format=value_format,
            )
            if answered is None:
                raise
            return answered

    def _read_cells(
        self,
        context: flight.ServerCallContext,
        request: messages.ReadRequest,
        pattern: str,
        read: Callable[[Engine, Callable[[], bool]], Iterator[pa.RecordBatch]],
        shape: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]],
        stop: Callable[[], bool],
    ) -> Iterator[pa.RecordBatch]:
        """A wildcard read over a cluster whose topics are spread over cells (decision
        0035): the cells this agent serves read here, each other cell's part read from
        the cell's sealed segments in the store, then the rest asked of the agent serving
        it (decision 0042; the request naming that cell and where each topic goes on,
        with the caller's credentials), the parts interleaved as they come. A request
        naming a cell is such a part: that cell's topics only, NotOwner when this agent
        does not serve it. ``pattern``: the engine's; ``shape``: what makes batches read
        here the caller's (names, authorization, metering)."""
        assert self.cluster is not None and self._peers is not None
        if request.cell is not None:
            return read(self._served_node(request.cell).engine, stop)
        header = self._forwardable_header(context, "a wildcard read over several cells")
        namespace = self._namespace()
        parts: list[Callable[[Callable[[], bool]], Iterator[pa.RecordBatch]]] = []
        for cell in cell_names(self.cluster.cell_count()):
            node = self.cell_node(cell)
            if node is not None:
                parts.append(functools.partial(read, node.engine))
                continue
            if self.replicas is None or request.starts is not None:
                self.owner_url(cell)  # Unavailable now while no agent serves the cell
            parts.append(functools.partial(self._cell_part, cell, request, pattern, shape, header, namespace))
        return merge_streams(parts, stop)

    def _cell_part(
        self,
        cell: str,
        request: messages.ReadRequest,
        pattern: str,
        shape: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]],
        header: str | None,
        namespace: Namespace,
        stopped: Callable[[], bool],
    ) -> Iterator[pa.RecordBatch]:
        """A wildcard read's part of a cell another agent serves (:meth:`_read_cells`):
        what the cell's store holds of its topics, then the rest from that agent."""
        starts: dict[str, tuple[int, str]] = {}
        if self.replicas is not None and request.starts is None:
            per_batch = request.max_records if request.max_records is not None else defaults.fetch_records_max
            per_bytes = request.max_bytes if request.max_bytes is not None else defaults.fetch_bytes_max
            check_fetch(per_batch, per_bytes, "json")
            stored = read_stored_topics(
                self.replicas.of(cell), pattern, request.start, per_batch, per_bytes, starts, stopped
            )
            yield from shape(stored)
            if stopped():
                return
        said = {namespace.local(name): start for name, start in starts.items()} or request.starts
        ticket = messages.encode_ticket(dataclasses.replace(request, cell=cell, starts=said))
        yield from self.peers.read(self.owner_url(cell), ticket, header, stopped)

    @property
    def peers(self) -> Peers:
        """The clients to other agents (a cluster's agent only)."""
        assert self._peers is not None
        return self._peers

    def agent_authorization(self) -> str | None:
        """The credentials this agent calls another with on its own behalf: its own
        when authentication is on (decision 0040), none otherwise."""
        assert self.cluster is not None
        return self.cluster.authorization() if self._authenticator is not None else None

    def cell_node(self, cell: str) -> Node | None:
        """The node of ``cell`` if this agent serves it, else None."""
        return self._node if cell == HOME_CELL else self._cells.get(cell)

    def _served_node(self, cell: str) -> Node:
        """The node of ``cell`` if this agent serves it; else NotOwner naming the agent
        that does."""
        assert self.cluster is not None
        node = self.cell_node(cell)
        if node is None:
            raise self.cluster.not_owner(cell)
        return node

    def owner_url(self, cell: str) -> str:
        """The Flight URL of the agent serving ``cell``; Unavailable while none does."""
        assert self.cluster is not None
        refusal = self.cluster.not_owner(cell)
        url = refusal.owner if isinstance(refusal, NotOwner) else None
        if url is None:
            raise Unavailable(f"no agent serves cell {cell} right now (a failover is in progress); retry")
        return url

    def _stream(
        self,
        batches: Iterator[pa.RecordBatch],
        schema: pa.Schema,
        namespace: Namespace = RAW,
        guard: StreamGuard | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Errors raised while streaming (a topic deleted under a read, the principal's
        token revoked: ``guard``) cross the wire too."""
        with self._translate("do_get", observed=False, namespace=namespace):
            for batch in batches:
                if not batch.schema.equals(schema):
                    raise InvalidRequest(
                        "the topic's schema changed while it was read; start a new read to get "
                        "the records from here on in the new schema's type"
                    )
                if guard is not None:
                    guard.check()
                yield batch
            if guard is not None and guard.failure is not None:  # ended by the guard's stop
                raise guard.failure

    # -- DoAction: administration -------------------------------------------------------------

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return list(messages.ACTIONS.items())  # (the admin actions of security/admin.py unlisted)

    def do_action(self, context: flight.ServerCallContext, action: flight.Action) -> list[flight.Result]:
        with self._translate("do_action"):
            if action.type not in _ANY_ROLE_ACTIONS:
                self._check_serving()
            self._admit(context)
            raw = action.body.to_pybytes() if action.body is not None else b""
            if action.type in acl_admin.ACTIONS:  # access control lists: an admin principal only
                authorizer = authorizer_of(self._authenticator)
                store = authorizer.store if authorizer is not None else None
                result = acl_admin.serve_action(store, call_principal(context), action.type, raw)
                return [flight.Result(pa.py_buffer(result))]
            if action.type in quota_admin.ACTIONS:  # client quotas: an admin principal only
                settings = self.quotas.settings if self.quotas is not None else None
                result = quota_admin.serve_action(settings, call_principal(context), action.type, raw)
                return [flight.Result(pa.py_buffer(result))]
            if action.type in security_admin.ACTIONS:  # users and tokens: an admin principal only
                principal = call_principal(context)
                result = security_admin.serve_action(
                    self._credentials, principal, action.type, raw, self._tenant_leftovers
                )
                return [flight.Result(pa.py_buffer(result))]
            if action.type in _VIEW_ADMIN_ACTIONS:  # a reducer is code the server imports
                principal = call_principal(context)
                if not principal.admin:
                    raise Unauthorized(
                        f"{principal} may not {action.type.replace('_', ' ')}: a view's reducer is "
                        "code the server imports, so it takes an admin principal"
                    )
            authorized = self._authorized(context)
            if authorized is not None:  # on the names as the caller says them
                authorization.check_action(*authorized, action.type, raw, self._node)
            body = messages.decode_action_body(action.type, raw)
            namespace = self._namespace()
            over_cells = self._over_cells(action.type) if self._routed() else None
            if over_cells is not None:
                cell = body.pop("cell", None)
                if cell is None:
                    result = over_cells(context, action.type, body, namespace, authorized)
                    return [flight.Result(pa.py_buffer(result))]
                self._call.node = self._served_node(validate_cell(cell))  # a part another agent asked for
            result = self._dispatch(action.type, body, namespace, authorized)
            return [flight.Result(pa.py_buffer(result))]

    def _dispatch(
        self,
        kind: str,
        body: dict[str, Any],
        namespace: Namespace,
        authorized: tuple[Authorizer, Principal] | None,
    ) -> bytes:
        """Action ``kind``'s answer to ``body`` for a caller in ``namespace``."""
        if kind in _LISTINGS:
            result = _LISTINGS[kind](self, body, namespace)
        elif namespace is RAW:
            result = self._actions[kind](body)
        else:
            result = namespace.local_json(self._actions[kind](self._engine_body(namespace, kind, body)))
        if authorized is not None:
            result = authorization.filter_listing(*authorized, kind, result)
        return result

    def _over_cells(self, kind: str) -> Callable[..., bytes] | None:
        """What answers action ``kind`` over a cluster whose topics are spread over
        cells when it spans them: groups of every cell (decision 0035), an append's
        waiters each in its cell (decision 0041); None for an action of one cell."""
        if kind in _GROUP_ACTIONS:
            return self._group_action_over_cells
        if kind in _WAIT_ACTIONS:
            return self._waits_over_cells
        return None

    def _group_action_over_cells(
        self,
        context: flight.ServerCallContext,
        kind: str,
        body: dict[str, Any],
        namespace: Namespace,
        authorized: tuple[Authorizer, Principal] | None,
    ) -> bytes:
        """A group action over a cluster whose topics are spread over cells (decision
        0035): a group lives in one cell (its topic's; a Kafka group in the home cell),
        so a listing is every cell's, merged, and an action on one group goes to the
        first cell, in cell order, that lists it. Each cell this agent serves answers
        here; another cell is asked of the agent serving it (the body naming that cell,
        with the caller's credentials)."""
        assert self.cluster is not None and self._peers is not None
        header = self._forwardable_header(context, "a group's action over several cells")

        def ask(cell: str, what: str, document: dict[str, Any]) -> bytes:
            return self._cell_action(cell, what, document, namespace, authorized, lambda: header)

        cells = cell_names(self.cluster.cell_count())
        listings = {
            cell: [
                GroupListing(**entry)
                for entry in messages.load(ask(cell, "list_groups", {}), "a cell's group listing").get(
                    "listing", []
                )
            ]
            for cell in cells
        }
        if kind == "list_groups":
            listing = merge_listings([entry for entries in listings.values() for entry in entries])
            names = [entry.group for entry in listing]
            return messages.dump({"groups": names, "listing": [entry.to_json() for entry in listing]})
        group = _name(body, "group", "a group name")
        holding = [cell for cell in cells if any(entry.group == group for entry in listings[cell])]
        if not holding:
            raise InvalidRequest(f"group {group!r} does not exist (a member's join creates it)")
        if len(holding) == 1:
            return ask(holding[0], kind, body)
        # A group subscribing to a pattern, in several cells (decision 0038).
        if kind == "describe_group":
            infos = [GroupInfo.from_json(messages.load(ask(cell, kind, body), "a group")) for cell in holding]
            return messages.dump(merge_infos(infos).to_json())
        busy = [cell for cell in holding if any(e.group == group and e.members for e in listings[cell])]
        if busy:  # refused (it has members): the cell says so as a single node would, none changed
            return ask(busy[0], kind, body)
        answers = [messages.load(ask(cell, kind, body), f"a cell's {kind}") for cell in holding]
        if kind == "reset_offsets":
            return messages.dump({"plan": [row for answer in answers for row in answer.get("plan", [])]})
        return b"{}"

    def _waits_over_cells(
        self,
        context: flight.ServerCallContext,
        kind: str,
        body: dict[str, Any],
        namespace: Namespace,
        authorized: tuple[Authorizer, Principal] | None,
    ) -> bytes:
        """An append's waiters over a cluster whose topics are spread over cells: a view
        waiter in the home cell, where views live (decision 0041), a group waiter in the
        topic's cell, where the group's part reading it is (decisions 0035, 0038); each
        cell's waiters checked or waited for here when this agent serves the cell, else
        by the agent serving it (the body naming the cell, with the caller's
        credentials), one cell after the other within the wait's time."""
        assert self.cluster is not None
        waiters, seconds = wait_parse(body.get("wait_for"), body.get("timeout"))
        topic_cell = self.cluster.cell_of(namespace.topic(_name(body, "topic")))
        by_cell: dict[str, list[str]] = {}
        for waiter in waiters:
            cell = HOME_CELL if waiter.kind == VIEW_WAITER else topic_cell
            by_cell.setdefault(cell, []).append(str(waiter))
        deadline = time.monotonic() + seconds
        pending: list[str] = []
        reasons: list[str] = []
        for cell, names in by_cell.items():
            part = {**body, "wait_for": names}
            if kind == "wait_for":  # what is left of the wait (the first part may have used it)
                part["timeout"] = max(deadline - time.monotonic(), _WAIT_PART_SECONDS_MIN)
            answer = self._cell_action(
                cell,
                kind,
                part,
                namespace,
                authorized,
                lambda: self._forwardable_header(context, "waiting for a view or group over several cells"),
                float(part["timeout"]) if kind == "wait_for" else 0.0,
            )
            if kind == "wait_for":
                document = messages.load(answer, "wait_for result") if answer else {}
                if document.get("pending"):
                    pending.extend(str(name) for name in document["pending"])
                    reasons.append(str(document.get("message", "")))
        if pending:
            return messages.dump({"pending": pending, "message": "; ".join(reasons)})
        return b"{}"

    def _cell_action(
        self,
        cell: str,
        kind: str,
        body: dict[str, Any],
        namespace: Namespace,
        authorized: tuple[Authorizer, Principal] | None,
        header: Callable[[], str | None],
        wait: float = 0.0,
    ) -> bytes:
        """``cell``'s answer to action ``kind``: here when this agent serves the cell,
        else the agent serving it's, asked with ``header()`` (the caller's credentials)
        and the body naming the cell; ``wait``: how long the action may wait."""
        node = self.cell_node(cell)
        if node is None:
            sent = messages.dump({**body, "cell": cell})
            return self.peers.action(self.owner_url(cell), kind, sent, header(), wait)
        self._call.node = node
        try:
            return self._dispatch(kind, dict(body), namespace, authorized)
        finally:
            self._call.node = None

    def _forwardable_header(self, context: flight.ServerCallContext, what: str) -> str | None:
        """The caller's credentials to pass on to another agent; InvalidRequest for a
        caller authenticated by its certificate (its identity does not travel)."""
        header = call_header(context)
        if self._authenticator is not None and header is None:
            raise InvalidRequest(
                f"{what} asks other agents for their cells' part with the caller's password or "
                "token, and this call has none (a certificate's principal): authenticate with a "
                "password or token"
            )
        return header

    def _group_node(self) -> Node:
        """The node whose groups (or an append's waiters) this call is about: the cell
        another agent asked for or the waiters' cell (decisions 0035, 0041), else the
        home cell's."""
        node: Node | None = getattr(self._call, "node", None)
        return node if node is not None else self.node

    def _create_topic(self, body: dict[str, Any]) -> bytes:
        options = {name: body[name] for name in _TOPIC_OPTIONS if name in body}
        if "schema" in body:
            options["schema"] = messages.decode_schema(body["schema"])
        info = self.engine.create_topic(_name(body, "name"), **options)
        return messages.encode_topic_info(info)

    def _set_schema(self, body: dict[str, Any]) -> bytes:
        info = self.engine.set_schema(
            _name(body, "topic"),
            messages.decode_schema(body.get("schema")),
            compatibility=body.get("compatibility"),
        )
        return messages.dump(info.to_json())

    def _get_schema(self, body: dict[str, Any]) -> bytes:
        info = self.engine.get_schema(_name(body, "topic"), body.get("version"))
        return messages.dump({"schema": messages.encode_schema_info(info)})

    def _schema_versions(self, body: dict[str, Any]) -> bytes:
        """One page of a topic's schema versions, from ``from_version`` (default 1) on;
        ``next_version`` names the next page's first version (null at the end), so a
        long history never makes an answer larger than a message may be."""
        start = body.get("from_version", 1)
        if isinstance(start, bool) or not isinstance(start, int) or start < 1:
            raise InvalidRequest(f"from_version must be an int >= 1, got {start!r}")
        versions = self.engine.schema_versions(_name(body, "topic"))[start - 1 :]
        page: list[Any] = []
        size = 0
        for info in versions:
            encoded = messages.encode_schema_info(info)
            size += len(messages.dump({"v": encoded}))
            if page and size > limits.flight_result_page_bytes:
                break
            page.append(encoded)
        following = start + len(page) if len(page) < len(versions) else None
        return messages.dump({"versions": page, "next_version": following})

    def _check_schema(self, body: dict[str, Any]) -> bytes:
        problems = self.engine.check_schema(
            _name(body, "topic"),
            messages.decode_schema(body.get("schema")),
            compatibility=body.get("compatibility"),
        )
        return messages.dump({"problems": problems})

    def _set_compatibility(self, body: dict[str, Any]) -> bytes:
        mode = body.get("compatibility")
        if not isinstance(mode, str):  # never str(None): "none" is a valid mode
            raise InvalidRequest(f"compatibility must be a mode name, got {mode!r}")
        self.engine.set_compatibility(_name(body, "topic"), mode)
        return messages.dump({})

    def _delete_topic(self, body: dict[str, Any]) -> bytes:
        self.engine.delete_topic(_name(body, "name"))
        return b"{}"

    def _list_topics(self, body: dict[str, Any], namespace: Namespace = RAW) -> bytes:
        pattern = body.get("pattern")
        if pattern is not None and not isinstance(pattern, str):
            raise InvalidRequest("pattern must be a string")
        if namespace.translates:  # anchored inside the tenant's prefix
            pattern = namespace.pattern(">" if pattern is None else pattern)
        elif pattern is not None:
            pattern = namespace.pattern(pattern)
        unavailable = {
            namespace.local(name): reason
            for name, reason in self.engine.unavailable_topics().items()
            if namespace.owns(name)
        }
        topics = namespace.locals(self.engine.list_topics(pattern))
        return messages.dump({"topics": topics, "unavailable": unavailable})

    def _engine_body(self, namespace: Namespace, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """An action's body with the names the caller said as the engine's names."""
        if action in _VIEW_ACTIONS:
            if namespace.translates:
                raise Unauthorized(
                    f"views are not served to the principals of a tenant ({action}): a view is "
                    "the cluster's, not a tenant's"
                )
            name = body.get("name")
            pattern = authorization._view_pattern(self.node, name) if isinstance(name, str) else None
            if pattern is not None and not namespace.owns(pattern):
                raise Unauthorized(f"view {name!r} reads topics outside {namespace}")
            return body
        body = dict(body)
        wanted = authorization.ACTIONS.get(action)
        if wanted is not None and isinstance(body.get(wanted[2]), str):
            field = wanted[2]
            body[field] = (
                namespace.group(body[field]) if wanted[1] == "group" else namespace.topic(body[field])
            )
        if action == "kafka_partitions" and isinstance(body.get("topic"), str):
            body["topic"] = namespace.topic(body["topic"])
        if action == "reset_offsets" and isinstance(body.get("topics"), str):
            body["topics"] = namespace.pattern(body["topics"])
        return body

    def _tenant_leftovers(self, tenant: str) -> list[str]:
        """The topics and groups left in ``tenant`` (its deletion waits for them)."""
        namespace = Namespace.of_tenant(tenant)
        topics = self.engine.list_topics(namespace.pattern(">"))
        groups = [entry.group for entry in self.node.directory.listing() if namespace.owns(entry.group)]
        return [*topics, *groups]

    def _describe_topic(self, body: dict[str, Any]) -> bytes:
        return messages.encode_topic_info(self.engine.describe_topic(_name(body, "name")))

    def _alter_topic(self, body: dict[str, Any]) -> bytes:
        settings = body.get("settings")
        if not isinstance(settings, dict):
            raise InvalidRequest("alter_topic needs settings: an object of create_topic's settings")
        return messages.encode_topic_info(self.engine.alter_topic(_name(body, "name"), **settings))

    def _verify_topic(self, body: dict[str, Any]) -> bytes:
        return messages.dump(self.engine.verify_topic(_name(body, "name")))

    def _repair_topic(self, body: dict[str, Any]) -> bytes:
        drop_range: Any = body.get("drop_range")  # the engine checks what it is
        info = self.engine.repair_topic(_name(body, "name"), drop_range=drop_range)
        return messages.encode_topic_info(info)

    def _key_version(self, body: dict[str, Any]) -> bytes:
        key = messages.decode_key(body.get("key"), body.get("key_encoding", "hex"))
        return messages.dump({"version": self.engine.key_version(_name(body, "topic"), key)})

    def _snapshot(self, body: dict[str, Any]) -> bytes:
        key = messages.decode_key(body.get("key"), body.get("key_encoding", "hex"))
        version: Any = body.get("version")  # the engine checks what it is
        state = messages.decode_snapshot_state(body)
        self.engine.snapshot(_name(body, "topic"), key, state, version=version)
        return messages.dump({})

    def _ping(self, body: dict[str, Any]) -> bytes:
        return messages.dump({"ok": True, "protocol": messages.PROTOCOL_VERSION})

    def _handover(self, body: dict[str, Any]) -> bytes:
        if self.cluster is None:
            raise InvalidRequest("this server is not an agent of a cluster: there is nothing to hand over")
        to = body.get("to")
        if to is not None and not isinstance(to, str):
            raise InvalidRequest(f"handover's 'to' must be an agent id or null, got {to!r}")
        return messages.dump(self.cluster.hand_over(to))

    # A topic moved between cells (decision 0032): released by the agent serving its cell,
    # adopted by the agent serving the target cell, then placed there.

    def _refuse_tenants(self, action: str) -> None:
        if self._namespace() is not RAW:
            raise Unauthorized(f"{action} is the cluster's: not served to the principals of a tenant")

    def _release_topic(self, body: dict[str, Any]) -> bytes:
        self._refuse_tenants("release_topic")
        topic = _name(body, "topic")
        to, cell = body.get("to"), body.get("cell")
        if not self._routed():
            raise InvalidRequest(
                "moving a topic needs a cluster of several cells (odradek serve --etcd ... --cells N)"
            )
        assert self.cluster is not None
        if not isinstance(to, str | None) or not isinstance(cell, str | None):
            raise InvalidRequest("release_topic's 'to' (an agent id) and 'cell' are strings")
        here = self.cluster.cell_of(topic)
        node = self.node_of(topic)  # NotOwner unless this agent serves the topic's cell
        target, agent, url = self.cluster.move_target(here, to, cell)
        if topic not in node.engine.released_topics():  # (released already: a move run again)
            node.engine.release_topic(topic)
        return messages.dump(
            {"topic": topic, "from_cell": here, "to_cell": target, "to_agent": agent, "to_url": url}
        )

    def _adopt_topic(self, body: dict[str, Any]) -> bytes:
        self._refuse_tenants("adopt_topic")
        topic, origin, cell = _name(body, "topic"), body.get("from_cell"), body.get("cell")
        if not self._routed() or not isinstance(origin, str) or not isinstance(cell, str):
            raise InvalidRequest("adopt_topic needs 'from_cell' and 'cell' in a cluster of several cells")
        assert self.cluster is not None
        validate_cell(origin)
        node = self._served_node(validate_cell(cell))
        store = node.engine.store
        source = None if origin == cell or store is None else sibling_cell_store(store.store, cell, origin)
        info = node.engine.adopt_topic(topic, source=source)
        if origin != cell:
            self.cluster.moved(topic, origin, cell)
        return messages.encode_topic_info(info)

    def _cluster_status(self, body: dict[str, Any]) -> bytes:
        return messages.dump(self.cluster_status())

    def cluster_status(self) -> dict[str, Any]:
        """The agent's view of its cluster and, on the owner, how far its checkpoints and
        compaction lag (the ``cluster_status`` action; the web console's cluster page)."""
        if self.cluster is None:
            return {"cluster": None}
        status = self.cluster.status()
        node = self._node
        if node is not None and status.get("role") == "owner":
            checkpointer = getattr(node.engine.disk, "checkpointer", None)
            if checkpointer is not None:
                status["store"] = checkpointer.lag()  # how far its checkpoints lag the journal
            status["compaction"] = node.engine.compaction_summary()  # how far compaction lags
        if self.replicas is not None:  # what it read of others' cells from the store (decision 0042)
            status["replicas"] = self.replicas.status()
        return status

    # Groups of every kind (odradek and kafka) through the node's directory.

    def _list_groups(self, body: dict[str, Any], namespace: Namespace = RAW) -> bytes:
        listing = [entry for entry in self._group_node().directory.listing() if namespace.owns(entry.group)]
        answer = {
            "groups": [entry.group for entry in listing],
            "listing": [entry.to_json() for entry in listing],
        }
        return messages.dump(namespace.local_value(answer))

    def _describe_group(self, body: dict[str, Any]) -> bytes:
        return messages.dump(
            self._group_node().directory.describe_group(_name(body, "group", "a group name")).to_json()
        )

    def _delete_group(self, body: dict[str, Any]) -> bytes:
        self._group_node().directory.delete_group(_name(body, "group", "a group name"))
        return b"{}"

    def _reset_offsets(self, body: dict[str, Any]) -> bytes:
        dry_run = body.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise InvalidRequest(f"reset_offsets' dry_run is true or false, got {dry_run!r}")
        plan = self._group_node().directory.reset_offsets(
            _name(body, "group", "a group name"),
            _optional_name(body, "topics", "a topic pattern"),
            body.get("to"),
            dry_run=dry_run,
        )
        return messages.dump({"plan": [row.to_json() for row in plan]})

    def _kafka_partitions(self, body: dict[str, Any]) -> bytes:
        from odradek.protocols.kafka.partition_map import partition_map  # the door's code, on first use

        return messages.dump(
            partition_map(self.engine, _name(body, "topic"), body.get("start"), body.get("end"))
        )

    # Views and synchronous commit (views/, decision 0019).

    def _create_view(self, body: dict[str, Any]) -> bytes:
        reducer, key = body.get("reducer"), body.get("key")
        if not isinstance(reducer, str) or (key is not None and not isinstance(key, str)):
            raise InvalidRequest(
                "a remote view's reducer and key function are import paths ('module:function')"
            )
        exist_ok = body.get("exist_ok", False)
        if not isinstance(exist_ok, bool):
            raise InvalidRequest(f"exist_ok must be true or false, got {exist_ok!r}")
        name, pattern = _name(body, "name", "a view name"), _name(body, "pattern", "a pattern")
        # Absent or null (a client from before views had the choice): not said (manager.py).
        value_format = body.get("value_format")
        described = self.node.views.create(
            name, pattern, reducer, key, exist_ok=exist_ok, value_format=value_format
        )
        return messages.dump(described)

    def _view_get(self, body: dict[str, Any]) -> bytes:
        key = messages.decode_key(body.get("key"), body.get("key_encoding", "hex"))
        state = self.node.views.get(_name(body, "name", "a view name"), key)
        return messages.dump({"state": None if state is None else state.hex()})

    def _view_scan(self, body: dict[str, Any]) -> bytes:
        prefix = messages.decode_key(body.get("prefix", ""), "hex")
        after = body.get("after")
        limit: Any = body.get("limit")  # the views check what it is
        table = self.node.views.scan(
            _name(body, "name", "a view name"),
            prefix,
            after=None if after is None else messages.decode_key(after, "hex"),
            limit=limit,
        )
        return messages.encode_view_scan(table)

    def _describe_view(self, body: dict[str, Any]) -> bytes:
        return messages.dump(self.node.views.describe(_name(body, "name", "a view name")))

    def _list_views(self, body: dict[str, Any]) -> bytes:
        return messages.dump({"views": self.node.views.list()})

    def _delete_view(self, body: dict[str, Any]) -> bytes:
        self.node.views.delete(_name(body, "name", "a view name"))
        return b"{}"

    def _check_waiters(self, body: dict[str, Any]) -> bytes:
        self._group_node().waits.check(_name(body, "topic"), body.get("wait_for"), body.get("timeout"))
        return b"{}"

    def _wait_for(self, body: dict[str, Any]) -> bytes:
        topic = _name(body, "topic")
        # Form only: a waiter deleted since check_waiters ends the wait (WaitTimeout), as
        # the append is written by now.
        waiters, seconds = wait_parse(body.get("wait_for"), body.get("timeout"))
        base, count = body.get("base_offset"), body.get("count")
        if not isinstance(base, int) or not isinstance(count, int) or base < 0 or count < 0:
            raise InvalidRequest(f"base_offset and count must be ints >= 0, got {base!r} and {count!r}")
        try:
            self._group_node().waits.wait(topic, waiters, AppendResult(base, count, {}), seconds)
        except WaitTimeout as exc:
            return messages.dump({"pending": exc.pending, "message": exc.message})
        return b"{}"

    # -- DoExchange: consumer groups ------------------------------------------------------------

    def do_exchange(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.MetadataRecordBatchWriter,
    ) -> None:
        with self._translate("do_exchange"):
            self._check_serving()
            self._admit(context)
            if descriptor.descriptor_type != flight.DescriptorType.CMD:
                raise InvalidRequest('a DoExchange descriptor is a command: {"kind": "subscribe", ...}')
            if messages.is_append_stream(descriptor.command):
                self._serve_append_stream(
                    descriptor.command, reader, writer, self._authorized(context), self._guard(context)
                )
                return
            request = group_messages.decode_subscribe(descriptor.command)
            authorized = self._authorized(context)
            if authorized is not None:
                authorization.check_subscription(*authorized, request.group, request.pattern)
            said = request
            guard = self._guard(
                context,
                lambda authorizer, who: authorization.check_subscription(
                    authorizer, who, said.group, said.pattern
                ),
            )
            namespace = self._namespace()
            if namespace is not RAW:  # the engine's group, pattern and dead-letter topic
                options = dict(request.options)
                if isinstance(options.get("dead_letter_topic"), str):
                    options["dead_letter_topic"] = namespace.topic(options["dead_letter_topic"])
                request = dataclasses.replace(
                    request,
                    group=namespace.group(request.group),
                    pattern=namespace.pattern(request.pattern),
                    options=options,
                )

            def stop() -> bool:
                return self._draining.is_set() or bool(context.is_cancelled())

            member, cells = self._member_of(context, said, request, namespace)
            cluster = self.cluster

            def serving() -> None:  # the member's cells still this agent's (safely: its lease)
                if cluster is not None:
                    for cell in cells:
                        cluster.check_owner(cell)

            Subscription(member, stop, self._draining.is_set, namespace, guard, serving).serve(reader, writer)

    def _member_of(
        self,
        context: flight.ServerCallContext,
        said: group_messages.Subscribe,
        request: group_messages.Subscribe,
        namespace: Namespace,
    ) -> tuple[Member, list[str]]:
        """The member a subscription asks for (``said``: as the caller said it;
        ``request``: in the engine's names), joined: in a cluster of several cells, to
        the one topic's cell, to the cell another agent asked for, or (a pattern) to
        every cell (decision 0038); and the cells whose groups this agent serves it
        from (none on a single node)."""
        if not self._routed():
            return membership(self.node.groups, request), [HOME_CELL] if self.cluster is not None else []
        if request.cell is not None:  # a part another agent asked for
            return membership(self._served_node(request.cell).groups, request), [request.cell]
        if not is_pattern(request.pattern):
            cell = self.cluster.cell_of(request.pattern) if self.cluster is not None else HOME_CELL
            return membership(self.node_of(request.pattern).groups, request), [cell]
        assert self.cluster is not None and self._peers is not None
        header = self._forwardable_header(context, "a group subscribing to a pattern over several cells")
        cells = cell_names(self.cluster.cell_count())
        member_id = CellsMember.new_member_id()
        parts: list[Part] = []
        local: list[str] = []
        try:
            for cell in cells:
                node = self.cell_node(cell)
                if node is not None:
                    parts.append(membership(node.groups, dataclasses.replace(request, member=member_id)))
                    local.append(cell)
                    continue
                url = self.owner_url(cell)
                command = group_messages.encode_subscribe(
                    said.group, said.pattern, said.options, cell=cell, member=member_id
                )
                stream = functools.partial(self._peers.exchange, url, command, header)
                parts.append(PeerMember(url, stream, namespace, said.group))
        except BaseException:
            for part in parts:  # nothing was delivered: each leaves cleanly
                with contextlib.suppress(Exception):
                    part.close()
            raise
        index = {cell: position for position, cell in enumerate(cells)}
        cluster = self.cluster
        options = GroupOptions.build(request.group, request.pattern, **request.options)
        member = CellsMember(request.group, parts, lambda topic: index[cluster.cell_of(topic)], options)
        return member, local

    # -- discovery: topics as flights ---------------------------------------------------------

    def list_flights(self, context: flight.ServerCallContext, criteria: bytes) -> Iterable[flight.FlightInfo]:
        with self._translate("list_flights"):
            self._check_serving()
            self._admit(context)
            pattern = criteria.decode() if criteria else None
            namespace = self._namespace()
            if namespace.translates:
                pattern = namespace.pattern(">" if pattern is None else pattern)
            elif pattern is not None:
                pattern = namespace.pattern(pattern)
            infos = []
            names = namespace.locals(self.engine.list_topics(pattern))
            authorized = self._authorized(context)
            if authorized is not None:
                names = authorized[0].filter(authorized[1], "describe", "topic", names)
            for name in names:
                with contextlib.suppress(OdradekError):  # deleted since it was listed
                    infos.append(self._topic_flight(namespace.topic(name), name))
            return infos

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        with self._translate("get_flight_info"):
            self._check_serving()
            self._admit(context)
            authorized = self._authorized(context)
            namespace = self._namespace()
            if descriptor.descriptor_type == flight.DescriptorType.PATH:
                if authorized is not None:
                    authorized[0].check(authorized[1], "describe", "topic", _path_topic(descriptor))
                local = _path_topic(descriptor)
                return self._topic_flight(namespace.topic(local), local)
            request = messages.decode_ticket(descriptor.command)
            if authorized is not None:
                topic = request.pattern if isinstance(request, messages.ReadRequest) else request.topic
                authorization.check_read(*authorized, topic)
            if isinstance(request, messages.ReadRequest) and not is_pattern(request.pattern):
                info = self.engine.describe_topic(namespace.topic(request.pattern))
                records, size = info.records, info.bytes
            else:
                records, size = -1, -1
            if _is_wildcard(request):
                schema = WILDCARD_SCHEMA
            else:
                topic = request.pattern if isinstance(request, messages.ReadRequest) else request.topic
                schema = self.engine.read_schema(namespace.topic(topic))
            endpoint = flight.FlightEndpoint(descriptor.command, [])
            return flight.FlightInfo(schema, descriptor, [endpoint], records, size)

    def get_schema(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.SchemaResult:
        info = self.get_flight_info(context, descriptor)
        return flight.SchemaResult(info.schema)

    def _topic_flight(self, name: str, local: str | None = None) -> flight.FlightInfo:
        """Topic ``name`` (the engine's) as a flight named ``local`` (as the caller says it)."""
        info = self.engine.describe_topic(name)
        said = name if local is None else local
        ticket = messages.encode_ticket(messages.ReadRequest(pattern=said, start="earliest", wait=0.0))
        endpoint = flight.FlightEndpoint(ticket, [])
        descriptor = flight.FlightDescriptor.for_path(said)
        schema = self.engine.read_schema(name)
        return flight.FlightInfo(schema, descriptor, [endpoint], info.records, info.bytes)

    # -- errors ---------------------------------------------------------------------------------

    def _admit(self, context: flight.ServerCallContext) -> None:
        """Count the call against the door's caps (total and per peer address) until
        gRPC completes it; over a cap it is refused with Unavailable."""
        call = context.get_middleware(_CALL_SLOTS)
        if call is not None:
            call.admit(connections.peer_host(context.peer()))
        principal = call_principal(context)
        self._call.principal = principal.name
        self._call.tenant = principal.tenant
        self._call.node = None  # a group action's cell (decision 0035)
        self._call.namespace = self._namespace_of(principal)  # Unauthorized: an unknown tenant
        self._throttle(self._call.principal, request=True, tenant=principal.tenant)

    def _namespace_of(self, principal: Principal) -> Namespace:
        if self._authenticator is None:
            return RAW  # no authentication: every caller is the anonymous admin
        store = self._credentials
        return namespace_of(principal, store.tenant_exists if store is not None else lambda tenant: False)

    def _namespace(self) -> Namespace:
        """The namespace of the call this thread serves (set by _admit; security/tenants.py)."""
        namespace: Namespace = getattr(self._call, "namespace", RAW)
        return namespace

    def _tenant(self) -> str | None:
        """The tenant of the principal of the call this thread serves (set by _admit)."""
        tenant: str | None = getattr(self._call, "tenant", None)
        return tenant

    def _principal(self) -> str:
        """The name of the principal of the call this thread serves (set by _admit)."""
        name: str = getattr(self._call, "principal", ANONYMOUS.name)
        return name

    def _throttle(
        self,
        user: str,
        *,
        request: bool = False,
        produced: int = 0,
        fetched: int = 0,
        records_in: int = 0,
        records_out: int = 0,
        tenant: str | None = None,
    ) -> None:
        """Meter a call's bytes and, over a quota, delay it by its throttle time (the
        native door's answer to a quota: the client waits, nothing is refused)."""
        metering = self.metering
        wait = 0.0
        if self.quotas is not None:
            wait = self.quotas.throttle(
                user, None, produced=produced, fetched=fetched, request=request, tenant=tenant
            )
        if metering is not None and (produced or fetched or wait):
            metering.add(
                user,
                bytes_in=produced,
                bytes_out=fetched,
                records_in=records_in,
                records_out=records_out,
                throttle_seconds=wait,
                tenant=tenant,
            )
        if fetched:  # (appends are counted as they are acknowledged: Metrics.appended)
            observe.volume("flight", 0, 0, records_out, fetched)
        if wait > 0:
            time.sleep(wait)

    def _metered_reads(
        self, batches: Iterator[pa.RecordBatch], user: str, tenant: str | None
    ) -> Iterator[pa.RecordBatch]:
        """A read's batches, each metered for ``user`` (of ``tenant``) and, over a quota,
        delayed before it is sent."""
        for batch in batches:
            self._throttle(user, fetched=batch.nbytes, records_out=batch.num_rows, tenant=tenant)
            yield batch

    def _metered(self, submit: Callable[..., PendingAppend]) -> Callable[..., PendingAppend]:
        """``submit`` of an append stream, metered and throttled for its call's principal
        (whichever thread of the stream submits)."""
        user, tenant = self._principal(), self._tenant()

        def metered(
            topic: str, batch: pa.RecordBatch, options: messages.AppendOptions, size: int
        ) -> PendingAppend:
            # ``size``: the request's share of its message's buffers, as DoPut meters a
            # message (``batch.nbytes`` walks every buffer: a fifth of a lone append's CPU).
            self._throttle(user, produced=size, records_in=batch.num_rows, tenant=tenant)
            return submit(topic, batch, options, size)

        return metered

    def _authorized(self, context: flight.ServerCallContext) -> tuple[Authorizer, Principal] | None:
        """The server's authorizer and the call's principal; None: nothing to check (no
        authorization, or an admin)."""
        authorizer = authorizer_of(self._authenticator)
        if authorizer is None:
            return None
        principal = call_principal(context)
        return None if principal.admin else (authorizer, principal)

    def _guard(
        self,
        context: flight.ServerCallContext,
        authorize: Callable[[Authorizer, Principal], None] | None = None,
    ) -> StreamGuard | None:
        """The checks a long-lived stream makes of its principal again (its credential,
        and ``authorize``: what the stream does; security/revalidation.py); None on a
        server without authentication."""
        credential = call_credential(context)
        if self._authenticator is None or credential is None:
            return None
        principal, token, expires = credential
        authorizer = authorizer_of(self._authenticator)
        check: Callable[[Principal], None] | None = None
        if authorize is not None and authorizer is not None:
            bound = authorizer

            def check(who: Principal) -> None:
                if not who.admin:
                    authorize(bound, who)

        return StreamGuard(self._authenticator, principal, token, expires, check)

    def _authorize(self, context: flight.ServerCallContext, operation: str, topic: str) -> None:
        authorized = self._authorized(context)
        if authorized is not None:
            authorized[0].check(authorized[1], operation, "topic", topic)

    def _check_serving(self) -> None:
        if self._routed():  # each call on a topic is checked by its cell (engine_of)
            if self._draining.is_set():
                raise Unavailable("the server is shutting down; retry against a running server")
            return
        if self.cluster is not None:
            self.cluster.check_owner()  # NotOwner on a standby, or once the lease is lost
        if self._draining.is_set() or self.engine.closed:
            raise Unavailable("the server is shutting down; retry against a running server")

    def _refusal(self) -> OdradekError:
        """Why a call is refused while :meth:`_serving` is False (nothing was done)."""
        try:
            self._check_serving()
        except OdradekError as exc:
            return exc
        return Unavailable("the server is shutting down; retry against a running server")

    def _serving(self) -> bool:
        try:
            self._check_serving()
        except OdradekError:
            return False
        return True

    @contextlib.contextmanager
    def _translate(
        self, call: str, observed: bool = True, namespace: Namespace | None = None
    ) -> Iterator[None]:
        """Errors as Flight errors; each call counted for /metrics (protocols/observe.py;
        ``observed``: False for the stream of a call already counted)."""
        started = time.perf_counter()
        outcome = "ok"
        # For the logs; set, not reset by token, at the end: a streaming call's generator
        # may end in another context than it started in.
        request_ids.current.set(request_ids.fresh())
        if namespace is None:
            self._call.namespace = RAW  # until _admit names the caller's
        try:
            yield
        except OdradekError as exc:
            exc = local_error(namespace if namespace is not None else self._namespace(), exc)
            if isinstance(exc, ClosedError) and self._draining.is_set():
                exc = Unavailable("the server is shutting down; retry against a running server")
            elif isinstance(exc, ClosedError) and self._node is None:
                exc = self._not_serving()  # a cluster agent stopped owning the data meanwhile
            elif isinstance(exc, StorageError) and self._node is None and self.cluster is not None:
                # Its engine closed under the call (a handover, a lost lease): the outcome
                # is unknown, as for a server that went away; retryable elsewhere.
                exc = Unavailable(
                    f"the agent stopped owning the data while this call ran ({exc.message}); "
                    "it may or may not have been done: retry against the owner"
                )
            if self.observer is not None:
                self.observer.failed(call, exc.code)
            outcome = exc.code
            log.debug("%s refused: %s", call, exc.message)
            raise _flight_error(exc) from exc
        except flight.FlightError as exc:
            # The client went away or sent a broken stream: nobody is left to answer.
            log.debug("%s ended by the transport: %s", call, exc)
            raise
        except (pa.ArrowException, UnicodeDecodeError) as exc:
            error: OdradekError = InvalidRequest(f"could not read the request: {exc}")
            if self.observer is not None:
                self.observer.failed(call, error.code)
            outcome = error.code
            raise _flight_error(error) from exc
        except Exception as exc:  # a bug must not take the server down
            log.exception("%s failed unexpectedly", call)
            if self.observer is not None:
                self.observer.failed(call, "internal")
            outcome = "internal"
            error = OdradekError(f"internal server error in {call}: {type(exc).__name__}: {exc}")
            raise flight.FlightInternalError(error.message, extra_info=messages.encode_error(error)) from exc
        finally:
            if observed:
                observe.request("flight", call, outcome, time.perf_counter() - started)
            elif outcome != "ok":
                observe.failed(outcome)
            request_ids.current.set(None)


_NO_OPTIONS = messages.AppendOptions()
# Actions a cluster agent answers whether it owns the data or not.
# Views run the code their reducer names on the server (decision 0019): defining and
# deleting one takes an admin principal (any caller on a server without authentication).
_VIEW_ADMIN_ACTIONS = frozenset({"create_view", "delete_view"})
# An append's waiters, each answered by its cell over cells (decision 0041); a part of
# a wait that the parts before used up still looks once (this long).
_WAIT_ACTIONS = frozenset({"check_waiters", "wait_for"})
_WAIT_PART_SECONDS_MIN = 0.001
_ANY_ROLE_ACTIONS = frozenset({"ping", "cluster_status"})
# Actions on groups, each group in one cell (decision 0035).
_GROUP_ACTIONS = frozenset({"list_groups", "describe_group", "delete_group", "reset_offsets"})
# Listings answered for the caller's namespace (security/tenants.py).
_LISTINGS: dict[str, Callable[[FlightService, dict[str, Any], Namespace], bytes]] = {
    "list_topics": lambda server, body, namespace: server._list_topics(body, namespace),
    "list_groups": lambda server, body, namespace: server._list_groups(body, namespace),
}
# Views are the cluster's (decision 0019): not in a tenant's namespace.
_VIEW_ACTIONS = frozenset(
    {
        "create_view",
        "delete_view",
        "view_get",
        "view_scan",
        "describe_view",
        "list_views",
        "wait_for",
        "check_waiters",
    }
)


class ClusterGate(Protocol):
    """What the door asks of a cluster agent (cluster/agent.py)."""

    def check_owner(self, cell: str = HOME_CELL) -> None:
        """Raise NotOwner unless this agent owns ``cell`` now."""

    def not_owner(self, cell: str = HOME_CELL) -> OdradekError:
        """The error naming ``cell``'s owner (for a call made while it is not served here)."""

    def cell_count(self) -> int:
        """How many cells the cluster's topics are spread over (1: the home cell alone)."""

    def cell_of(self, topic: str) -> str:
        """The cell holding ``topic`` (the home cell for a topic placed nowhere)."""

    def place(self, topic: str) -> str:
        """The cell holding ``topic``, placing it in the least loaded cell if it is new."""

    def claim(self, topic: str, cell: str) -> bool:
        """Place ``topic`` in ``cell`` unless it is placed already: whether it is
        ``cell``'s now."""

    def authorization(self) -> str:
        """The ``authorization`` header of a call this agent makes to another on its own
        behalf (security/agents.py, decision 0040)."""

    def forget(self, topic: str, cell: str) -> None:
        """Drop ``topic``'s placement in ``cell`` (it was deleted there)."""

    def topics(self) -> list[str]:
        """Every topic placed in the cluster's cells."""

    def move_target(self, cell: str, to: str | None, target: str | None) -> tuple[str, str, str | None]:
        """Where a topic of ``cell`` moves: ``target`` (a cell) or the least loaded cell
        agent ``to`` serves; (cell, its owner, the owner's URL)."""

    def moved(self, topic: str, from_cell: str, to_cell: str) -> None:
        """Place ``topic`` in ``to_cell`` (it was adopted there from ``from_cell``)."""

    def status(self) -> dict[str, Any]:
        """The agent's view of the cluster (the ``cluster_status`` action)."""

    def hand_over(self, to: str | None) -> dict[str, Any]:
        """Hand the data over to agent ``to`` (None: any other); NotOwner on a standby."""


class _CellRouter:
    """The engine as the door's handlers see it in a cluster of several cells (decision
    0032): a call on one topic goes to the engine of the cell holding it (NotOwner
    naming its owner when this agent does not serve it); creating a topic places it
    first, deleting it drops its placement. Listings answer from the placements;
    wildcard reads and group actions are split by cell in the door (decision 0035);
    everything else (views, waits) is the home cell's."""

    def __init__(self, service: FlightService) -> None:
        self._service = service

    def _create(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        """Place ``topic``, then create it in its cell's engine (a refused creation
        drops the placement: cluster/placement.py's ``create_placed``)."""
        cluster = self._service.cluster
        assert cluster is not None
        engine = self._service.engine_of(topic, place=True)
        return create_placed(
            topic,
            lambda: engine.create_topic(topic, *args, **kwargs),
            lambda: topic in engine.list_topics(),
            lambda: cluster.forget(topic, cluster.cell_of(topic)),
        )

    def __getattr__(self, name: str) -> Any:
        service = self._service
        create = self._create
        if name in _TOPIC_CALLS:

            def routed(topic: str, *args: Any, **kwargs: Any) -> Any:
                if name == "read" and is_pattern(topic):  # the door splits it by cell (_read_cells)
                    raise InvalidRequest("a wildcard read over several cells goes through the door's read")
                if name == "create_topic":
                    return create(topic, *args, **kwargs)
                return getattr(service.engine_of(topic), name)(topic, *args, **kwargs)

            return routed
        if name == "create_topic":
            return create
        if name == "delete_topic":

            def delete(topic: str) -> None:
                assert service.cluster is not None
                cell = service.cluster.cell_of(topic)
                service.engine_of(topic).delete_topic(topic)
                service.cluster.forget(topic, cell)

            return delete
        if name == "list_topics":

            def listing(pattern: str | None = None) -> list[str]:
                assert service.cluster is not None
                names = sorted(service.cluster.topics())
                if pattern is None:
                    return names
                matches = compile_pattern(pattern)
                return [topic for topic in names if matches(topic)]

            return listing
        if name == "unavailable_topics":
            return lambda: {
                topic: reason
                for node in service._served_nodes()
                for topic, reason in node.engine.unavailable_topics().items()
            }
        if name == "closed":
            return False  # each cell's engine is checked as a call reaches it
        return getattr(service.node.engine, name)


# The engine's calls on one topic (its first argument), routed to the topic's cell.
_TOPIC_CALLS = frozenset(
    {
        "submit_append",
        "append",
        "fetch",
        "read",
        "read_schema",
        "read_key",
        "create_topic",
        "set_schema",
        "get_schema",
        "schema_versions",
        "check_schema",
        "set_compatibility",
        "describe_topic",
        "alter_topic",
        "verify_topic",
        "repair_topic",
        "key_version",
        "snapshot",
        "topic_offsets",
    }
)

_CALL_SLOTS = "odradek-call-slots"


class _CallSlot(flight.ServerMiddleware):  # type: ignore[misc]
    """One call's slot in the door's caps, from admission until gRPC completes the call."""

    def __init__(self, slots: connections.ConnectionSlots) -> None:
        self._slots = slots
        self._peer: str | None = None

    def admit(self, peer: str) -> None:
        if self._peer is not None:
            return  # admitted already (GetSchema answers through GetFlightInfo)
        refused = self._slots.acquire(peer)
        if refused is not None:
            raise Unavailable(f"{refused}; retry later")
        self._peer = peer

    def call_completed(self, exception: BaseException | None) -> None:
        if self._peer is not None:
            self._slots.release(self._peer)
            self._peer = None


class _CallSlots(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    def __init__(self, slots: connections.ConnectionSlots) -> None:
        self._slots = slots

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str]]) -> _CallSlot:
        return _CallSlot(self._slots)


def _give_back_freed_memory() -> None:
    """Return freed memory to the system after a refused oversized message: gRPC
    received it in many small allocations that the C allocator would otherwise keep."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None  # glibc only


_LIBC = _load_libc()
_TOPIC_OPTIONS = (
    "retention",
    "retention_bytes",
    "segment_bytes",
    "segment_age",
    "cleanup",
    "delete_retention",
    "min_compaction_lag",
    "min_cleanable_dirty_ratio",
    "exist_ok",
    "compatibility",
    "reducer",
    "snapshot_every",
)


def _flight_error(error: OdradekError) -> flight.FlightError:
    detail = messages.encode_error(error)
    if isinstance(error, (Unavailable, ClosedError)):
        return flight.FlightUnavailableError(error.message, extra_info=detail)
    return flight.FlightServerError(error.message, extra_info=detail)


def _engine_starts(namespace: Namespace, starts: dict[str, tuple[int, str]]) -> dict[str, tuple[int, str]]:
    """A read's ``starts`` (ReadRequest) by the engine's names of its topics."""
    return {namespace.topic(name): start for name, start in starts.items()}


def _name(body: dict[str, Any], field: str, what: str = "a topic name") -> str:
    value = body.get(field)
    if not isinstance(value, str):
        raise InvalidRequest(f"field {field!r} ({what}) is required")
    return value


def _optional_name(body: dict[str, Any], field: str, what: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"field {field!r} ({what}) is a string when given")
    return value


def _path_topic(descriptor: flight.FlightDescriptor) -> str:
    parts = [part.decode() if isinstance(part, bytes) else str(part) for part in descriptor.path or []]
    if not parts:
        raise InvalidRequest("the descriptor path must name a topic")
    return ".".join(parts)


def _put_target(descriptor: flight.FlightDescriptor) -> messages.PutCommand:
    if descriptor.descriptor_type == flight.DescriptorType.PATH:
        return messages.PutCommand(_path_topic(descriptor))
    return messages.decode_put_command(descriptor.command)


def _is_wildcard(request: messages.Ticket) -> bool:
    return isinstance(request, messages.ReadRequest) and is_pattern(request.pattern)
