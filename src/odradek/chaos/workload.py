"""The chaos run's clients: workers appending through the Python client, a prober that
measures how long the cluster takes to serve again after a fault, and the read-back of
every topic at the end. Everything they do is recorded in the history.

Workers (threads, one client each, closed loop) mix three workloads:

* keyed appends to ``chaos.keys`` over many keys;
* ``expect=`` races on a few hot keys of ``chaos.hot``: read the key's version
  (recorded as a ``read``), then append expecting it; the workers race each other, so
  many of these fail with a conflict, and at most one may succeed per version;
* idempotent appends to ``chaos.idem``: a producer id per worker and a sequence; an
  append whose outcome is unknown is retried with the same producer, sequence and
  record until it is answered (the retries must be written once); a producer whose
  sequence cannot be known any more (retries exhausted, or a definite refusal) is
  abandoned for a new one, as a real client restarts its producer.

A plain append with an unknown outcome is never retried with the same record: the next
append carries a new value (a retry would be a second append, legitimately visible twice).

With ``WorkloadSettings.lanes`` above 1 (a cluster whose topics are spread over cells)
the three topics come in lanes, ``chaos.keys.<n>``, ``chaos.hot.<n>``, ``chaos.idem.<n>``,
with a probe topic ``chaos.probe.<n>`` per lane; each operation picks a lane at random,
a worker keeps a client per topic (a client follows a redirect to another agent one
connection at a time) and an idempotent producer's sequence per topic (a producer's
sequences are per topic). ``workload_topics`` gives them in the order to create them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import random
import threading
import time
from collections.abc import Callable, Sequence

import pyarrow as pa

from odradek import api, limits
from odradek.chaos.history import History, Outcome
from odradek.errors import InvalidRequest, TopicNotFound

TOPIC_KEYS = "chaos.keys"
TOPIC_HOT = "chaos.hot"
TOPIC_IDEMPOTENT = "chaos.idem"
TOPIC_PROBE = "chaos.probe"
TOPICS = (TOPIC_KEYS, TOPIC_HOT, TOPIC_IDEMPOTENT, TOPIC_PROBE)
READ_WAIT_SECONDS = 0.5  # the read-back ends this long after it caught up
RETRY_BACKOFF_SECONDS = 0.05  # between an idempotent append's retries, times the attempt
PROBE_INTERVAL_SECONDS = 0.2  # a new probe this often while measuring
# Probes in flight at once: a probe sent to a paused owner hangs until it wakes (two or
# three lease TTLs, ~10 s), and probes go out every PROBE_INTERVAL_SECONDS.
PROBES_IN_FLIGHT_MAX = 128

ClientFactory = Callable[[], api.Client]
LOG_SCHEMA = pa.schema(
    [("offset", pa.int64()), ("key", pa.binary()), ("value", pa.binary()), ("version", pa.int64())]
)


@dataclasses.dataclass(frozen=True)
class WorkloadSettings:
    workers: int = 4
    keys: int = 1000  # keys of the plain and idempotent appends
    hot_keys: int = 3  # keys the expect= races are on
    weights: tuple[float, float, float] = (0.5, 0.3, 0.2)  # plain, expect race, idempotent
    retries_max: int = 10  # an idempotent append's attempts before its producer is abandoned
    lanes: int = 1  # sets of topics (one per cell of the cluster: workload_topics)

    def __post_init__(self) -> None:
        if self.workers < 1 or self.keys < 1 or self.hot_keys < 1 or self.retries_max < 1:
            raise InvalidRequest("a workload needs at least one worker, key, hot key and attempt")
        if not 1 <= self.lanes <= limits.cluster_cells_max:
            raise InvalidRequest(f"a workload has 1..{limits.cluster_cells_max} lanes, not {self.lanes}")
        if len(self.weights) != 3 or min(self.weights) < 0 or sum(self.weights) <= 0:
            raise InvalidRequest(f"workload weights must be three non-negative numbers, got {self.weights}")


@dataclasses.dataclass(frozen=True)
class Lane:
    """The topics of one lane: plain keyed appends, expect= races, idempotent appends."""

    keys: str
    hot: str
    idempotent: str


def lanes(count: int = 1) -> tuple[Lane, ...]:
    """The workload's lanes: the three topics of TOPICS for one, numbered ones for more."""
    if count == 1:
        return (Lane(TOPIC_KEYS, TOPIC_HOT, TOPIC_IDEMPOTENT),)
    return tuple(
        Lane(f"{TOPIC_KEYS}.{n}", f"{TOPIC_HOT}.{n}", f"{TOPIC_IDEMPOTENT}.{n}") for n in range(count)
    )


def probe_topics(count: int = 1) -> tuple[str, ...]:
    """The probe topics: TOPIC_PROBE for one lane, ``chaos.probe.<n>`` per lane for more."""
    return (TOPIC_PROBE,) if count == 1 else tuple(f"{TOPIC_PROBE}.{n}" for n in range(count))


