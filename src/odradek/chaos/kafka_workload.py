"""The chaos run's Kafka-door workers: keyed produces through a real Kafka client
(librdkafka, through ``confluent-kafka``), recorded in the history as appends through
the ``kafka`` door (``chaos/history.py``).

A worker is one thread with one idempotent producer (``enable.idempotence``,
``acks=all``, the ``murmur2_random`` partitioner the door partitions keys with),
bootstrapped with every agent's Kafka address: only the owner's door serves (a standby's
port relays a client to it), and the owner's Metadata names itself the leader of every
partition; after a failover the client bootstraps again to find the new owner
(``REBOOTSTRAP_MS`` says why it is set low). It produces keyed records to
``chaos.kafka`` (``KafkaSettings.partitions`` virtual partitions over the one log) at a
steady rate, with at most ``in_flight_max`` produces awaiting their delivery report.
Each value is unique (``k0-17``): the client retries a produce internally, with the same
producer id, epoch and sequence, which the door must deduplicate; the worker itself
never sends a value again.

Outcomes (what the client can know):

* the delivery report has no error: ``ok``, at the offset it gives (a Kafka offset is the
  log's offset, whatever the partition), or at no known offset if it gives none;
* ``produce()`` raised (the local queue full, the producer failed): ``fail``, the record
  was never queued, so it was never sent;
* the delivery report has an error (timed out after the client's retries, purged at the
  end, the producer failed): ``info``. Even a record purged from the client's queue may
  have been sent before (a retry waits in that queue), so no delivery error proves that
  nothing was written. A produce never reported is ``info`` too (``pending``).

A fatal error (the client's idempotence state cannot be recovered, e.g. a sequence the
broker refuses) ends the producer: what it has in flight is given a bounded time, the
rest purged, and a new producer (a new Kafka producer id) takes over, as an application
restarts its producer. The client's own log goes to a file of the worker's (or
nowhere), never to the terminal: it is loud while brokers are down.

A *transactional* worker (``TransactionalKafkaWorker``, ``KafkaSettings.transactional``)
runs Kafka transactions with one transactional producer (one ``transactional.id`` for
the run: a replaced producer fences the one before), each writing
``transaction_records`` keyed records to every ``chaos.kafka.tx.<n>`` topic, one topic
per cell (decision 0037: the commit spans cells). One transaction in five is aborted on
purpose. Its appends' outcome is the transaction's: ``ok`` when the commit returned,
``fail`` when the abort returned (the coordinator refuses an abort after a commit), else
``info``; the checker holds each transaction to all or none of its records.

``confluent-kafka`` comes with the ``kafka`` extra; it is imported only when a producer
or an admin client is made, so the rest of the chaos package works without it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
import random
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from odradek import limits
from odradek.chaos.history import Door, History
from odradek.errors import InvalidRequest, Unavailable

TOPIC_KAFKA = "chaos.kafka"
KAFKA_TOPICS = (TOPIC_KAFKA,)
TXN_TOPIC_PREFIX = "chaos.kafka.tx."
TXN_SECONDS = 30.0  # a transaction's commit or abort is retried (retriable errors) this long
TXN_TIMEOUT_MS = 20_000  # transaction.timeout.ms: the coordinator aborts a stuck one
ABORT_EVERY = 5  # one transaction in this many is aborted on purpose
PRODUCES_IN_FLIGHT_MAX = limits.chaos_kafka_produces_in_flight_max
CLOSE_SECONDS = limits.chaos_kafka_close_seconds
POLL_SECONDS = 0.05  # the worker serves the client's callbacks at least this often
BACKLOG_SECONDS = 1.0  # after a stall (in-flight cap reached), catch up at most this much
# The client's timers, shortened from librdkafka's defaults (30 s and more) so that it
# notices a dead owner and finds the new one within the time of a failover.
REQUEST_TIMEOUT_MS = 10_000
CONNECTION_SETUP_TIMEOUT_MS = 5_000
METADATA_REFRESH_MS = 2_000
RECONNECT_BACKOFF_MS = 50
RECONNECT_BACKOFF_MAX_MS = 500
# Every agent's Kafka door is node 1 at its own address (decision 0013): after a failover
# the client knows only the old owner's address and finds the new owner by bootstrapping
# again (its list names every agent), or once the old agent stands by again and its relay
# answers Metadata with the new owner. librdkafka bootstraps again at once when every
# broker it knows is down, but a late Metadata answer from the old owner (a paused owner
# waking, answering what it had received before it steps down) can cancel that for good
# (librdkafka 2.16), leaving the client to wait for the old agent's relay. Bootstrapping
# again after this long without metadata (default 300 s, KIP-1102) does it while the
# owner is still paused, before the late answer: in chaos runs produces then waited up
# to 8.0 s, as long as a failover, against 10.6 s with the default (38 s before
# standbys relayed).
REBOOTSTRAP_MS = 2_000
LINGER_MS = 5


class Producer(Protocol):
    """What a worker uses of ``confluent_kafka.Producer`` (a fake in tests)."""

    def produce(
        self, topic: str, *, value: bytes, key: bytes, on_delivery: Callable[[Any, Any], None]
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None: ...

    def close(self) -> Any: ...


ProducerFactory = Callable[[dict[str, Any]], Producer]


@dataclasses.dataclass(frozen=True)
class KafkaSettings:
    workers: int = 1  # 0: no Kafka worker
    keys: int = 1000
    partitions: int = 2  # virtual partitions of chaos.kafka
    rate_per_second: float = 200.0  # produces per worker
    in_flight_max: int = 64  # produces of a worker awaiting their delivery report
    transactional: int = 0  # transactional workers (their topics: one per cell)
    transaction_records: int = 4  # records per topic per transaction
    transactions_per_second: float = 20.0  # per transactional worker, at most

    def __post_init__(self) -> None:
        if self.workers < 0 or self.keys < 1:
            raise InvalidRequest("Kafka workers must be 0 or more, over at least one key")
        if not 1 <= self.partitions <= limits.kafka_partitions_max:
            raise InvalidRequest(
                f"the Kafka topic needs 1 to {limits.kafka_partitions_max} partitions, got {self.partitions}"
            )
        if not (math.isfinite(self.rate_per_second) and self.rate_per_second > 0):
            raise InvalidRequest(
                f"a Kafka worker's rate must be a positive number, got {self.rate_per_second}"
            )
        if self.transactional < 0 or not 1 <= self.transaction_records <= 1000:
            raise InvalidRequest(
                "transactional Kafka workers must be 0 or more, each transaction 1 to 1000 records a topic"
            )
        if not (math.isfinite(self.transactions_per_second) and self.transactions_per_second > 0):
            raise InvalidRequest(
                f"a transactional worker's rate must be a positive number, got {self.transactions_per_second}"
            )
        if not 1 <= self.in_flight_max <= PRODUCES_IN_FLIGHT_MAX:
            raise InvalidRequest(
                f"a Kafka worker keeps 1 to {PRODUCES_IN_FLIGHT_MAX} produces in flight, "
                f"got {self.in_flight_max}"
            )


def txn_topics(cells: int) -> tuple[str, ...]:
    """The transactional workers' topics: one per cell (two at least), created after
    every other topic so that placing each in the least loaded cell spreads them."""
    return tuple(f"{TXN_TOPIC_PREFIX}{index}" for index in range(max(cells, 2)))


def producer_config(bootstrap: str, client_id: str, logger: logging.Logger) -> dict[str, Any]:
    """What every chaos producer is configured with: the keys' partitioner and the
    client's timers shortened to notice a failover (above)."""
    return {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "partitioner": "murmur2_random",
        "linger.ms": LINGER_MS,
        "request.timeout.ms": REQUEST_TIMEOUT_MS,
        "socket.connection.setup.timeout.ms": CONNECTION_SETUP_TIMEOUT_MS,
        "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
        "reconnect.backoff.ms": RECONNECT_BACKOFF_MS,
        "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
        "metadata.recovery.strategy": "rebootstrap",
        "metadata.recovery.rebootstrap.trigger.ms": REBOOTSTRAP_MS,
        "log.connection.close": False,
        "logger": logger,
    }


