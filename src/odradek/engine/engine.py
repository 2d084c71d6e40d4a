"""The engine: the one place where Odradek's semantics live.

Every door (embedded client, Arrow Flight, Kafka, CLI) is a thin adapter over the
methods of :class:`Engine`. A data directory holds::

    LOCK                      flock'd by the process that owns the directory
    topics/<name>/topic.json  name, config, creation time (atomically replaced)
    topics/<name>/*.log       segments (see segment.py), *.index sidecars
    topics/<name>/keys/       key index runs (see keyindex.py)
    topics/<name>/producers/  producer state snapshots (see producers.py)

Threading: topic creation and deletion hold ``_topics_lock``; everything else goes to
the topic, whose own rules are in topic.py. Readers waiting for new data (long-poll)
sleep on ``_arrivals``, which is notified whenever a topic's durable offset moves or a
topic is created.
"""

from __future__ import annotations

import collections
import datetime
import fcntl
import json
import logging
import numbers
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from odradek import limits
from odradek.config import TopicConfig
from odradek.engine.topic import PendingAppend, Topic, normalize_key
from odradek.errors import (
    ClosedError,
    InvalidRequest,
    OdradekError,
    StorageError,
    TopicExists,
    TopicNotFound,
)
from odradek.files import fsync_directory, write_json_atomically
from odradek.groups.manager import GroupManager
from odradek.names import compile_pattern, is_pattern, validate_topic_name
from odradek.records import Records, timestamp_micros, to_input_batch
from odradek.types import AppendResult, TopicInfo

log = logging.getLogger(__name__)

Start = Any  # "earliest" | "latest" | int offset | datetime


