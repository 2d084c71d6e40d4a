"""The state the Kafka door's handlers share: the node (engine and consumer groups),
door store, group coordinator, idempotent producers' recent batches, topic views, and
the fetch wake-up signal.

Engine calls block (appends wait for fsync, reads touch files), so handlers run them
on a thread pool with :meth:`Broker.call`; everything else stays on the event loop.
Waiting fetches are woken by the engine's arrival hook (:class:`ArrivalSignal`),
whatever door the records came through.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import dataclasses
import functools
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from odradek import limits
from odradek.cluster.placement import create_placed
from odradek.engine import Engine
from odradek.engine.arrivals import Arrival
from odradek.errors import (
    Fenced,
    InvalidRequest,
    OdradekError,
    QuotaExceeded,
    RequestTooLarge,
    SequenceError,
    StorageError,
    TopicExists,
    TopicNotFound,
)
from odradek.names import validate_topic_name
from odradek.node import Node
from odradek.protocols.kafka.cells import PRODUCER_ID_SHIFT, KafkaCells, Shape
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.fetch_sessions import FetchSessions
from odradek.protocols.kafka.groups import Coordinator
from odradek.protocols.kafka.partition_index import PartitionIndex, index_of
from odradek.protocols.kafka.partition_index import forget as forget_index
from odradek.protocols.kafka.store import SINGLE_PARTITION, DoorStore, PartitionHistory
from odradek.protocols.kafka.transactions import TransactionCoordinator

T = TypeVar("T")

log = logging.getLogger(__name__)

NODE_ID = 1

# The peer address of the connection a handler serves (JoinGroup reports it).
client_host: contextvars.ContextVar[str] = contextvars.ContextVar("client_host", default="")


def topic_id_of(incarnation: str) -> uuid.UUID:
    """A topic's Kafka id: its incarnation (new when the topic is created again)."""
    return uuid.UUID(hex=incarnation)


@dataclasses.dataclass(frozen=True)
class TopicView:
    name: str
    incarnation: str
    partitions: int
    topic_id: uuid.UUID
    history: PartitionHistory = SINGLE_PARTITION  # partition counts by offset (store.py)


def error_code_of(error: BaseException) -> ErrorCode:
    """The Kafka error code that best names an Odradek error."""
    if isinstance(error, TopicNotFound):
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    if isinstance(error, TopicExists):
        return ErrorCode.TOPIC_ALREADY_EXISTS
    if isinstance(error, RequestTooLarge):
        return ErrorCode.MESSAGE_TOO_LARGE
    if isinstance(error, QuotaExceeded):  # a tenant's storage_bytes: fatal for the batch
        return ErrorCode.POLICY_VIOLATION
    if isinstance(error, SequenceError):  # before InvalidRequest, its base class
        return ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    if isinstance(error, InvalidRequest):
        return ErrorCode.INVALID_RECORD
    if isinstance(error, Fenced):  # before StorageError: another agent took over for good
        return ErrorCode.BROKER_NOT_AVAILABLE  # not retriable, unlike KAFKA_STORAGE_ERROR
    if isinstance(error, StorageError):
        return ErrorCode.KAFKA_STORAGE_ERROR
    return ErrorCode.UNKNOWN_SERVER_ERROR


def _shape_view(shape: Shape) -> TopicView:
    """A topic of another cell as its door published it (cells.py): name, id and partitions."""
    return TopicView(
        shape.topic,
        shape.incarnation,
        shape.partitions,
        topic_id_of(shape.incarnation),
        ((0, shape.partitions),),
    )


_Batch = tuple[int, int, "asyncio.Future[int]"]  # first sequence, last sequence, base offset

# Kafka's producer sequences are int32 and wrap to 0 after INT32 max (2**31 - 1).
_SEQUENCE_MASK = 0x7FFFFFFF


def last_sequence(first: int, count: int) -> int:
    """The sequence of a batch's last record, as Kafka computes it (wrapping)."""
    return (first + count - 1) & _SEQUENCE_MASK


def engine_producer(
    producer_id: int, epoch: int, partition: int, first: int, count: int
) -> tuple[str, int, int]:
    """The engine's range producer for a Kafka batch: one per producer id, epoch and
    partition, since Kafka numbers sequences per partition and restarts them per epoch."""
    return f"kafka:{producer_id}:{epoch}:{partition}", first, last_sequence(first, count)


