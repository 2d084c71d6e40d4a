"""The state the Kafka door's handlers share: engine, door store, group coordinator,
idempotent producers' recent batches, topic views, and the fetch wake-up signal.

Engine calls block (appends wait for fsync, reads touch files), so handlers run them
on a thread pool with :meth:`Broker.call`; everything else stays on the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import dataclasses
import functools
import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from odradek import limits
from odradek.engine import Engine
from odradek.errors import (
    InvalidRequest,
    OdradekError,
    RequestTooLarge,
    SequenceError,
    StorageError,
    TopicExists,
    TopicNotFound,
)
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.groups import Coordinator
from odradek.protocols.kafka.store import DoorStore

T = TypeVar("T")

log = logging.getLogger(__name__)

NODE_ID = 1

# The peer address of the connection a handler serves (JoinGroup reports it).
client_host: contextvars.ContextVar[str] = contextvars.ContextVar("client_host", default="")
_TOPIC_ID_NAMESPACE = uuid.UUID("5b4f6c1e-9a43-4d0e-8f65-0d7a6b3e2c11")


def topic_id_of(name: str, created_at: float) -> uuid.UUID:
    """A topic's Kafka id: stable for one incarnation of the topic, new when recreated."""
    return uuid.uuid5(_TOPIC_ID_NAMESPACE, f"{name}\x00{created_at!r}")


@dataclasses.dataclass(frozen=True)
class TopicView:
    name: str
    created_at: float
    partitions: int
    topic_id: uuid.UUID


def error_code_of(error: BaseException) -> ErrorCode:
    """The Kafka error code that best names an Odradek error."""
    if isinstance(error, TopicNotFound):
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    if isinstance(error, TopicExists):
        return ErrorCode.TOPIC_ALREADY_EXISTS
    if isinstance(error, RequestTooLarge):
        return ErrorCode.MESSAGE_TOO_LARGE
    if isinstance(error, SequenceError):  # before InvalidRequest, its base class
        return ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    if isinstance(error, InvalidRequest):
        return ErrorCode.INVALID_RECORD
    if isinstance(error, StorageError):
        return ErrorCode.KAFKA_STORAGE_ERROR
    return ErrorCode.UNKNOWN_SERVER_ERROR


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


class Broker:
    def __init__(
        self,
        engine: Engine,
        host: str,
        port: int,
        *,
        auto_create_topics: bool = True,
        executor: concurrent.futures.ThreadPoolExecutor | None = None,
    ) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self.auto_create_topics = auto_create_topics
        self.store = DoorStore(engine.path, engine.disk, fsync=engine.fsync)
        self.coordinator = Coordinator(self.store)
        self.producers = ProducerSequences()
        self.executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=limits.kafka_engine_threads_max, thread_name_prefix="odradek-kafka"
        )
        self._topics: dict[str, TopicView] = {}
        self._arrival: asyncio.Event | None = None

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(function, *args, **kwargs))

    # -- topics -----------------------------------------------------------------------

    def _view(self, name: str) -> TopicView:
        info = self.engine.describe_topic(name)
        view = TopicView(
            name,
            info.created_at,
            self.store.partitions(name, info.created_at),
            topic_id_of(name, info.created_at),
        )
        self._topics[name] = view
        return view

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
        await self.call(self.store.set_partitions, view.name, view.created_at, count)
        updated = dataclasses.replace(view, partitions=count)
        self._topics[view.name] = updated
        return updated

    # -- fetch wake-ups ---------------------------------------------------------------

    def notify_arrival(self) -> None:
        if self._arrival is not None:
            self._arrival.set()
            self._arrival = None

    async def wait_arrival(self, timeout: float) -> None:
        """Return when the Kafka door appends anything, or after ``timeout`` seconds
        (data appended through other doors is seen by the caller's next poll)."""
        if self._arrival is None:
            self._arrival = asyncio.Event()
        try:
            await asyncio.wait_for(self._arrival.wait(), timeout)
        except TimeoutError:
            pass

    def close(self) -> None:
        self.coordinator.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def describe_error(error: OdradekError) -> str:
    return f"{type(error).__name__}: {error.message}"
