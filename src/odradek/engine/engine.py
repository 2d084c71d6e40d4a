"""The engine: the one place where Odradek's semantics live.

Every door (embedded client, Arrow Flight, Kafka, CLI) is a thin adapter over the
methods of :class:`Engine`. A data directory holds::

    LOCK                      flock'd by the process that owns the directory
    topics/<name>/topic.json  name, config, creation time (atomically replaced)
    topics/<name>/*.log       segments (see segment.py), *.index sidecars
    topics/<name>/keys/       key index runs (see keyindex.py)
    topics/<name>/producers/  producer state snapshots (see producers.py)
    schemas/ids.json          global schema ids (see schemas/ids.py)

Threading: topic creation and deletion hold ``_topics_lock``; everything else goes to
the topic, whose own rules are in topic.py. Readers waiting for new data (long-poll)
sleep on ``_arrivals``, which is notified whenever a topic's durable offset moves or a
topic is created. Whatever else waits for the log to change (consumer groups, the
Kafka door) registers a listener with :meth:`Engine.on_arrival`, called once the
change's locks are released (arrivals.py): the engine owns none of its clients.
"""

from __future__ import annotations

import collections
import datetime
import fcntl
import functools
import logging
import numbers
import os
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from odradek import api, defaults, limits
from odradek.config import ALTERABLE_SETTINGS, TopicConfig
from odradek.engine.arrivals import (
    CHANGED,
    CLOSING,
    CREATED,
    DELETED,
    DURABLE,
    Arrival,
    ArrivalListener,
    ArrivalListeners,
)
from odradek.engine.attachment import StoreAttachment, attach_engine
from odradek.engine.compaction import (
    CompactionLag,
    CompactionResult,
    CompactionStopped,
    Throttle,
    lag_summary,
)
from odradek.engine.frames import StoredFrame, walk
from odradek.engine.producers import RangeProducer
from odradek.engine.reducers import reduce_round, resolve_reducer
from odradek.engine.tenant_storage import TenantStorage
from odradek.engine.topic import PendingAppend, Topic, normalize_key
from odradek.engine.topic_schema import SchemaVersion, TopicSchema
from odradek.engine.topicfiles import (
    META_NAME,
    incarnation_of,
    meta_document,
    new_incarnation,
    save_topic_meta,
)
from odradek.engine.verify import Progress, verify_topic
from odradek.errors import (
    ClosedError,
    DataDamaged,
    Fenced,
    IncompatibleSchema,
    InvalidRequest,
    NotOwner,
    OdradekError,
    StorageError,
    TopicExists,
    TopicNotFound,
    Unavailable,
)
from odradek.names import compile_pattern, is_pattern, validate_topic_name
from odradek.records import STORED_SCHEMA, Records, timestamp_micros, to_input_batch
from odradek.schemas import compat, compile_schema
from odradek.schemas.compat import validate_mode
from odradek.schemas.ids import SchemaIds
from odradek.storage import handoff
from odradek.storage.agent import StoreSettings
from odradek.storage.disk import LOCAL, Disk, describe_os_error, remove_leftovers
from odradek.storage.handles import HandleCache, raise_open_files_limit
from odradek.storage.handoff import Handoff
from odradek.storage.objects import ObjectStore
from odradek.types import AppendResult, SchemaInfo, TopicInfo

log = logging.getLogger(__name__)

Start = api.Start  # "earliest" | "latest" | int offset | datetime | ISO-8601 text