class ProducerSequences:
    """The Kafka door's fast path for idempotent producers, per (producer id, topic,
    partition): the epoch, which fences older ones (INVALID_PRODUCER_EPOCH), and the last
    few batches, so that a retry is answered with its original offset without asking the
    engine, and a retry of a batch still in flight waits for the original's answer.

    A batch is recorded once the engine has accepted it, before it is durable; its base
    offset is a future that resolves once the append is acknowledged. If the append
    fails, the producer's state for the partition is forgotten here.

    Every batch this does not answer goes to the engine as a range producer (see
    :func:`engine_producer`), whose state is durable: it writes the next batch, answers a
    retry of one of its remembered batches with the original result (also after a
    restart, when this in-memory state is empty), and refuses anything else with a
    SequenceError (OUT_OF_ORDER_SEQUENCE_NUMBER). The sequence rules are the engine's
    alone, so the two cannot disagree. Epoch fencing is kept in memory only: after a
    restart a producer's first batch sets the epoch it is checked against.
    """

    def __init__(self) -> None:
        self._batches: dict[tuple[int, str, int], tuple[int, collections.deque[_Batch]]] = {}

    def check(
        self, producer_id: int, epoch: int, topic: str, partition: int, first: int, count: int
    ) -> tuple[ErrorCode, asyncio.Future[int] | None]:
        """(error, the original's base offset if this is a retry of a batch remembered
        here); (NONE, None) means the engine decides."""
        known = self._batches.get((producer_id, topic, partition))
        if known is None:
            return ErrorCode.NONE, None
        known_epoch, batches = known
        if epoch < known_epoch:
            return ErrorCode.INVALID_PRODUCER_EPOCH, None
        if epoch > known_epoch:
            return ErrorCode.NONE, None
        last = last_sequence(first, count)
        for batch_first, batch_last, base_offset in batches:
            if batch_first == first and batch_last == last:
                return ErrorCode.NONE, base_offset
        return ErrorCode.NONE, None

    def record(
        self,
        producer_id: int,
        epoch: int,
        topic: str,
        partition: int,
        first: int,
        count: int,
        base_offset: asyncio.Future[int],
    ) -> None:
        key = (producer_id, topic, partition)
        known = self._batches.get(key)
        if known is None or known[0] != epoch:
            known = (epoch, collections.deque(maxlen=limits.kafka_producer_batches_remembered))
            self._batches[key] = known
        known[1].append((first, last_sequence(first, count), base_offset))

    def forget(self, producer_id: int, topic: str, partition: int) -> None:
        self._batches.pop((producer_id, topic, partition), None)

    def active(self, topic: str, partition: int) -> list[tuple[int, int, int]]:
        """(producer id, epoch, last sequence) of each producer remembered for the
        partition (DescribeProducers), by producer id."""
        return sorted(
            (producer_id, epoch, batches[-1][1])
            for (producer_id, name, index), (epoch, batches) in self._batches.items()
            if name == topic and index == partition and batches
        )


class ArrivalSignal:
    """Wakes the fetches waiting on the door's event loop when the engine reports an
    arrival (new durable records, a topic created or deleted), from whatever thread.

    A fetch reads :attr:`generation` *before* it looks at the log and passes it to
    :meth:`wait`, which returns at once if an arrival came since: none is lost between
    looking and waiting. Arrivals while nobody waits cost a counter increment; while a
    fetch waits, a burst of them schedules one wake-up on the loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self.generation = 0
        self._event: asyncio.Event | None = None
        self._scheduled = False

    def fire(self, _arrival: Arrival | None = None) -> None:
        """The engine's arrival listener (any thread; never blocks)."""
        with self._lock:
            self.generation += 1
            if self._event is None or self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop is closed: nobody is left waiting
            pass

    def _wake(self) -> None:
        with self._lock:
            self._scheduled = False
            event, self._event = self._event, None
        if event is not None:
            event.set()

    async def wait(self, seen: int, timeout: float) -> None:
        """Return once an arrival came after generation ``seen``, or after ``timeout``."""
        with self._lock:
            if self.generation != seen:
                return
            if self._event is None:
                self._event = asyncio.Event()
            event = self._event
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass


