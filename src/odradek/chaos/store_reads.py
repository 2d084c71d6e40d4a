"""The chaos run's store readers: fetches at agents chosen at random, checked record by record.

Decision 0042: an agent that does not serve a topic's cell answers a fetch of the
topic's sealed segments from the cell's checkpoint in the store. ``StoreReadSettings.readers``
threads each fetch the keyed appends' topics, every time through one agent drawn at
random with a client of its own (a client told of one agent, so that it is not routed
to the owner by what it learned before): the agent answers from the store, or from its
own cell, or refuses and the client follows it to the owner. Offsets are drawn over
what the reader has seen of each topic so far, half the time from the end (to keep up
with the appends), half from anywhere before it (the history, which the store holds).

One time in four a reader reads the topics by pattern (the one topic of a one-cell run)
instead, from ``earliest``,
through an agent drawn at random, up to ``WILDCARD_RECORDS`` records: an agent reads
each cell it does not serve from the store, then asks the cell's agent to go on where
the store's part ended.

Every record a fetch or a read returned is kept (up to ``rows_max``) and, after the
run, checked against the topic as read back in full:

* ``misread``: a fetched record that is not the log's record at its offset (another
  key or value), or an offset the log does not hold: a reader was shown what the owner
  never acknowledged there.
* ``torn_read``: a wildcard read whose records of a topic do not follow each other
  offset by offset from the topic's first (0: the run's topics lose nothing): a gap
  or a repeat where the store's part and the owner's meet.

With the rest of the checks (every record of the log was acknowledged or in flight)
this says a reader at any agent sees only acknowledged records, at their offsets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from odradek import api
from odradek.errors import InvalidRequest

FETCH_RECORDS = 300
WILDCARD_SHARE = 0.25  # of a reader's turns: a wildcard read instead of a fetch
WILDCARD_RECORDS = 3000  # a wildcard read stops after this many records
EXAMPLES_MAX = 5
PAUSE_SECONDS = 0.05  # between fetches of one reader


@dataclasses.dataclass(frozen=True)
class StoreReadSettings:
    readers: int = 0  # 0: no store readers in the run
    rows_max: int = 2_000_000  # records kept for the check, per run

    def __post_init__(self) -> None:
        if self.readers < 0 or self.rows_max < 1:
            raise InvalidRequest("store readers: 0 or more, keeping at least one record")


class Fetched:
    """What the readers got: (topic, offset, key, value) of each record, in one list."""

    def __init__(self, rows_max: int) -> None:
        self._lock = threading.Lock()
        self.rows_max = rows_max
        self.rows: list[tuple[str, int, bytes | None, bytes | None]] = []
        self.dropped = 0  # records not kept past rows_max
        self.torn: list[dict[str, Any]] = []  # torn wildcard reads (examples, then counted)
        self.torn_count = 0

    def add_torn(self, example: dict[str, Any]) -> None:
        with self._lock:
            self.torn_count += 1
            if len(self.torn) < EXAMPLES_MAX:
                self.torn.append(example)

    def add(self, topic: str, batch: pa.RecordBatch) -> None:
        offsets = batch.column("offset").to_pylist()
        keys = batch.column("key").to_pylist()
        values = batch.column("value").to_pylist()
        with self._lock:
            room = max(self.rows_max - len(self.rows), 0)
            self.rows.extend(
                zip(
                    [topic] * min(room, len(offsets)), offsets[:room], keys[:room], values[:room], strict=True
                )
            )
            self.dropped += max(len(offsets) - room, 0)


class StoreReader:
    """One thread fetching through agents drawn at random, until ``stop`` is set."""

    def __init__(
        self,
        number: int,
        fetched: Fetched,
        urls: Callable[[], list[str]],
        connect: Callable[[str], api.Client],
        topics: Sequence[str],
        seed: int,
        pattern: str | None = None,
    ) -> None:
        self.name = f"r{number}"
        self.pattern = pattern  # of the topics, for wildcard reads; None: fetches only
        self.reads = 0  # wildcard reads
        self.fetched = fetched
        self.urls = urls
        self.connect = connect
        self.topics = list(topics)
        self.random = random.Random(seed * 104_729 + number)
        self.ends: dict[str, int] = {topic: 0 for topic in self.topics}  # offsets seen so far
        self.stop = threading.Event()
        self.fetches = 0
        self.records = 0
        self.failures: Counter[str] = Counter()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"chaos-{self.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def figures(self) -> dict[str, Any]:
        return {
            "fetches": self.fetches,
            "wildcard_reads": self.reads,
            "records": self.records,
            "failures": dict(self.failures),
        }

    def _run(self) -> None:
        try:
            while not self.stop.wait(PAUSE_SECONDS):
                if self.pattern is not None and self.random.random() < WILDCARD_SHARE:
                    self._read()
                else:
                    self._fetch()
        except Exception as exc:  # noqa: BLE001 - a bug of the reader itself: the harness reports it
            self.error = exc

    def _fetch(self) -> None:
        topic = self.random.choice(self.topics)
        end = self.ends[topic]
        offset = end if self.random.random() < 0.5 or end == 0 else self.random.randrange(end)
        url = self.random.choice(self.urls())
        client: api.Client | None = None
        try:
            client = self.connect(url)
            batches = client.fetch(topic, offset, max_records=FETCH_RECORDS)
        except Exception as exc:  # noqa: BLE001 - faults make fetches fail; the next one tries again
            self.failures[type(exc).__name__] += 1
            return
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self.fetches += 1
        for batch in batches:
            if batch.num_rows:
                self.fetched.add(topic, batch)
                self.records += batch.num_rows
                self.ends[topic] = max(self.ends[topic], int(batch.column("offset")[-1].as_py()) + 1)

    def _read(self) -> None:
        """A wildcard read from ``earliest`` through an agent drawn at random, each
        topic's records checked to follow each other from offset 0."""
        assert self.pattern is not None
        url = self.random.choice(self.urls())
        client: api.Client | None = None
        following: dict[str, int] = {}  # each topic's next offset in this read
        records = 0
        try:
            client = self.connect(url)
            for batch in client.read(self.pattern, start="earliest", wait=0, max_records=FETCH_RECORDS):
                for topic, part in _by_topic(batch, self.pattern):
                    offsets = part.column("offset").to_pylist()
                    expected = following.get(topic, 0)
                    if offsets != list(range(expected, expected + len(offsets))):
                        self.fetched.add_torn(
                            {"topic": topic, "url": url, "expected": expected, "got": offsets[:5]}
                        )
                    following[topic] = offsets[-1] + 1
                    self.fetched.add(topic, part)
                    records += part.num_rows
                if records >= WILDCARD_RECORDS or self.stop.is_set():
                    break
        except Exception as exc:  # noqa: BLE001 - faults make reads fail; the next one tries again
            self.failures[type(exc).__name__] += 1
        finally:
            self.records += records
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self.reads += 1