def confluent_producer(config: dict[str, Any]) -> Producer:
    from confluent_kafka import Producer as ConfluentProducer

    producer: Producer = ConfluentProducer(config)
    return producer


def create_kafka_topic(
    bootstrap: str, partitions: int, seconds: float = limits.chaos_kafka_admin_seconds
) -> None:
    """Create ``chaos.kafka`` with ``partitions`` virtual partitions through the Kafka
    door's admin API (CreateTopics); a topic already there is left as it is. Raises
    Unavailable if the door does not create it within ``seconds``."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _quiet_logger("admin")}
    admin = AdminClient(config)
    futures = admin.create_topics(
        [NewTopic(TOPIC_KAFKA, num_partitions=partitions, replication_factor=1)],
        request_timeout=seconds,
    )
    try:
        futures[TOPIC_KAFKA].result(timeout=seconds)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if not (isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS):
            raise Unavailable(f"the Kafka door did not create {TOPIC_KAFKA}: {exc}") from exc
    except TimeoutError as exc:  # concurrent.futures.TimeoutError is TimeoutError
        raise Unavailable(f"the Kafka door did not create {TOPIC_KAFKA} within {seconds:g} s") from exc


def _quiet_logger(name: str, path: Path | None = None) -> logging.Logger:
    """A logger of its own (outside logging's tree, so nothing reaches the terminal):
    to ``path`` if given, else nowhere."""
    logger = logging.Logger(f"odradek.chaos.{name}", logging.DEBUG)
    handler: logging.Handler = logging.NullHandler()
    if path is not None:
        handler = logging.FileHandler(path, encoding="utf-8", delay=True)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger


def describe_kafka_error(error: Any) -> str:
    """``kafka <NAME>: <text>`` of a KafkaError."""
    try:
        return f"kafka {error.name()}: {error.str()}"
    except AttributeError:
        return f"kafka {error}"


class _KafkaThread:
    """What a Kafka worker is to the harness (the face of ``workload.Worker``): a
    ``name``, a thread started by ``start``, ended by setting ``stop``, and the
    ``error`` that ended it otherwise; the client's log goes to ``log`` (a file of the
    worker's, or nowhere), closed when the thread ends."""

    def __init__(
        self,
        name: str,
        history: History,
        bootstrap: str,
        settings: KafkaSettings,
        seed: int,
        log_path: Path | None,
    ) -> None:
        self.name = name
        self.history = history
        self.bootstrap = bootstrap
        self.settings = settings
        self.random = random.Random(seed)
        self.stop = threading.Event()
        self.error: BaseException | None = None  # what ended the thread, if not stop
        self.thread = threading.Thread(target=self._run, name=f"chaos-{name}", daemon=True)
        self.log = _quiet_logger(name, log_path)
        # Figures for the report (read once the thread ended).
        self.producers = 0
        self.client_errors = 0

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def _client_error(self, error: Any) -> None:
        """The client's error callback: counted and logged."""
        self.client_errors += 1
        self.log.warning("client error: %s", describe_kafka_error(error))

    def _close_log(self) -> None:
        for handler in list(self.log.handlers):
            handler.close()
            self.log.removeHandler(handler)


class KafkaWorker(_KafkaThread):
    """One thread with one idempotent producer at a time, until ``stop`` is set (the
    same face as ``workload.Worker``: ``name``, ``start``, ``stop``, ``thread``,
    ``error``)."""

    def __init__(
        self,
        number: int,
        history: History,
        bootstrap: str,
        settings: KafkaSettings,
        seed: int,
        *,
        log_path: Path | None = None,
        make_producer: ProducerFactory = confluent_producer,
        close_seconds: float = CLOSE_SECONDS,
    ) -> None:
        super().__init__(f"k{number}", history, bootstrap, settings, seed * 1_000_033 + number, log_path)
        self.make_producer = make_producer
        self.close_seconds = close_seconds
        self._values = itertools.count()
        # Touched by the worker's thread only (the client's callbacks run in poll/flush).
        self.generation = -1  # of the producer
        self.sequence = 0  # the next produce's number on the producer
        self.outstanding = 0  # produces awaiting their delivery report
        self._fatal: str | None = None
        # Figures for the report (read once the thread ended), besides the base's.
        self.fatal_errors: list[str] = []
        self.acks_without_offset = 0

    def figures(self) -> dict[str, Any]:
        return {
            "producers": self.producers,
            "fatal_errors": list(self.fatal_errors),
            "client_errors": self.client_errors,
            "acks_without_offset": self.acks_without_offset,
        }

    @property
    def producer_name(self) -> str:
        return f"{self.name}-p{self.generation}"

    def _run(self) -> None:
        producer: Producer | None = None
        try:
            producer = self._open()
            due = time.monotonic()
            while not self.stop.is_set():
                producer, due = self._step(producer, due)
        except Exception as exc:  # noqa: BLE001 - a bug of the worker itself: the harness reports it
            self.error = exc
        finally:
            try:
                if producer is not None:
                    self._retire(producer, self.close_seconds)
            except Exception as exc:  # noqa: BLE001 - reported like any other
                self.error = self.error or exc
            finally:
                self._close_log()

    def _step(self, producer: Producer, due: float) -> tuple[Producer, float]:
        """Produce what is due (paced, at most ``in_flight_max`` unanswered), serve the
        client's callbacks; a producer that failed for good is replaced first. Returns
        the producer and when the next produce is due."""
        if self._fatal is not None:
            self.log.error("fatal error, producer %s replaced: %s", self.producer_name, self._fatal)
            self.fatal_errors.append(self._fatal)
            self._retire(producer, POLL_SECONDS)
            producer = self._open()
        now = time.monotonic()
        due = max(due, now - BACKLOG_SECONDS)
        while due <= now and self.outstanding < self.settings.in_flight_max and self._fatal is None:
            self._produce(producer)
            due += 1.0 / self.settings.rate_per_second
        wait = POLL_SECONDS if self.outstanding >= self.settings.in_flight_max else due - now
        producer.poll(min(max(wait, 0.0), POLL_SECONDS))
        return producer, due

    def _open(self) -> Producer:
        self.generation += 1
        self.sequence = 0
        self._fatal = None
        self.producers += 1
        return self.make_producer(
            {
                **producer_config(self.bootstrap, f"odradek-chaos-{self.producer_name}", self.log),
                "enable.idempotence": True,
                "acks": "all",
                "message.timeout.ms": limits.chaos_kafka_message_timeout_ms,
                "error_cb": self._on_error,
            }
        )

    def _produce(self, producer: Producer) -> None:
        key = f"k{self.random.randrange(self.settings.keys)}"
        value = f"{self.name}-{next(self._values)}"
        operation = self.history.invoke_append(
            self.name,
            TOPIC_KAFKA,
            key,
            value,
            producer=self.producer_name,
            sequence=self.sequence,
            door=Door.KAFKA,
        )
        self.sequence += 1
        try:
            producer.produce(
                TOPIC_KAFKA,
                value=value.encode(),
                key=key.encode(),
                on_delivery=functools.partial(self._delivered, operation),
            )
        except Exception as exc:  # noqa: BLE001 - whatever produce() raises, the record was not queued
            self.history.fail(operation, f"{type(exc).__name__}: {exc}")
            return
        self.outstanding += 1

    def _delivered(self, operation: int, error: Any, message: Any) -> None:
        """The delivery report of one produce (called by the client in poll/flush)."""
        self.outstanding -= 1
        if error is not None:
            self.history.info(operation, describe_kafka_error(error))
            return
        offset = message.offset()
        if offset is None or offset < 0:
            self.acks_without_offset += 1
            self.history.ok(operation)
        else:
            self.history.ok(operation, offset=int(offset))

    def _on_error(self, error: Any) -> None:
        """The client's error callback: logged; a fatal error retires the producer."""
        self._client_error(error)
        fatal = getattr(error, "fatal", None)
        if callable(fatal) and fatal():
            self._fatal = describe_kafka_error(error)

    def _retire(self, producer: Producer, seconds: float) -> None:
        """Give the produces in flight ``seconds`` to be acknowledged, purge the rest
        (their reports say so: ``info``), close the producer."""
        try:
            if producer.flush(seconds):
                producer.purge(in_queue=True, in_flight=True, blocking=True)
                producer.flush(POLL_SECONDS)
        finally:
            producer.close()


class TransactionalKafkaWorker(_KafkaThread):
    """One thread running Kafka transactions over ``topics`` with one transactional
    producer at a time (see the module docstring; the face of ``KafkaWorker``)."""

    def __init__(
        self,
        number: int,
        history: History,
        bootstrap: str,
        settings: KafkaSettings,
        topics: tuple[str, ...],
        seed: int,
        *,
        log_path: Path | None = None,
    ) -> None:
        super().__init__(f"t{number}", history, bootstrap, settings, seed * 1_000_037 + number, log_path)
        self.topics = topics
        self._numbers = itertools.count()
        self.generation = -1
        self.outcomes = {"committed": 0, "aborted": 0, "unknown": 0}

    def figures(self) -> dict[str, Any]:
        return {"producers": self.producers, "client_errors": self.client_errors, **self.outcomes}

    def _run(self) -> None:
        producer: Any = None
        try:
            while not self.stop.is_set():
                if producer is None:
                    producer = self._open()
                    continue
                producer = self._transaction(producer)
                self.stop.wait(1.0 / self.settings.transactions_per_second)
        except Exception as exc:  # noqa: BLE001 - a bug of the worker itself: the harness reports it
            self.error = exc
        finally:
            try:
                if producer is not None:
                    self._close(producer)
            finally:
                self._close_log()

    def _open(self) -> Any:
        """A transactional producer, initialized (None after a pause if it could not be:
        its coordinator is failing over)."""
        from confluent_kafka import KafkaException
        from confluent_kafka import Producer as ConfluentProducer

        self.generation += 1
        self.producers += 1
        producer = ConfluentProducer(
            {
                **producer_config(self.bootstrap, f"odradek-chaos-{self.name}-p{self.generation}", self.log),
                "transactional.id": f"odradek-chaos-{self.name}",
                "transaction.timeout.ms": TXN_TIMEOUT_MS,
                "message.timeout.ms": TXN_TIMEOUT_MS,
                "error_cb": self._client_error,
            }
        )
        try:
            producer.init_transactions(TXN_SECONDS)
        except KafkaException as exc:
            self.log.warning("init_transactions failed: %s", describe_kafka_error(exc.args[0]))
            self._close(producer)
            self.stop.wait(POLL_SECONDS * 10)
            return None
        return producer

    def _transaction(self, producer: Any) -> Any:
        """One transaction; the producer to go on with (None: replace it)."""
        from confluent_kafka import KafkaException

        transaction = f"{self.name}-x{next(self._numbers)}"
        try:
            producer.begin_transaction()
        except KafkaException as exc:
            self.log.warning("begin_transaction failed: %s", describe_kafka_error(exc.args[0]))
            self._close(producer)
            return None
        operations = []
        queued = True
        for index, topic in enumerate(self.topics):
            for record in range(self.settings.transaction_records):
                key = f"k{self.random.randrange(self.settings.keys)}"
                value = f"{transaction}-{index}-{record}"
                operations.append(
                    self.history.invoke_append(
                        self.name, topic, key, value, door=Door.KAFKA, transaction=transaction
                    )
                )
                try:
                    producer.produce(topic, value=value.encode(), key=key.encode())
                except Exception as exc:  # noqa: BLE001 - not queued: the transaction is aborted
                    self.log.warning("produce failed: %s", exc)
                    queued = False
                    break
            if not queued:
                break
        commit = queued and self.random.randrange(ABORT_EVERY) != 0
        return self._finish(producer, operations, commit)

    def _finish(self, producer: Any, operations: list[int], commit: bool) -> Any:
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + TXN_SECONDS
        error: Any = None
        if commit:
            while True:
                try:
                    producer.commit_transaction(max(deadline - time.monotonic(), 1.0))
                except KafkaException as exc:
                    error = exc.args[0]
                    if error.retriable() and time.monotonic() < deadline:
                        continue
                    if not error.txn_requires_abort():
                        return self._unknown(producer, operations, error)
                    break  # abortable: aborted below
                for operation in operations:
                    self.history.ok(operation)
                self.outcomes["committed"] += 1
                return producer
        while True:
            try:
                producer.abort_transaction(max(deadline - time.monotonic(), 1.0))
            except KafkaException as exc:
                if exc.args[0].retriable() and time.monotonic() < deadline:
                    continue
                return self._unknown(producer, operations, exc.args[0])
            why = "aborted" if error is None else f"aborted after {describe_kafka_error(error)}"
            for operation in operations:
                self.history.fail(operation, why)
            self.outcomes["aborted"] += 1
            return producer

    def _unknown(self, producer: Any, operations: list[int], error: Any) -> None:
        """The transaction's outcome is unknown: its appends are ``info``; the producer
        is replaced (its state is not to be trusted)."""
        for operation in operations:
            self.history.info(operation, describe_kafka_error(error))
        self.outcomes["unknown"] += 1
        self.log.warning("transaction outcome unknown: %s", describe_kafka_error(error))
        self._close(producer)
        return None

    def _close(self, producer: Any) -> None:
        """Close a producer whatever state it is in (closing one with a transaction in
        doubt tries an abort, which may fail: that is the outcome already recorded)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                producer.close()
            except Exception as exc:  # noqa: BLE001 - the producer is being given up
                self.log.warning("closing the producer: %s", exc)