class Engine:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool = True,
        append_bytes_max: int = limits.append_bytes_max_default,
        retention_check_seconds: float = 60.0,
        disk: Disk = LOCAL,
        topics_max: int = limits.topics_max_default,
        store: str | ObjectStore | None = None,
        store_settings: StoreSettings | None = None,
        schema_id_base: int = 0,
    ) -> None:
        """Open (creating if needed) the data directory ``path``.

        With ``store`` (a URL such as ``s3://bucket/prefix`` or an ObjectStore) the
        directory is only a cache: the engine attaches to the store (claims it, fencing
        any older agent, and rebuilds the directory from it) and an append is
        acknowledged once the store holds it (engine/attachment.py, decision 0011).
        ``store_settings`` tunes the journal (flush window and size, timeouts).
        ``schema_id_base`` is where the schema ids this engine hands out start
        (schemas/ids.py: a cluster's cells each have a range of their own).
        """
        if type(append_bytes_max) is not int or append_bytes_max < 1:
            raise InvalidRequest(f"append_bytes_max must be an int >= 1, got {append_bytes_max!r}")
        if type(retention_check_seconds) not in (int, float) or not retention_check_seconds > 0:  # NaN too
            raise InvalidRequest(f"retention_check_seconds must be > 0, got {retention_check_seconds!r}")
        if type(topics_max) is not int or topics_max < 1:
            raise InvalidRequest(f"topics_max must be an int >= 1, got {topics_max!r}")
        if store is not None and disk is not LOCAL:
            raise InvalidRequest("give an engine either a disk or a store, not both")
        if store is not None and not fsync:
            raise InvalidRequest(
                "fsync=False cannot be used with a store: an append is acknowledged once the store holds it"
            )
        if store is None and store_settings is not None:
            raise InvalidRequest("store_settings are the settings of a store: give the store too")
        self.path = os.path.abspath(os.fspath(path))
        self.store: StoreAttachment | None = None
        if store is not None:
            # The local LOCK first (a second engine on this directory must not empty it),
            # then the store; the engine then opens the rebuilt tree on the store's disk.
            self._lock_fd = self._lock_directory(LOCAL, topics=False)
            try:
                self.store = attach_engine(self.path, self._lock_fd, store, store_settings)
            except BaseException:
                self._unlock()
                raise
            disk = self.store.disk
            try:
                self._open_tree(
                    disk, fsync, append_bytes_max, retention_check_seconds, topics_max, schema_id_base
                )
            except BaseException:
                self.store.detach()
                self._unlock()
                raise
            return
        self._lock_fd = self._lock_directory(disk, topics=True)
        self._open_tree(disk, fsync, append_bytes_max, retention_check_seconds, topics_max, schema_id_base)

    def _lock_directory(self, disk: Disk, *, topics: bool) -> int:
        """Take the data directory's LOCK (flock); return its descriptor."""
        try:
            if topics:
                disk.makedirs(os.path.join(self.path, "topics"))
                disk.makedirs(os.path.join(self.path, "trash"))
            else:
                disk.makedirs(self.path)
            lock_fd = disk.open(os.path.join(self.path, "LOCK"), os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise StorageError(f"cannot use data directory {self.path}: {describe_os_error(exc)}") from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            disk.close(lock_fd)
            raise StorageError(f"data directory {self.path} is in use by another Odradek process") from exc
        self._lock_disk = disk
        return lock_fd

    def _open_tree(
        self,
        disk: Disk,
        fsync: bool,
        append_bytes_max: int,
        retention_check_seconds: float,
        topics_max: int,
        schema_id_base: int,
    ) -> None:
        """Open the locked data directory on ``disk``: schemas, topics, retention."""
        self.fsync = fsync
        self.disk = disk
        self.topics_max = topics_max
        raise_open_files_limit()
        # Every file the engine writes draws its descriptor from this bounded set.
        self.handles = HandleCache(disk)
        self.append_bytes_max = append_bytes_max
        self._topics_dir = os.path.join(self.path, "topics")
        self._trash_dir = os.path.join(self.path, "trash")
        if self.store is not None:  # the tree was rebuilt from the store: journal these
            try:
                disk.makedirs(self._topics_dir)
                disk.makedirs(self._trash_dir)
            except OSError as exc:
                reason = describe_os_error(exc)
                raise StorageError(f"cannot use data directory {self.path}: {reason}") from exc
        try:
            self.schema_ids = SchemaIds(
                os.path.join(self.path, "schemas"), disk, fsync=fsync, base=schema_id_base
            )
        except BaseException:
            if self.store is None:
                self._unlock()
            raise
        self._topics_lock = threading.RLock()
        self._topics: dict[str, Topic] = {}
        # Topics whose directory exists but that cannot be opened: name -> why.
        self._unavailable: dict[str, str] = {}
        #: Tenants' stored bytes and their storage_bytes quota (engine/tenant_storage.py).
        self.tenant_storage = TenantStorage(self._topic_sizes)
        self._arrivals = threading.Condition()
        self._generation = 0
        self._listeners = ArrivalListeners()
        self.closed = False
        disk.rmtree(self._trash_dir)
        disk.makedirs(self._trash_dir)
        leftovers = sum(
            remove_leftovers(disk, os.path.join(self.path, *part))
            for part in [(), ("schemas",), ("groups",), ("kafka",), ("kafka", "groups"), ("registry",)]
        )
        #: Topics released to the store (Engine.release_topic), waiting for an adopter.
        self._released: dict[str, Handoff] = self._resolve_handoffs() if self.store is not None else {}
        for name in sorted(disk.listdir(self._topics_dir)):
            directory = os.path.join(self._topics_dir, name)
            if not disk.isdir(directory):
                continue
            self._reinstate(name, directory)  # unavailable, with why, if it cannot open
        leftovers += sum(topic.leftovers_removed for topic in self._topics.values())
        if leftovers:
            log.info("removed %d temporary file(s) left by an earlier crash", leftovers)
        self._stop = threading.Event()
        self._retention_thread = threading.Thread(
            target=self._retention_loop,
            args=(retention_check_seconds,),
            name="odradek-retention",
            daemon=True,
        )
        self._retention_thread.start()
        self._compaction_thread = threading.Thread(
            target=self._compaction_loop,
            args=(min(retention_check_seconds, limits.compaction_check_seconds),),
            name="odradek-compaction",
            daemon=True,
        )
        self._compaction_thread.start()
        self._reducer_thread = threading.Thread(
            target=self._reducer_loop,
            args=(min(retention_check_seconds, limits.reducer_check_seconds),),
            name="odradek-reducers",
            daemon=True,
        )
        self._reducer_thread.start()

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        if self._compaction_thread is not threading.current_thread():
            self._compaction_thread.join()  # a round stops at its next read or write
        if self._reducer_thread is not threading.current_thread():
            self._reducer_thread.join(limits.reducer_close_seconds_max)  # it stops before its next key
        with self._arrivals:
            self._generation += 1
            self._arrivals.notify_all()
        self._listeners.fire(Arrival(CLOSING))  # what serves the engine stops using it
        with self._topics_lock:
            for topic in self._topics.values():
                self._close_topic(topic)
            self._topics.clear()
        if self.store is not None:
            self.store.detach()  # commits the journal; a failure is logged
        self._unlock()

    def _close_topic(self, topic: Topic) -> None:
        """Close ``topic``; on a store, a failure to journal its last changes (a fenced
        agent, a store that is down) is logged and the engine closes the others."""
        if self.store is None:
            topic.close()
            return
        try:
            topic.close()
        except StorageError as exc:
            log.warning("topic %s: closed without journaling its last changes: %s", topic.name, exc.message)

    def _unlock(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self._lock_disk.close(self._lock_fd)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError("the engine is closed")

    def _topic_sizes(self) -> Iterator[tuple[str, int]]:
        """Each open topic's name and stored bytes (its segments' sizes, held in memory)."""
        for name, topic in list(self._topics.items()):
            yield name, topic.log.size_bytes

    def _open_topic(self, directory: str) -> Topic:
        """Open (recover) the topic in ``directory``; raises StorageError saying which
        file is missing or damaged."""
        name = os.path.basename(directory)
        try:
            meta = meta_document(self.disk, directory).load()
        except OSError as exc:
            raise StorageError(f"cannot read the metadata of topic {name}: {describe_os_error(exc)}") from exc
        if meta is None:
            raise DataDamaged(
                f"the metadata file {os.path.join(directory, META_NAME)} of topic {name} is missing "
                f"(and so is its copy); restore it from a backup to serve the topic again"
            )
        try:
            if meta["name"] != name:
                raise ValueError(f"it names topic {meta['name']!r}, not {name!r}")
            schema = TopicSchema.from_json(meta["schema"]) if "schema" in meta else None
            config = TopicConfig.from_json(meta["config"])
            created_at = float(meta["created_at"])
            incarnation = incarnation_of(meta)
            accepted = [(int(a), int(b)) for a, b in meta.get("accepted_damage", [])]
            log_start = int(meta.get("log_start", 0))
        except (KeyError, TypeError, ValueError, OdradekError) as exc:
            raise DataDamaged(
                f"the metadata file {os.path.join(directory, META_NAME)} of topic {name} is not valid: {exc}"
            ) from exc
        try:
            topic = Topic(
                meta["name"],
                directory,
                config,
                created_at,
                incarnation=incarnation,
                fsync=self.fsync,
                schema=schema,
                disk=self.disk,
                accepted_damage=accepted,
                handles=self.handles,
                log_start=log_start,
            )
        except OSError as exc:
            raise StorageError(f"cannot open topic {name}: {describe_os_error(exc)}") from exc
        topic.commit.on_durable(functools.partial(self._durable, name))
        return topic

    def on_arrival(self, listener: ArrivalListener) -> Callable[[], None]:
        """Call ``listener`` with an :class:`~odradek.engine.arrivals.Arrival` after every
        change a reader may wait for (records durable, a topic created, deleted or
        changed) and once when the engine closes; always after the change's locks are
        released. Returns the function that removes the listener."""
        return self._listeners.add(listener)

    def _durable(self, topic: str, offset: int) -> None:
        if topic in self._topics:
            self._notify(Arrival(DURABLE, topic, offset))
        else:  # closing under its locks (deleted): readers wake, DELETED tells listeners
            with self._arrivals:
                self._generation += 1
                self._arrivals.notify_all()

    def _notify(self, arrival: Arrival) -> None:
        with self._arrivals:
            self._generation += 1
            self._arrivals.notify_all()
        if not self.closed:
            self._listeners.fire(arrival)

    def _topic(self, name: str) -> Topic:
        self._check_open()
        topic = self._topics.get(name)
        if topic is None:
            if name in self._released:
                raise NotOwner(f"topic {name!r} is released: it is served again once an agent adopts it")
            reason = self._unavailable.get(name)
            if reason is not None:
                raise DataDamaged(f"topic {name} is unavailable: {reason}")
            validate_topic_name(name, allow_reserved=True)
            raise TopicNotFound(f"topic {name!r} does not exist", name)
        if topic.commit.error is not None and (self.store is None or self.store.may_reopen(topic)):
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
            try:
                topic = self._open_topic(broken.directory)
            except StorageError as exc:
                del self._topics[broken.name]
                self._unavailable[broken.name] = exc.message
                log.error("topic %s is unavailable: %s", broken.name, exc.message)
                raise
            self._topics[broken.name] = topic
            return topic

    # -- administration ---------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        *,
        retention: api.Duration = defaults.retention,
        retention_bytes: api.Size = defaults.retention_bytes,
        segment_bytes: api.Size = defaults.segment_bytes,
        segment_age: api.Duration = defaults.segment_age,
        cleanup: str = defaults.cleanup,
        delete_retention: api.Duration = defaults.delete_retention,
        min_compaction_lag: api.Duration = defaults.min_compaction_lag,
        min_cleanable_dirty_ratio: float = defaults.min_cleanable_dirty_ratio,
        exist_ok: bool = False,
        schema: api.Schema | None = None,
        compatibility: str = defaults.compatibility,
        reducer: str | None = None,
        snapshot_every: int = defaults.snapshot_every,
    ) -> TopicInfo:
        """Create a topic (see :meth:`odradek.api.Client.create_topic`)."""
        self._check_open()
        validate_topic_name(name)
        config = TopicConfig.build(
            retention,
            retention_bytes,
            segment_bytes,
            segment_age,
            cleanup,
            delete_retention,
            min_compaction_lag,
            min_cleanable_dirty_ratio,
            reducer,
            snapshot_every,
        )
        mode = validate_mode(compatibility)
        compiled = compile_schema(schema) if schema is not None else None
        if config.reducer is not None:
            resolve_reducer(config.reducer)  # refused now if this server cannot load it
        with self._topics_lock:
            if name in self._topics:
                if exist_ok:
                    return self.describe_topic(name)
                raise TopicExists(f"topic {name!r} already exists", name)
            if name in self._released:
                raise TopicExists(f"topic {name!r} exists, released to the store: adopt it instead", name)
            if name in self._unavailable:
                raise TopicExists(
                    f"topic {name!r} exists but is unavailable ({self._unavailable[name]}); "
                    "delete it first to create it anew",
                    name,
                )
            if len(self._topics) + len(self._unavailable) >= self.topics_max:
                raise InvalidRequest(
                    f"this server holds {self.topics_max} topics, its limit (topics_max); delete "
                    "topics or raise the limit (odradek serve --topics-max)"
                )
            directory = os.path.join(self._topics_dir, name)
            staging = os.path.join(self._trash_dir, f"new-{uuid.uuid4().hex}")
            disk = self.disk
            try:
                disk.makedirs(staging)
                meta = {
                    "name": name,
                    "incarnation": new_incarnation(),
                    "config": config.to_json(),
                    "created_at": time.time(),
                    "format": 1,
                }
                if compiled is not None:
                    schema_id = self.schema_ids.id_for(compiled.kind, compiled.text)
                    version = SchemaVersion(1, schema_id, compiled.kind, compiled.text, 0)
                    meta["schema"] = TopicSchema([version], mode).to_json()
                save_topic_meta(disk, staging, meta, sync=self.fsync)
                if self.fsync:
                    disk.fsync_directory(staging)  # its files' names, before it moves
                disk.rename(staging, directory)
                if self.fsync:
                    disk.fsync_directory(self._topics_dir)
            except OSError as exc:
                disk.rmtree(staging)
                raise StorageError(f"could not create topic {name!r}: {describe_os_error(exc)}") from exc
            self._topics[name] = self._open_topic(directory)
        self._notify(Arrival(CREATED, name))
        return self.describe_topic(name)

    def delete_topic(self, name: str) -> None:
        """Delete a topic and its records (an unavailable one too)."""
        self._check_open()
        with self._topics_lock:
            released = self._released.get(name)
            if released is not None:
                assert self.store is not None
                self.store.discard(released)
                del self._released[name]
        if released is not None:
            self._notify(Arrival(DELETED, name))
            return
        with self._topics_lock:
            if name in self._unavailable:
                directory = os.path.join(self._topics_dir, name)
                del self._unavailable[name]
            else:
                topic = self._topic(name)
                del self._topics[name]
                topic.close()
                directory = topic.directory
            doomed = os.path.join(self._trash_dir, f"deleted-{uuid.uuid4().hex}")
            try:
                self.disk.rename(directory, doomed)
                if self.fsync:
                    self.disk.fsync_directory(self._topics_dir)
            except OSError as exc:
                raise StorageError(f"could not delete topic {name!r}: {describe_os_error(exc)}") from exc
        self.disk.rmtree(doomed)
        self.tenant_storage.stale()
        self._notify(Arrival(DELETED, name))

    # -- handing topics over (storage/handoff.py, decision 0030) -----------------------------

    def release_topic(self, name: str) -> None:
        """Let go of topic ``name``, leaving it in the object store for an adopter (this
        engine, a later one on the same store, or another cell's engine on the same
        backend): see :meth:`release_topics`."""
        self.release_topics([name])

    def release_topics(self, names: Iterable[str]) -> None:
        """Let go of topics, leaving them in the object store for adopters (this engine,
        a later one on the same store, or another cell's engine on the same backend):
        they are closed (appends under way are acknowledged or fail), one checkpoint
        names their files, a handoff is written for each, their local files are dropped,
        and a second checkpoint is taken before the handoffs are marked ready
        (storage/handoff.py). Until one is adopted, calls on it fail with ``NotOwner``
        (retryable) and it is not listed.

        On a failure the topics whose handoff was not written stay here, served as
        before; one whose handoff's write had an unknown outcome that could not be
        checked is unavailable until the next start resolves it (serving it could
        acknowledge appends that a landed handoff would then drop)."""
        store = self._store_for("release a topic")
        wanted = list(dict.fromkeys(names))
        with self._topics_lock:
            for name in wanted:
                if name in self._unavailable:
                    raise DataDamaged(
                        f"topic {name} is unavailable ({self._unavailable[name]}): it cannot be released"
                    )
            topics = [self._topic(name) for name in wanted]
            for topic in topics:
                del self._topics[topic.name]
                topic.close()
            failed = [topic.name for topic in topics if topic.commit.error is not None]
            try:
                if failed:
                    raise StorageError(
                        f"topic {failed[0]!r} could not be closed for good: its last fsync failed"
                    )
                written, unknown, failure = store.release([(t.name, t.incarnation) for t in topics])
            except BaseException:
                for topic in topics:
                    self._reinstate(topic.name, topic.directory)  # they stay here
                raise
            released = {one.topic for one in written}
            for topic in topics:
                if topic.name in unknown:
                    self._unavailable[topic.name] = (
                        "its release's outcome is unknown; the next start resolves it"
                    )
                elif topic.name not in released:
                    self._reinstate(topic.name, topic.directory)
            for one in written:
                self._released[one.topic] = one
                self._drop_local_copy(os.path.join(self._topics_dir, one.topic))
            try:
                for one in store.ready(written):
                    self._released[one.topic] = one
            except StorageError as exc:
                failure = failure or StorageError(
                    f"topics {sorted(released)} are released but their handoffs could not be marked ready "
                    f"({exc.message}); the next start marks them"
                )
        self.tenant_storage.stale()
        for one in written:
            self._notify(Arrival(CHANGED, one.topic))
        if failure is not None:
            raise failure

    def adopt_topic(self, name: str, *, source: ObjectStore | None = None) -> TopicInfo:
        """Take up topic ``name``, released to the object store by this cell or, with
        ``source``, by the cell of that store: see :meth:`adopt_topics`."""
        self.adopt_topics([name], source=source)
        return self.describe_topic(name)

    def adopt_topics(self, names: Iterable[str], *, source: ObjectStore | None = None) -> None:
        """Take up topics released to the object store by this cell or, with ``source``,
        by the cell of that store (one on the same backend, decision 0031): their files
        enter the data directory as files still in the store (fetched when first read),
        one checkpoint names them all, and they are served. Raises TopicNotFound if no
        released topic has one of the names there, Unavailable while a release is not
        complete or another engine is adopting one; then none is adopted."""
        store = self._store_for("adopt a topic")
        origin = store.source(source)
        wanted = list(dict.fromkeys(names))
        with self._topics_lock:
            self._check_open()
            waiting = handoff.list_handoffs(origin)
            chosen: list[Handoff] = []
            for name in wanted:
                released = waiting.get(name)
                if released is None or released.adopted_by is not None:
                    validate_topic_name(name, allow_reserved=True)
                    raise TopicNotFound(f"no released topic {name!r} is waiting in {origin.url}", name)
                if not released.ready:
                    raise Unavailable(
                        f"topic {name!r}: its release is not complete yet (its handoff is not ready)"
                    )
                if name in self._topics or name in self._unavailable:
                    raise TopicExists(f"topic {name!r} is served here already", name)
                chosen.append(released)
            if len(self._topics) + len(self._unavailable) + len(chosen) > self.topics_max:
                raise InvalidRequest(
                    f"this server holds {len(self._topics) + len(self._unavailable)} topics and its limit "
                    f"is {self.topics_max} (topics_max): it cannot adopt {len(chosen)} more"
                )
            store.adopt(chosen, origin)
            broken = []
            for released in chosen:
                if origin is store.store:
                    self._released.pop(released.topic, None)
                self._reinstate(released.topic, os.path.join(self._topics_dir, released.topic))
                if released.topic in self._unavailable:
                    broken.append(released.topic)
        self.tenant_storage.stale()
        for released in chosen:
            self._notify(Arrival(CHANGED, released.topic))
        if broken:
            reasons = "; ".join(f"{name}: {self._unavailable.get(name, '?')}" for name in broken)
            raise DataDamaged(f"adopted, but unavailable: {reasons}")

    def released_topics(self) -> list[str]:
        """The topics this cell released that no engine adopted yet (asked of the store:
        another cell may have adopted one)."""
        store = self._store_for("list released topics")
        return sorted(name for name, found in store.handoffs().items() if found.adopted_by is None)

    def _store_for(self, what: str) -> StoreAttachment:
        self._check_open()
        if self.store is None:
            raise InvalidRequest(f"only an engine on an object store can {what} (give it a store)")
        if self.store.fenced:
            raise Fenced(f"cannot {what}: another agent took over the store {self.store.url}")
        return self.store

    def _resolve_handoffs(self) -> dict[str, Handoff]:
        """Finish or undo the releases and adoptions a stop cut short (see
        storage/handoff.py); the topics this cell released, by name."""
        store = self.store
        assert store is not None
        markers = os.path.join(self.path, handoff.ADOPTIONS)
        if self.disk.isdir(markers):
            for name in sorted(self.disk.listdir(markers)):
                store.resolve_marker(name, self.disk.isdir(os.path.join(self._topics_dir, name)))
        released: dict[str, Handoff] = {}
        pending: list[Handoff] = []
        for name, found in store.handoffs().items():
            directory = os.path.join(self._topics_dir, name)
            here = self.disk.isdir(directory)
            if found.adopted_by is not None:
                if found.adopted_by == store.cell:
                    store.remove_handoff(found)  # adopted here: a manifest names its files
                elif here:
                    log.error("topic %s: adopted by %s, dropping the copy left here", name, found.adopted_by)
                    self._drop_local_copy(directory)
                continue
            if here:
                if found.ready:
                    log.error("topic %s: released and ready, dropping the copy left here", name)
                else:
                    log.warning("topic %s: its release was cut short; finishing it", name)
                self._drop_local_copy(directory)
            if found.ready:
                released[name] = found
            else:
                pending.append(found)
        for found in store.ready(pending) if pending else []:  # one checkpoint for them all
            released[found.topic] = found
        return released

    def _reinstate(self, name: str, directory: str) -> None:
        """Open a topic (at start, after a failed release, once adopted); if it cannot
        be opened it is unavailable, with why."""
        try:
            self._topics[name] = self._open_topic(directory)
        except (OdradekError, OSError) as exc:
            reason = exc.message if isinstance(exc, OdradekError) else describe_os_error(exc)
            log.error("topic %s is unavailable: %s", name, reason)
            self._unavailable[name] = reason

    def _drop_local_copy(self, directory: str) -> None:
        """Remove a released topic's directory (journaled, as a deletion is: its file
        objects stay, named by its handoff)."""
        doomed = os.path.join(self._trash_dir, f"released-{uuid.uuid4().hex}")
        try:
            self.disk.rename(directory, doomed)
        except OSError as exc:
            raise StorageError(
                f"could not drop the local copy of {directory}: {describe_os_error(exc)}"
            ) from exc
        self.disk.rmtree(doomed)

    def unavailable_topics(self) -> dict[str, str]:
        """Topics whose files exist but cannot be opened, and why (see the log too)."""
        return dict(self._unavailable)

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
        damaged = tuple({**d.to_json(), "accepted": topic.is_accepted(d)} for d in topic.damages)
        status = "read-only" if topic.write_blockers() else "damaged" if damaged else "ok"
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
            incarnation=topic.incarnation,
            schema=None
            if topic.schema is None
            else {
                "version": topic.schema.latest.version,
                "id": topic.schema.latest.schema_id,
                "kind": topic.schema.latest.kind,
                "compatibility": topic.schema.compatibility,
            },
            damaged=damaged,
            status=status,
            snapshots=topic.snapshots.describe(),
        )

    def alter_topic(self, name: str, **settings: api.Duration | api.Size) -> TopicInfo:
        """Change retention, segment and cleanup settings (create_topic's names); the
        others are kept. An unknown name or a bad value changes nothing."""
        unknown = sorted(set(settings) - set(ALTERABLE_SETTINGS))
        if unknown:
            raise InvalidRequest(
                f"alter_topic cannot change {', '.join(map(repr, unknown))}; it changes "
                + ", ".join(ALTERABLE_SETTINGS)
            )
        with self._topics_lock:
            topic = self._topic(name)
            config = TopicConfig.build(**{**topic.config.settings(), **settings})
            previous = topic.config
            topic.config = config
            try:
                topic.save_meta()
            except OSError as exc:
                topic.config = previous
                raise StorageError(f"could not save the settings of topic {name!r}: {exc}") from exc
            topic.log.config = config
        return self.describe_topic(name)

    def topic_stats(self, name: str) -> dict[str, Any]:
        return self._topic(name).stats()

    # -- integrity --------------------------------------------------------------------

    def verify_topic(self, name: str, progress: Progress | None = None) -> dict[str, Any]:
        """Check every frame and derived file of a topic against its checksums (online).

        Returns ``{topic, segments, frames, bytes, damaged: [...], problems: [...], ok}``:
        ``damaged`` are offset ranges whose records are lost or unreadable (each with
        ``accepted`` once an operator ran repair), ``problems`` derived files that the
        engine rebuilds from the log at the next open. ``progress(done, total)`` is
        called with bytes checked after each segment.
        """
        return verify_topic(self._topic(name), progress).to_json()

    def repair_topic(self, name: str, *, drop_range: api.DropRange) -> TopicInfo:
        """Accept the loss of damaged offsets: ``drop_range`` is ``(first, last)``
        (inclusive) or a list of them, covering damaged offsets only (intact records in
        a range are refused). Reads already skip damaged offsets; accepting them lets a
        topic that refuses appends (its key versions were rebuilt across the damage)
        take appends again, with offsets after everything it ever acknowledged.
        """
        topic = self._topic(name)
        for first, last in _drop_ranges(drop_range):
            covered = topic.accept_damage(first, last + 1)
            for damage in covered:
                log.warning("topic %s: an operator accepted the loss of %s", name, damage.describe(name))
        self._notify(Arrival(CHANGED, name))
        return self.describe_topic(name)

    def delete_records(self, name: str, before: int) -> int:
        """Delete the records of ``name`` below offset ``before`` (Kafka's DeleteRecords):
        the topic's first offset moves there for every reader, durably. Returns the
        first offset now (``before``, or the start already past it). Raises
        OffsetOutOfRange if ``before`` is past the topic's durable end."""
        if isinstance(before, bool) or not isinstance(before, int) or before < 0:
            raise InvalidRequest(f"before must be an offset (int >= 0), got {before!r}")
        topic = self._topic(name)
        first = topic.first_offset
        start = topic.delete_records(before)
        self.tenant_storage.stale()
        if start != first:
            self._notify(Arrival(CHANGED, name))
        return start

    # -- schemas ----------------------------------------------------------------------

    def set_schema(self, topic: str, schema: api.Schema, *, compatibility: str | None = None) -> SchemaInfo:
        """Add a version to ``topic``'s schema (or give an empty topic its first one).

        The new version must be compatible with the current one (with every version for
        ``*_transitive`` modes) under ``compatibility``, which becomes the topic's mode;
        None keeps the topic's mode. The same schema as the newest version adds nothing.
        Raises IncompatibleSchema (with each problem), InvalidSchema, TopicNotFound.
        """
        target = self._topic(topic)
        mode = validate_mode(compatibility) if compatibility is not None else None
        compiled = compile_schema(schema)

        def change(current: TopicSchema | None, next_offset: int) -> TopicSchema:
            if current is None:
                if next_offset > target.first_offset:
                    raise InvalidRequest(
                        f"topic {topic} holds records without a schema; a schema can be given to a "
                        "topic when it is created or while it holds no records"
                    )
                schema_id = self.schema_ids.id_for(compiled.kind, compiled.text)
                version = SchemaVersion(1, schema_id, compiled.kind, compiled.text, next_offset)
                return TopicSchema([version], mode or defaults.compatibility)
            effective = mode or current.compatibility
            if (compiled.kind, compiled.text) == (current.latest.kind, current.latest.text):
                return (
                    current if effective == current.compatibility else current.with_compatibility(effective)
                )
            _refuse_incompatible(topic, current, compiled.value_type, effective)
            schema_id = self.schema_ids.id_for(compiled.kind, compiled.text)
            changed = current.with_version(compiled, schema_id, next_offset)
            return changed if effective == current.compatibility else changed.with_compatibility(effective)

        result = target.change_schema(change)
        assert result is not None
        self._notify(Arrival(CHANGED, topic))
        return _schema_info(topic, result, result.latest.version)

    def check_schema(self, topic: str, schema: api.Schema, *, compatibility: str | None = None) -> list[str]:
        """The problems :meth:`set_schema` would refuse ``schema`` with; [] if none."""
        target = self._topic(topic)
        compiled = compile_schema(schema)
        current = target.schema
        if current is None:
            return []
        mode = validate_mode(compatibility) if compatibility is not None else current.compatibility
        return compat.check(current.history(), compiled.value_type, mode)

    def set_compatibility(self, topic: str, compatibility: str) -> None:
        target = self._topic(topic)
        mode = validate_mode(compatibility)

        def change(current: TopicSchema | None, next_offset: int) -> TopicSchema:
            if current is None:
                raise InvalidRequest(f"topic {topic} has no schema; give it one with set_schema first")
            return current if current.compatibility == mode else current.with_compatibility(mode)

        target.change_schema(change)

    def get_schema(self, topic: str, version: int | None = None) -> SchemaInfo | None:
        """The newest (or the given) version of ``topic``'s schema; None if it has none."""
        schema = self._topic(topic).schema
        if schema is None:
            if version is not None:
                raise InvalidRequest(f"topic {topic} has no schema, so no version {version}")
            return None
        if version is None:
            return _schema_info(topic, schema, schema.latest.version)
        if (
            isinstance(version, bool)
            or not isinstance(version, int)
            or not 1 <= version <= len(schema.versions)
        ):
            raise InvalidRequest(
                f"topic {topic}'s schema has versions 1 to {len(schema.versions)}, not {version!r}"
            )
        return _schema_info(topic, schema, version)

    def schema_versions(self, topic: str) -> list[SchemaInfo]:
        schema = self._topic(topic).schema
        if schema is None:
            return []
        return [_schema_info(topic, schema, v.version) for v in schema.versions]

    def read_schema(self, topic: str) -> pa.Schema:
        """The schema of what a read of ``topic`` returns (typed value if schema'd)."""
        schema = self._topic(topic).schema
        return STORED_SCHEMA if schema is None else schema.stored_schema

    def schema_by_id(self, schema_id: int) -> tuple[str, str] | None:
        """(kind, canonical text) of a global schema id, or None."""
        return self.schema_ids.get(schema_id)

    def schema_id_for(self, kind: str, text: str) -> int:
        """The global id of a schema (kind and canonical text), allocated on first use."""
        return self.schema_ids.id_for(kind, text)

    def schema_subjects_of(self, schema_id: int) -> list[tuple[str, int]]:
        """(topic, version) pairs whose schema has the given id."""
        found: list[tuple[str, int]] = []
        for name in self.list_topics():
            topic = self._topics.get(name)
            schema = topic.schema if topic is not None else None
            if schema is not None:
                found.extend((name, v.version) for v in schema.versions if v.schema_id == schema_id)
        return found

    # -- writing ----------------------------------------------------------------------

    def append(
        self,
        topic: str,
        records: Records,
        *,
        expect: api.Expect | None = None,
        expect_offset: int | None = None,
        producer: api.Producer | None = None,
    ) -> AppendResult:
        """Append records atomically, once durable (see :meth:`odradek.api.Client.append`)."""
        return self.submit_append(
            topic, records, expect=expect, expect_offset=expect_offset, producer=producer
        ).wait()

    def submit_append(
        self,
        topic: str,
        records: Records,
        *,
        expect: api.Expect | None = None,
        expect_offset: int | None = None,
        producer: api.Producer | RangeProducer | None = None,
        partition: int | None = None,
        bounded: bool = True,
    ) -> PendingAppend:
        """Write an append now; ``.wait()`` on the result acknowledges it once durable.

        Refusals (bad input, failed expectations, sequence errors) raise here, with
        nothing written. A door streaming batches submits the next batch while the
        previous one's fsync is under way, so one stream shares fsyncs with itself.
        ``producer`` may also be a range, ``(producer_id, first_sequence,
        last_sequence)``: the Kafka door's form (producers.py). ``partition`` is the
        Kafka partition the records were produced to, kept with them (frames.py).

        An append to a tenant's topic while the tenant stores its ``storage_bytes`` quota
        or more is refused with QuotaExceeded (engine/tenant_storage.py). ``bounded=False``
        skips that check, for records whose acceptance was decided before (a committed
        Kafka transaction's, checked when they were staged); they are still counted.
        """
        target = self._topic(topic)
        schema = target.schema
        batch = to_input_batch(records, self.append_bytes_max, None if schema is None else schema.value_type)
        tenant = self.tenant_storage.check(topic, refuse=bounded)  # at its storage_bytes quota: refused
        pending = target.submit(batch, expect, expect_offset, producer, partition)
        if tenant is not None:
            self.tenant_storage.added(tenant, pending.size)
        return pending

    def append_many(
        self, topic: str, batches: Iterable[Records], *, window: int = defaults.append_window
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

    def key_version(self, topic: str, key: api.Key) -> int:
        return self._topic(topic).key_version(normalize_key(key))

    def read_key(
        self,
        topic: str,
        key: api.Key,
        from_version: int = defaults.from_version,
        to_version: int | None = None,
        *,
        from_snapshot: bool = False,
    ) -> pa.Table:
        if isinstance(from_version, bool) or not isinstance(from_version, int) or from_version < 1:
            raise InvalidRequest(f"from_version must be an int >= 1, got {from_version!r}")
        if to_version is not None and (isinstance(to_version, bool) or not isinstance(to_version, int)):
            raise InvalidRequest(f"to_version must be an int or None, got {to_version!r}")
        if not isinstance(from_snapshot, bool):
            raise InvalidRequest(f"from_snapshot must be True or False, got {from_snapshot!r}")
        if from_snapshot:
            if from_version != defaults.from_version or to_version is not None:
                raise InvalidRequest(
                    "read_key with from_snapshot=True starts at the key's latest snapshot and "
                    "ends at its latest event: leave from_version and to_version out"
                )
            return self._topic(topic).snapshots.read_key(normalize_key(key))
        return self._topic(topic).read_key(normalize_key(key), from_version, to_version)

    def snapshot(self, topic: str, key: api.Key, state: bytes, *, version: int) -> None:
        """Store ``state`` as ``key``'s state as of its ``version`` (see
        :meth:`odradek.api.Client.snapshot`)."""
        self._topic(topic).snapshots.write(normalize_key(key), state, version)

    def compaction_stamp(self, topic: str) -> int:
        """A number that changes whenever compaction rewrote ``topic``'s segments (or the
        topic was opened again): a summary of its frames taken under another stamp may
        count records compaction removed."""
        return self._topic(topic).compaction_stamp

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
        max_records: int = defaults.fetch_records_max,
        max_bytes: int = defaults.fetch_bytes_max,
        value_format: str = "typed",
    ) -> list[pa.RecordBatch]:
        """One read of ``topic`` from ``offset``, without waiting.

        A schema'd topic's values come typed (a struct column of the newest schema
        version), or as bytes with ``value_format``: ``json`` text or ``wire`` (the
        Schema Registry format, as Kafka clients expect)."""
        check_fetch(max_records, max_bytes, value_format)
        return self._topic(topic).fetch(offset, max_records, max_bytes, value_format)

    def frames(
        self, topic: str, start: int, end: int | None = None, *, partitions: bool = True
    ) -> Iterator[StoredFrame]:
        """The durable frames of ``topic`` holding offsets in [start, end), each with
        the partition stored with it, undecoded (frames.py); for the Kafka door."""
        return walk(self._topic(topic), start, end, partitions=partitions)

    def read(
        self,
        pattern: str,
        *,
        start: Start = defaults.start,
        wait: float = defaults.read_wait_seconds,
        follow: bool = False,
        max_records: int | None = None,
        max_bytes: int | None = None,
        stop: Callable[[], bool] | None = None,
        starts: Mapping[str, tuple[int, str]] | None = None,
    ) -> Generator[pa.RecordBatch, None, None]:
        """Yield batches of ``pattern``'s topics from ``start`` on.

        Ends once caught up and ``wait`` seconds pass with nothing new; with ``follow``
        it never ends. A wildcard pattern adds a ``topic`` column and picks up matching
        topics created while reading (from their earliest offset). ``stop``, checked at
        least once a second while waiting, ends the read early when it returns True
        (a server passes "the client went away").

        ``starts`` continues a wildcard read another reader began (decision 0042: an
        agent read these topics' sealed segments from the store): a topic it names,
        ``(offset, incarnation)``, starts at that offset instead of ``start``, or at
        the first offset still held when retention passed it; when the topic's
        incarnation differs (deleted and created again meanwhile), at its earliest, as
        a topic created while reading would. Names the pattern does not match are
        ignored.
        """
        self._check_open()
        wildcard = is_pattern(_check_pattern(pattern))
        matches = compile_pattern(pattern)  # validates the pattern
        if not wildcard:
            self._topic(pattern)
        wait = _check_wait(wait)
        per_batch = max_records if max_records is not None else defaults.fetch_records_max
        per_bytes = max_bytes if max_bytes is not None else defaults.fetch_bytes_max
        _check_limits(per_batch, per_bytes)
        positions: dict[str, int] = {}
        for name in self.list_topics(pattern) if wildcard else [pattern]:
            positions[name] = (
                self._continued(name, starts[name])
                if starts and name in starts
                else (self.resolve_start(name, start))
            )
        return self._read_loop(
            pattern, wildcard, matches, positions, wait, follow, per_batch, per_bytes, stop
        )

    def _continued(self, name: str, start: tuple[int, str]) -> int:
        """Where a read another reader began continues ``name`` (:meth:`read`'s ``starts``)."""
        topic = self._topic(name)
        offset, incarnation = start
        if incarnation != topic.incarnation:
            return topic.first_offset
        return min(max(offset, topic.first_offset), topic.durable_offset)

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
    ) -> Generator[pa.RecordBatch, None, None]:
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
                # Across topics, a schema'd topic's values come as JSON text so that every
                # batch has one schema; a read of one topic gets them typed.
                value_format = "json" if wildcard else "typed"
                for batch in topic.fetch(positions[name], per_batch, per_bytes, value_format):
                    # The last offset, not the row count: damaged offsets leave gaps.
                    positions[name] = int(batch.column("offset")[-1].as_py()) + 1
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
        if removed:
            self.tenant_storage.stale()
        return removed

    def compact(self, now: float | None = None, *, force: bool = False) -> dict[str, CompactionResult]:
        """One compaction round of every compacted topic where one is due (or all of
        them with ``force``); what each round did, by topic. The background thread
        calls it every ``compaction_check_seconds``."""
        results: dict[str, CompactionResult] = {}
        for topic in list(self._topics.values()):
            result = topic.compact(  # the topic's snapshot log too (snapshots.py)
                now, force=force, throttle=Throttle(limits.compaction_bytes_per_second, self._stop)
            )
            if result is not None:
                results[topic.name] = result
        if results:
            self.tenant_storage.stale()
        return results

    def compaction_lags(self) -> list[CompactionLag]:
        """How far compaction lags on every topic with ``cleanup`` compact or snapshot,
        by name: sizes held in memory, nothing read (engine/compaction.py)."""
        return [
            topic.compactor.lag()
            for _, topic in sorted(self._topics.items())
            if not topic.closed and (topic.config.compacted or topic.config.snapshot_cleanup)
        ]

    def compaction_summary(self, now: float | None = None) -> dict[str, Any]:
        """Totals of :meth:`compaction_lags` and the ``compaction_lag_topics_max`` topics
        whose dirty ratio is the highest (``odradek cluster status``)."""
        return lag_summary(self.compaction_lags(), time.time() if now is None else now)

    def run_reducers(self) -> dict[str, int]:
        """One reducer round of every topic with a reducer (engine/reducers.py): the
        snapshots each stored, by topic. The background thread calls it every
        ``reducer_check_seconds``."""
        made: dict[str, int] = {}
        for topic in list(self._topics.values()):
            if topic.config.reducer is not None and not self._stop.is_set():
                made[topic.name] = reduce_round(topic, self._stop)
        return made

    def _reducer_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.run_reducers()
            except OdradekError as exc:
                log.warning("reducer round failed: %s", exc)
            except Exception:
                log.exception("reducer round failed")

    def _compaction_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.compact()
            except CompactionStopped:
                return
            except OdradekError as exc:
                log.warning("compaction failed: %s", exc)
            except Exception:
                log.exception("compaction failed")

    def _retention_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.enforce_retention()
            except OdradekError as exc:
                log.warning("retention check failed: %s", exc)
            except Exception:
                log.exception("retention check failed")