def _by_topic(batch: pa.RecordBatch, pattern: str) -> list[tuple[str, pa.RecordBatch]]:
    """A wildcard read's batch split by its ``topic`` column, in the order of the rows
    (a read of one topic, ``pattern``, has none)."""
    if "topic" not in batch.schema.names:
        return [(pattern, batch)] if batch.num_rows else []
    topics = batch.column("topic")
    names = pc.unique(topics).to_pylist()
    if len(names) == 1:
        return [(str(names[0]), batch)]
    return [(str(name), batch.filter(pc.equal(topics, name))) for name in names]


def check_store_reads(
    fetched: Fetched, logs: Mapping[str, pa.Table]
) -> tuple[dict[str, int], dict[str, list[Any]], dict[str, Any]]:
    """(anomaly counts, examples, figures): each fetched record against the log read
    back (see the module docstring)."""
    by_offset: dict[str, dict[int, tuple[bytes | None, bytes | None]]] = {}
    for topic, log in logs.items():
        columns = log.select(["offset", "key", "value"]).to_pydict()
        by_offset[topic] = {
            offset: (key, value)
            for offset, key, value in zip(columns["offset"], columns["key"], columns["value"], strict=True)
        }
    misread = 0
    examples: list[Any] = []
    for topic, offset, key, value in fetched.rows:
        logged = by_offset.get(topic, {}).get(offset)
        if logged == (key, value):
            continue
        misread += 1
        if len(examples) < EXAMPLES_MAX:
            examples.append(
                {
                    "topic": topic,
                    "offset": offset,
                    "fetched": [_show(key), _show(value)],
                    "log": None if logged is None else [_show(logged[0]), _show(logged[1])],
                }
            )
    figures = {"records_checked": len(fetched.rows), "records_not_kept": fetched.dropped}
    found = {"misread": examples} if examples else {}
    if fetched.torn:
        found["torn_read"] = list(fetched.torn)
    return {"misread": misread, "torn_read": fetched.torn_count}, found, figures


def _show(data: bytes | None) -> str | None:
    return None if data is None else data[:64].decode("utf-8", "backslashreplace")