def workload_topics(count: int = 1) -> tuple[str, ...]:
    """Every topic of ``count`` lanes, in the order to create them: TOPICS for one lane;
    for more, the probes first, then each kind of topic over every lane, so that a
    cluster placing each new topic in its least loaded cell gives every cell a probe
    topic and one topic of each kind when there are as many lanes as cells."""
    if count == 1:
        return TOPICS
    every = lanes(count)
    return (
        *probe_topics(count),
        *(lane.keys for lane in every),
        *(lane.hot for lane in every),
        *(lane.idempotent for lane in every),
    )


def create_topics(
    client: api.Client, topics: Sequence[str] = TOPICS, *, segment_bytes: str | None = None
) -> None:
    """Create ``topics`` (those that exist stay), with ``segment_bytes`` if given."""
    for topic in topics:
        if segment_bytes is None:
            client.create_topic(topic, exist_ok=True)
        else:
            client.create_topic(topic, exist_ok=True, segment_bytes=segment_bytes)


class Worker:
    """One thread with one client, until ``stop`` is set."""

    def __init__(
        self, number: int, history: History, connect: ClientFactory, settings: WorkloadSettings, seed: int
    ) -> None:
        self.name = f"w{number}"
        self.history = history
        self.connect = connect
        self.settings = settings
        self.random = random.Random(seed * 1_000_003 + number)
        self.lanes = lanes(settings.lanes)
        self.stop = threading.Event()
        self.values = itertools.count()
        self.generation: dict[str, int] = {}  # of the idempotent producer, per topic
        self.sequence: dict[str, int] = {}
        # One client for one lane; one per topic for several (their topics may be
        # served by different agents, and a client follows one agent at a time).
        self.clients: dict[str, api.Client] = {}
        self.error: BaseException | None = None  # what ended the thread, if not stop
        self.thread = threading.Thread(target=self._run, name=f"chaos-{self.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            self._client(self.lanes[0].keys)
        except Exception as exc:  # noqa: BLE001 - reported by the harness
            self.error = exc
            return
        try:
            workloads = (self._plain, self._race, self._idempotent)
            while not self.stop.is_set():
                lane = (
                    self.lanes[self.random.randrange(len(self.lanes))]
                    if len(self.lanes) > 1
                    else self.lanes[0]
                )
                self.random.choices(workloads, weights=self.settings.weights)[0](lane)
        except Exception as exc:  # noqa: BLE001 - a bug of the worker itself: the harness reports it
            self.error = exc
        finally:
            for client in self.clients.values():
                with contextlib.suppress(Exception):
                    client.close()

    def _client(self, topic: str) -> api.Client:
        slot = topic if len(self.lanes) > 1 else ""
        client = self.clients.get(slot)
        if client is None:
            client = self.clients[slot] = self.connect()
        return client

    def _value(self) -> str:
        return f"{self.name}-{next(self.values)}"

    def _plain(self, lane: Lane) -> None:
        key = f"k{self.random.randrange(self.settings.keys)}"
        append(self.history, self._client(lane.keys), self.name, lane.keys, key, self._value())

    def _race(self, lane: Lane) -> None:
        key = f"hot{self.random.randrange(self.settings.hot_keys)}"
        client = self._client(lane.hot)
        operation = self.history.invoke_read(self.name, lane.hot, key)
        try:
            version = client.key_version(lane.hot, key.encode())
        except Exception as exc:  # noqa: BLE001 - every failure is recorded as what it implies
            self.history.failed(operation, exc)
            return
        self.history.ok(operation, version=version)
        append(self.history, client, self.name, lane.hot, key, self._value(), expect=version)

    def _idempotent(self, lane: Lane) -> None:
        topic = lane.idempotent
        key = f"i{self.random.randrange(self.settings.keys)}"
        value = self._value()
        client = self._client(topic)
        generation = self.generation.get(topic, 0)
        producer = f"{self.name}-p{generation}"
        for attempt in range(self.settings.retries_max):
            outcome = append(
                self.history,
                client,
                self.name,
                topic,
                key,
                value,
                producer=(producer, self.sequence.get(topic, 0)),
            )
            if outcome is Outcome.OK:
                self.sequence[topic] = self.sequence.get(topic, 0) + 1
                return
            if outcome is Outcome.FAIL or self.stop.is_set():
                break
            time.sleep(RETRY_BACKOFF_SECONDS * (attempt + 1))
        # The producer's next sequence is unknown now: a new producer starts afresh.
        self.generation[topic] = generation + 1
        self.sequence[topic] = 0


def append(
    history: History,
    client: api.Client,
    worker: str,
    topic: str,
    key: str,
    value: str,
    *,
    expect: int | None = None,
    producer: tuple[str, int] | None = None,
) -> Outcome:
    """One keyed append of one record, recorded; its outcome."""
    operation = history.invoke_append(
        worker,
        topic,
        key,
        value,
        expect=expect,
        producer=None if producer is None else producer[0],
        sequence=None if producer is None else producer[1],
    )
    record = [{"key": key.encode(), "value": value.encode()}]
    try:
        result = client.append(
            topic, record, expect=None if expect is None else {key.encode(): expect}, producer=producer
        )
    except Exception as exc:  # noqa: BLE001 - every failure is recorded as what it implies
        return history.failed(operation, exc, idempotent=producer is not None)
    history.ok(operation, offset=result.base_offset, version=result.versions.get(key.encode()))
    return Outcome.OK


class Prober:
    """Measures when the cluster serves again: probe appends to ``chaos.probe`` (or to the
    probe topics asked for), each on a client of its own (a fresh client knows no owner
    yet, as a new application would), starting at another agent each time."""

    def __init__(
        self,
        history: History,
        urls: Callable[[], Sequence[str]],
        connect: Callable[[str], api.Client],
        *,
        interval_seconds: float = PROBE_INTERVAL_SECONDS,
        in_flight_max: int = PROBES_IN_FLIGHT_MAX,
    ) -> None:
        self.history = history
        self.urls = urls
        self.connect = connect
        self.interval_seconds = interval_seconds
        self.slots = threading.BoundedSemaphore(in_flight_max)
        self._lock = threading.Lock()
        # (topic, sent, answered), time.monotonic()
        self._successes: list[tuple[str, float, float]] = []
        self._numbers = itertools.count()
        self._threads: list[threading.Thread] = []

    def served_after(
        self,
        since: float,
        seconds: float,
        stop: Callable[[], bool] = lambda: False,
        topics: Sequence[str] = (TOPIC_PROBE,),
    ) -> float | None:
        """Seconds from ``since`` (time.monotonic()) to the answer of the first probe sent at
        or after it that succeeded, probing until one does; None past ``seconds`` (or once
        ``stop()``). With several ``topics``: until a probe of each succeeded, the latest
        of their first answers (every topic served again)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not stop():
            answers = {topic: self._first_success(topic, since) for topic in topics}
            if None not in answers.values():
                return max(answered for answered in answers.values() if answered is not None) - since
            for topic, answered in answers.items():
                if answered is None:
                    self._launch(topic)
            time.sleep(self.interval_seconds)
        answers = {topic: self._first_success(topic, since) for topic in topics}
        if None in answers.values():
            return None
        return max(answered for answered in answers.values() if answered is not None) - since

    def join(self, seconds: float) -> int:
        """Wait for the probes in flight; how many are still hanging after ``seconds``."""
        deadline = time.monotonic() + seconds
        for thread in list(self._threads):
            thread.join(max(deadline - time.monotonic(), 0.0))
        return sum(thread.is_alive() for thread in self._threads)

    def _first_success(self, topic: str, since: float) -> float | None:
        with self._lock:
            answers = [answered for to, sent, answered in self._successes if to == topic and sent >= since]
        return min(answers) if answers else None

    def _launch(self, topic: str = TOPIC_PROBE) -> None:
        if not self.slots.acquire(blocking=False):
            return
        number = next(self._numbers)
        urls = list(self.urls())
        start = number % len(urls) if urls else 0
        url = ",".join(urls[start:] + urls[:start])
        thread = threading.Thread(
            target=self._probe, args=(number, url, topic), name="chaos-probe", daemon=True
        )
        self._threads = [other for other in self._threads if other.is_alive()] + [thread]
        thread.start()

    def _probe(self, number: int, url: str, topic: str) -> None:
        try:
            sent = time.monotonic()
            try:
                client = self.connect(url)
            except Exception as exc:  # noqa: BLE001 - a probe that cannot even connect did nothing
                operation = self.history.invoke_append("probe", topic, "probe", f"probe-{number}")
                self.history.failed(operation, exc)
                return
            try:
                outcome = append(self.history, client, "probe", topic, "probe", f"probe-{number}")
            finally:
                with contextlib.suppress(Exception):
                    client.close()
            if outcome is Outcome.OK:
                with self._lock:
                    self._successes.append((topic, sent, time.monotonic()))
        finally:
            self.slots.release()


def read_back(
    client: api.Client, topics: Sequence[str] = TOPICS
) -> tuple[dict[str, pa.Table], dict[str, tuple[int, int]]]:
    """Every record of each topic (offset, key, value, version) and the topic's
    ``(first_offset, next_offset)`` as the server describes it; a topic that is gone reads
    as empty."""
    logs: dict[str, pa.Table] = {}
    bounds: dict[str, tuple[int, int]] = {}
    for topic in topics:
        try:
            info = client.describe_topic(topic)
            batches = list(client.read(topic, start="earliest", wait=READ_WAIT_SECONDS))
        except TopicNotFound:
            logs[topic] = LOG_SCHEMA.empty_table()
            continue
        logs[topic] = (
            pa.Table.from_batches(batches).select(LOG_SCHEMA.names) if batches else LOG_SCHEMA.empty_table()
        )
        bounds[topic] = (info.first_offset, info.next_offset)
    return logs, bounds