_VALUE_FORMATS = ("typed", "json", "wire")


def _drop_ranges(value: object) -> list[tuple[int, int]]:
    """``(first, last)`` or a list of them, as ints with 0 <= first <= last."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        value = [value]
    ranges: list[tuple[int, int]] = []
    if isinstance(value, (tuple, list)) and value:
        for item in value:
            if (
                isinstance(item, (tuple, list))
                and len(item) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in item)
                and 0 <= item[0] <= item[1]
            ):
                ranges.append((int(item[0]), int(item[1])))
            else:
                ranges = []
                break
    if not ranges:
        raise InvalidRequest(
            "drop_range must be (first, last) offsets with 0 <= first <= last, or a list of them; "
            f"got {value!r}"
        )
    return ranges


def _schema_info(topic: str, schema: TopicSchema, version: int) -> SchemaInfo:
    entry = schema.versions[version - 1]
    return SchemaInfo(
        topic=topic,
        version=entry.version,
        id=entry.schema_id,
        kind=entry.kind,
        text=entry.text,
        compatibility=schema.compatibility,
        value_type=schema.compiled(version).value_type,
    )


def _refuse_incompatible(topic: str, current: TopicSchema, new_type: pa.StructType, mode: str) -> None:
    problems = compat.check(current.history(), new_type, mode)
    if not problems:
        return
    changes = compat.diff(current.value_type, new_type)
    lines = [
        f"the new schema of topic {topic} is not {mode}-compatible with version {current.latest.version}; "
        "the topic keeps its schema.",
        "what breaks:",
        *(f"  - {problem}" for problem in problems),
    ]
    if changes:
        lines += ["changes from the current version:", *(f"  {change}" for change in changes)]
    raise IncompatibleSchema("\n".join(lines), problems)


_START_RULES = "start must be 'earliest', 'latest', an offset (int >= 0), a datetime or an ISO-8601 timestamp"


def _check_pattern(pattern: object) -> str:
    if not isinstance(pattern, str):
        raise InvalidRequest(f"a topic name or pattern must be a string, got {type(pattern).__name__}")
    return pattern


def check_fetch(max_records: object, max_bytes: object, value_format: object) -> None:
    """InvalidRequest unless a fetch's bounds and value format are valid (here, and
    where another agent's reader answers a fetch: engine/replica.py)."""
    _check_limits(max_records, max_bytes)
    if value_format not in _VALUE_FORMATS:
        raise InvalidRequest(f"value_format is one of {', '.join(_VALUE_FORMATS)}, got {value_format!r}")


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