class Engine:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool = True,
        append_bytes_max: int = limits.append_bytes_max_default,
        retention_check_seconds: float = 60.0,
    ) -> None:
        if type(append_bytes_max) is not int or append_bytes_max < 1:
            raise InvalidRequest(f"append_bytes_max must be an int >= 1, got {append_bytes_max!r}")
        if type(retention_check_seconds) not in (int, float) or not retention_check_seconds > 0:  # NaN too
            raise InvalidRequest(f"retention_check_seconds must be > 0, got {retention_check_seconds!r}")
        self.path = os.path.abspath(os.fspath(path))
        self.fsync = fsync
        self.append_bytes_max = append_bytes_max
        self._topics_dir = os.path.join(self.path, "topics")
        self._trash_dir = os.path.join(self.path, "trash")
        try:
            os.makedirs(self._topics_dir, exist_ok=True)
            os.makedirs(self._trash_dir, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot use data directory {self.path}: {exc}") from exc
        self._lock_file = open(os.path.join(self.path, "LOCK"), "a+")
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock_file.close()
            raise StorageError(f"data directory {self.path} is in use by another Odradek process") from exc
        self._topics_lock = threading.RLock()
        self._topics: dict[str, Topic] = {}
        self._arrivals = threading.Condition()
        self._generation = 0
        self.closed = False
        shutil.rmtree(self._trash_dir, ignore_errors=True)
        os.makedirs(self._trash_dir, exist_ok=True)
        for name in sorted(os.listdir(self._topics_dir)):
            directory = os.path.join(self._topics_dir, name)
            if os.path.isfile(os.path.join(directory, "topic.json")):
                self._topics[name] = self._open_topic(directory)
        self.groups = GroupManager(self)  # consumer groups (groups/), woken by _notify
        self._stop = threading.Event()
        self._retention_thread = threading.Thread(
            target=self._retention_loop,
            args=(retention_check_seconds,),
            name="odradek-retention",
            daemon=True,
        )
        self._retention_thread.start()

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        with self._arrivals:
            self._generation += 1
            self._arrivals.notify_all()
        self.groups.close()
        with self._topics_lock:
            for topic in self._topics.values():
                topic.close()
            self._topics.clear()
        fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
        self._lock_file.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError("the engine is closed")

    def _open_topic(self, directory: str) -> Topic:
        with open(os.path.join(directory, "topic.json")) as handle:
            meta = json.load(handle)
        topic = Topic(
            meta["name"],
            directory,
            TopicConfig.from_json(meta["config"]),
            meta["created_at"],
            fsync=self.fsync,
        )
        topic.commit.on_durable(self._notify)
        return topic

    def _notify(self, _offset: int = 0) -> None:
        with self._arrivals:
            self._generation += 1
            self._arrivals.notify_all()
        self.groups.wake()

    def _topic(self, name: str) -> Topic:
        self._check_open()
        topic = self._topics.get(name)
        if topic is None:
            validate_topic_name(name, allow_reserved=True)
            raise TopicNotFound(f"topic {name!r} does not exist", name)
        if topic.commit.error is not None:
            topic = self._reopen(topic)
        return topic

    def _reopen(self, broken: Topic) -> Topic:
        """Recover a topic from disk after an fsync failure."""
        with self._topics_lock:
            current = self._topics.get(broken.name)
            if current is not broken:
                return current if current is not None else self._topic(broken.name)
            log.warning("topic %s: reopening after a storage failure", broken.name)
            broken.close()
            topic = self._open_topic(broken.directory)
            self._topics[broken.name] = topic
            return topic

    # -- administration ---------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        *,
        retention: object = "7d",
        retention_bytes: object = None,
        segment_bytes: object = None,
        segment_age: object = "7d",
        exist_ok: bool = False,
        schema: object = None,
    ) -> TopicInfo:
        self._check_open()
        validate_topic_name(name)
        if schema is not None:
            raise InvalidRequest("schemas on topics are not supported yet by this version")
        config = TopicConfig.build(retention, retention_bytes, segment_bytes, segment_age)
        with self._topics_lock:
            if name in self._topics:
                if exist_ok:
                    return self.describe_topic(name)
                raise TopicExists(f"topic {name!r} already exists", name)
            directory = os.path.join(self._topics_dir, name)
            staging = os.path.join(self._trash_dir, f"new-{uuid.uuid4().hex}")
            try:
                os.makedirs(staging)
                meta = {"name": name, "config": config.to_json(), "created_at": time.time(), "format": 1}
                write_json_atomically(os.path.join(staging, "topic.json"), meta)
                os.rename(staging, directory)
                fsync_directory(self._topics_dir)
            except OSError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                raise StorageError(f"could not create topic {name!r}: {exc}") from exc
            self._topics[name] = self._open_topic(directory)
        self._notify()
        return self.describe_topic(name)

    def delete_topic(self, name: str) -> None:
        self._check_open()
        with self._topics_lock:
            topic = self._topic(name)
            del self._topics[name]
            topic.close()
            doomed = os.path.join(self._trash_dir, f"deleted-{uuid.uuid4().hex}")
            os.rename(topic.directory, doomed)
            fsync_directory(self._topics_dir)
        shutil.rmtree(doomed, ignore_errors=True)
        self._notify()

    def list_topics(self, pattern: str | None = None) -> list[str]:
        self._check_open()
        names = sorted(self._topics)
        if pattern is None:
            return names
        matches = compile_pattern(_check_pattern(pattern))
        return [n for n in names if matches(n)]

    def describe_topic(self, name: str) -> TopicInfo:
        topic = self._topic(name)
        stats = topic.stats()
        return TopicInfo(
            name=name,
            first_offset=stats["first_offset"],
            next_offset=stats["next_offset"],
            records=stats["next_offset"] - stats["first_offset"],
            bytes=stats["bytes"],
            keys=stats["keys"],
            segments=stats["segments"],
            config=topic.config.to_json(),
            created_at=topic.created_at,
        )

    def alter_topic(self, name: str, **settings: object) -> TopicInfo:
        """Change retention/segment settings (create_topic's names); the others are kept."""
        with self._topics_lock:
            topic = self._topic(name)
            old = topic.config
            current = {
                "retention": old.retention_seconds,
                "retention_bytes": old.retention_bytes,
                "segment_bytes": old.segment_bytes,
                "segment_age": old.segment_seconds,
            }
            config = TopicConfig.build(**{**current, **settings})
            path = os.path.join(topic.directory, "topic.json")
            with open(path) as handle:
                meta = json.load(handle)
            write_json_atomically(path, {**meta, "config": config.to_json()})
            topic.config = topic.log.config = config
        return self.describe_topic(name)

    def topic_stats(self, name: str) -> dict[str, Any]:
        return self._topic(name).stats()

    # -- writing ----------------------------------------------------------------------

    def append(
        self,
        topic: str,
        records: Records,
        *,
        expect: Mapping[Any, int] | None = None,
        expect_offset: int | None = None,
        producer: object = None,
    ) -> AppendResult:
        return self.submit_append(
            topic, records, expect=expect, expect_offset=expect_offset, producer=producer
        ).wait()

    def submit_append(
        self,
        topic: str,
        records: Records,
        *,
        expect: Mapping[Any, int] | None = None,
        expect_offset: int | None = None,
        producer: object = None,
    ) -> PendingAppend:
        """Write an append now; ``.wait()`` on the result acknowledges it once durable.

        Refusals (bad input, failed expectations, sequence errors) raise here, with
        nothing written. A door streaming batches submits the next batch while the
        previous one's fsync is under way, so one stream shares fsyncs with itself.
        """
        target = self._topic(topic)
        batch = to_input_batch(records, self.append_bytes_max)
        return target.submit(batch, expect, expect_offset, producer)

    def append_many(
        self, topic: str, batches: Iterable[Records], *, window: int = limits.append_window_default
    ) -> list[AppendResult]:
        """Append several batches in order, each atomic on its own, pipelined: up to
        ``window`` appends are written ahead of the oldest one's acknowledgement.

        If one is refused, those before it are written and acknowledged and the error
        is raised after them; none after it is written.
        """
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise InvalidRequest(f"window must be an int >= 1, got {window!r}")
        results: list[AppendResult] = []
        pending: collections.deque[PendingAppend] = collections.deque()
        try:
            for records in batches:
                pending.append(self.submit_append(topic, records))
                if len(pending) > window:
                    results.append(pending.popleft().wait())
        finally:
            while pending:
                results.append(pending.popleft().wait())
        return results

    # -- reading ----------------------------------------------------------------------

    def key_version(self, topic: str, key: object) -> int:
        return self._topic(topic).key_version(normalize_key(key))

    def read_key(
        self, topic: str, key: object, from_version: int = 1, to_version: int | None = None
    ) -> pa.Table:
        if isinstance(from_version, bool) or not isinstance(from_version, int) or from_version < 1:
            raise InvalidRequest(f"from_version must be an int >= 1, got {from_version!r}")
        if to_version is not None and (isinstance(to_version, bool) or not isinstance(to_version, int)):
            raise InvalidRequest(f"to_version must be an int or None, got {to_version!r}")
        return self._topic(topic).read_key(normalize_key(key), from_version, to_version)

    def resolve_start(self, topic: str, start: Start) -> int:
        """The offset a read of ``topic`` starting at ``start`` begins at."""
        target = self._topic(topic)
        if start == "earliest" or start is None:
            return target.first_offset
        if start == "latest":
            return target.durable_offset
        if isinstance(start, bool):
            raise InvalidRequest(_START_RULES)
        if isinstance(start, int):
            target.check_start(start)
            return start
        if isinstance(start, datetime.datetime):
            return max(target.offset_for_time(timestamp_micros(start)), target.first_offset)
        if isinstance(start, str):
            try:
                parsed = datetime.datetime.fromisoformat(start)
            except ValueError:
                raise InvalidRequest(_START_RULES) from None
            return self.resolve_start(topic, parsed)
        raise InvalidRequest(_START_RULES)

    def fetch(
        self,
        topic: str,
        offset: int,
        *,
        max_records: int = limits.read_records_max_default,
        max_bytes: int = limits.read_bytes_max_default,
    ) -> list[pa.RecordBatch]:
        """One read of ``topic`` from ``offset``, without waiting."""
        _check_limits(max_records, max_bytes)
        return self._topic(topic).fetch(offset, max_records, max_bytes)

    def read(
        self,
        pattern: str,
        *,
        start: Start = "earliest",
        wait: float = 1.0,
        follow: bool = False,
        max_records: int | None = None,
        max_bytes: int | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Yield batches of ``pattern``'s topics from ``start`` on.

        Ends once caught up and ``wait`` seconds pass with nothing new; with ``follow``
        it never ends. A wildcard pattern adds a ``topic`` column and picks up matching
        topics created while reading (from their earliest offset). ``stop``, checked at
        least once a second while waiting, ends the read early when it returns True
        (a server passes "the client went away").
        """
        self._check_open()
        wildcard = is_pattern(_check_pattern(pattern))
        matches = compile_pattern(pattern)  # validates the pattern
        if not wildcard:
            self._topic(pattern)
        wait = _check_wait(wait)
        per_batch = max_records if max_records is not None else limits.read_records_max_default
        per_bytes = max_bytes if max_bytes is not None else limits.read_bytes_max_default
        _check_limits(per_batch, per_bytes)
        positions: dict[str, int] = {}
        for name in self.list_topics(pattern) if wildcard else [pattern]:
            positions[name] = self.resolve_start(name, start)
        return self._read_loop(
            pattern, wildcard, matches, positions, wait, follow, per_batch, per_bytes, stop
        )

    def _read_loop(
        self,
        pattern: str,
        wildcard: bool,
        matches: Any,
        positions: dict[str, int],
        wait: float,
        follow: bool,
        per_batch: int,
        per_bytes: int,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        idle_since = time.monotonic()
        while not self.closed and not (stop is not None and stop()):
            generation = self._generation
            if wildcard:
                current = set(self.list_topics(pattern))
                for name in current - positions.keys():
                    positions[name] = self._topics[name].first_offset if name in self._topics else 0
                for name in positions.keys() - current:
                    del positions[name]
            progressed = False
            for name in sorted(positions):
                topic = self._topics.get(name)
                if topic is None:
                    if not wildcard:
                        raise TopicNotFound(f"topic {name!r} was deleted", name)
                    continue
                if positions[name] >= topic.durable_offset:
                    continue
                for batch in topic.fetch(positions[name], per_batch, per_bytes):
                    positions[name] += batch.num_rows
                    progressed = True
                    if wildcard:
                        batch = batch.append_column(
                            "topic", pc.fill_null(pa.nulls(batch.num_rows, pa.utf8()), name)
                        )
                    yield batch
            if progressed:
                idle_since = time.monotonic()
                continue
            remaining = (idle_since + wait) - time.monotonic()
            if not follow and remaining <= 0:
                return
            with self._arrivals:
                if self._generation == generation:
                    self._arrivals.wait(timeout=1.0 if follow else min(remaining, 1.0))

    # -- upkeep -----------------------------------------------------------------------

    def enforce_retention(self, now: float | None = None) -> int:
        removed = 0
        for topic in list(self._topics.values()):
            removed += topic.enforce_retention(now)
        return removed

    def _retention_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.enforce_retention()
            except OdradekError as exc:
                log.warning("retention check failed: %s", exc)
            except Exception:
                log.exception("retention check failed")


_START_RULES = "start must be 'earliest', 'latest', an offset (int >= 0), a datetime or an ISO-8601 timestamp"


def _check_pattern(pattern: object) -> str:
    if not isinstance(pattern, str):
        raise InvalidRequest(f"a topic name or pattern must be a string, got {type(pattern).__name__}")
    return pattern


def _check_limits(max_records: object, max_bytes: object) -> None:
    for limit in (max_records, max_bytes):
        if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1:
            raise InvalidRequest(f"max_records and max_bytes must be ints >= 1, got {limit!r}")


def _check_wait(wait: object) -> float:
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not wait >= 0:  # NaN too
        raise InvalidRequest(f"wait must be a number of seconds >= 0, got {wait!r}")
    if wait > limits.wait_seconds_max:
        raise InvalidRequest(f"wait is at most {limits.wait_seconds_max} seconds, got {wait}")
    return float(wait)