class Broker:
    def __init__(
        self,
        served: Engine | Node,
        host: str,
        port: int,
        *,
        auto_create_topics: bool = True,
        default_partitions: int = 1,
        executor: concurrent.futures.ThreadPoolExecutor | None = None,
        cells: KafkaCells | None = None,
    ) -> None:
        """Runs on the door's event loop (it attaches the node's Kafka groups to it).

        ``default_partitions`` is the partition count of topics created on the fly
        (Kafka's ``num.partitions``). ``cells``: the door serves one cell of a cluster
        of several (cells.py); None: it is the only broker."""
        if not 1 <= default_partitions <= limits.kafka_partitions_max:
            raise InvalidRequest(
                f"the default Kafka partition count must be from 1 to {limits.kafka_partitions_max}, "
                f"got {default_partitions}"
            )
        self.node = Node.of(served)
        engine = self.engine = self.node.engine
        self.host = host
        self.port = port
        self.cells = cells
        self.node_id = cells.node_id if cells is not None else NODE_ID
        # Producer ids this door hands out start here (unique across cells: cells.py).
        self.producer_id_base = (self.node_id - NODE_ID) << PRODUCER_ID_SHIFT
        self._publishing = asyncio.Lock()
        self.auto_create_topics = auto_create_topics
        self.default_partitions = default_partitions
        self.store = DoorStore(engine.path, engine.disk, fsync=engine.fsync)
        # Metadata's cluster id: the door store's, or with cells the cluster's (the same
        # at every cell's door: clients refuse brokers of two clusters).
        self.cluster_id = cells.cluster_id if cells is not None else self.store.cluster_id
        loop = asyncio.get_running_loop()
        catalog = self.node.kafka_groups
        self.coordinator = catalog.attach(loop, lambda: Coordinator(self.store, names=catalog))
        self.producers = ProducerSequences()
        self.fetch_sessions = FetchSessions()  # KIP-227, on the event loop
        self.executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=limits.kafka_engine_threads_max, thread_name_prefix="odradek-kafka"
        )
        self._topics: dict[str, TopicView] = {}
        self.arrivals = ArrivalSignal(loop)
        self._stop_listening = engine.on_arrival(self.arrivals.fire)
        # Last: loading may finish commits a restart interrupted, which needs the rest.
        self.transactions = TransactionCoordinator(self)

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(function, *args, **kwargs))

    # -- topics -----------------------------------------------------------------------

    def _view(self, name: str) -> TopicView:
        info = self.engine.describe_topic(name)
        history = self.store.history(name, info.incarnation)
        view = TopicView(name, info.incarnation, history[-1][1], topic_id_of(info.incarnation), history)
        self._topics[name] = view
        return view

    def index(self, view: TopicView) -> PartitionIndex:
        """The topic's partition index (partition_index.py)."""
        return index_of(self.engine, view.name, view.incarnation, view.history)

    async def topic(self, name: str, *, refresh: bool = False) -> TopicView | None:
        """The topic's view, or None if it does not exist (or the name is invalid, or
        the topic cannot be opened: a StorageError, logged, which clients then see as
        the retriable UNKNOWN_TOPIC_OR_PARTITION rather than as a closed connection)."""
        view = None if refresh else self._topics.get(name)
        if view is not None:
            return view
        try:
            return await self.call(self._view, name)
        except (TopicNotFound, InvalidRequest):
            self._topics.pop(name, None)
            return None
        except StorageError as exc:
            log.warning("topic %s cannot be served to Kafka clients: %s", name, exc.message)
            self._topics.pop(name, None)
            return None

    def forget(self, name: str) -> None:
        self._topics.pop(name, None)
        forget_index(self.engine, name)

    # -- topics of a cell (cells.py) -------------------------------------------------------

    async def create_topic(self, name: str, **settings: Any) -> None:
        """Create ``name`` in this door's engine; with cells, placed in this door's cell
        first (TopicExists when another cell holds it), and the placement dropped again
        when the engine refuses the topic (nothing half-done: no cell holds it then)."""
        cells = self.cells
        if cells is None:
            await self.call(self.engine.create_topic, name, **settings)
            return
        validate_topic_name(name)  # a name the engine refuses is not placed at all
        if not await self.call(cells.claim, name):
            raise TopicExists(f"topic {name!r} exists in another cell of the cluster")
        engine = self.engine
        await self.call(
            create_placed,
            name,
            lambda: engine.create_topic(name, **settings),
            lambda: name in engine.list_topics(),
            lambda: cells.release(name),
        )
        await self.publish_shapes()

    async def delete_topic(self, name: str) -> None:
        """Delete ``name`` from this door's engine; with cells, its placement and shape too."""
        await self.call(self.engine.delete_topic, name)
        if self.cells is not None:
            await self.call(self.cells.release, name)
            await self.publish_shapes()

    async def other_cell_node(self, name: str) -> int | None:
        """The broker of the other cell holding ``name``; None when no cells, this
        door's cell or no cell holds it (OdradekError when etcd does not answer)."""
        if self.cells is None:
            return None
        node = await self.call(self.cells.placed_node, name)
        return node if node not in (None, self.node_id) else None

    async def shape_by_id(self, topic_id: uuid.UUID) -> Shape | None:
        """The shape a cell published for Kafka topic id ``topic_id``, or None (with
        cells only; OdradekError when etcd does not answer)."""
        if self.cells is None:
            return None
        shapes = await self.call(self.cells.shapes)
        return next((s for s in shapes.values() if topic_id_of(s.incarnation) == topic_id), None)

    async def elsewhere(self, name: str | None) -> bool:
        """Whether ``name``, not a topic of this door, is one of another cell's (a
        request for it is then answered NOT_LEADER_OR_FOLLOWER)."""
        if self.cells is None or name is None:
            return False
        try:
            return await self.other_cell_node(name) is not None
        except OdradekError:
            return True  # etcd is not answering: retriable, as a leader being elected

    async def any_topic(self, name: str) -> TopicView | None:
        """``name``'s view: this door's topic, or with cells another cell's as its door
        published it (for the coordinator's offsets and assignments; never for data)."""
        view = await self.topic(name)
        if view is not None or self.cells is None:
            return view
        try:
            node = await self.other_cell_node(name)
            shape = await self.call(self.cells.shape, name) if node is not None else None
        except OdradekError as exc:
            log.info("topic %s of another cell is not known: %s", name, exc)
            return None
        return None if shape is None else _shape_view(shape)

    async def any_topic_by_id(self, topic_id: uuid.UUID) -> TopicView | None:
        """As :meth:`any_topic`, by Kafka topic id."""
        view = await self.topic_by_id(topic_id)
        if view is not None or self.cells is None:
            return view
        try:
            shape = await self.shape_by_id(topic_id)
        except OdradekError as exc:
            log.info("topic id %s of another cell is not known: %s", topic_id, exc)
            return None
        return None if shape is None else _shape_view(shape)

    async def all_topic_names(self) -> list[str]:
        """Every topic name: this door's, and with cells the other cells' as published."""
        names = await self.call(self.engine.list_topics)
        if self.cells is None:
            return names
        try:
            shapes = await self.call(self.cells.shapes)
        except OdradekError as exc:
            log.info("the other cells' topics are not known: %s", exc)
            return names
        return sorted(set(names) | set(shapes))

    async def missing_code(self, name: str | None, topic_id: uuid.UUID | None = None) -> ErrorCode:
        """The error for a topic this door does not have (by ``name``, else by
        ``topic_id``): NOT_LEADER_OR_FOLLOWER when another cell holds it (the client
        reads Metadata again and goes there), else unknown."""
        unknown = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if name is not None else ErrorCode.UNKNOWN_TOPIC_ID
        if self.cells is None:
            return unknown
        if name is None and topic_id is not None:
            try:
                shape = await self.shape_by_id(topic_id)
            except OdradekError:
                return ErrorCode.NOT_LEADER_OR_FOLLOWER  # etcd is not answering: retriable
            name = shape.topic if shape is not None else None
        return ErrorCode.NOT_LEADER_OR_FOLLOWER if await self.elsewhere(name) else unknown

    async def publish_shapes(self) -> None:
        """Write how this door shows its topics to etcd, where it changed (cells.py);
        a failure is logged and left to the next round."""
        cells = self.cells
        if cells is None:
            return
        async with self._publishing:
            shapes = {}
            for name in await self.call(self.engine.list_topics):
                view = await self.topic(name)
                if view is not None:
                    shapes[name] = (view.incarnation, view.partitions)
            try:
                await self.call(cells.publish, shapes)
            except OdradekError as exc:
                log.warning("the Kafka shapes of cell node %d were not published: %s", self.node_id, exc)

    async def topic_by_id(self, topic_id: uuid.UUID) -> TopicView | None:
        for view in self._topics.values():
            if view.topic_id == topic_id:
                return view
        for name in await self.call(self.engine.list_topics):
            found = await self.topic(name, refresh=True)
            if found is not None and found.topic_id == topic_id:
                return found
        return None

    async def set_partitions(self, view: TopicView, count: int) -> TopicView:
        """Give the topic ``count`` partitions for the records written from now on (the
        records already written keep theirs)."""
        await self.call(self._set_partitions, view, count)
        changed = await self.topic(view.name, refresh=True) or dataclasses.replace(view, partitions=count)
        await self.publish_shapes()
        return changed

    def _set_partitions(self, view: TopicView, count: int) -> None:
        end = self.engine.resolve_start(view.name, "latest")
        self.store.set_partitions(view.name, view.incarnation, count, from_offset=end)

    def close(self) -> None:
        self.transactions.close()
        self._stop_listening()
        self.node.kafka_groups.detach(self.coordinator)
        self.coordinator.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def describe_error(error: OdradekError) -> str:
    return f"{type(error).__name__}: {error.message}"
