"""What the Kafka door keeps beside the engine's data, in ``<data dir>/kafka/``::

    cluster.json              {"cluster_id": ...}: stable across restarts
    topics.json               {topic: {"incarnation": id, "kafka_partitions": n,
                                       "kafka_partition_history": [[offset, n], ...]}}
                              (entries of older versions hold "created_at" instead,
                              and no history: their count applies from offset 0)
    producer_ids.json         {"next": n}: the first producer id not yet handed out
    groups/<hex name>.json    a consumer group's committed offsets

Every file is replaced atomically (write, fsync, rename, directory fsync), so a crash
or a power loss leaves either the old or the new version, and carries a checksum.
Settings of a topic are tied to its creation time: a topic deleted and created again
(through any door) starts with the defaults.

Producer ids are reserved in blocks (as Kafka's controller does) so that a restart
never hands out an id twice while a file write is needed only once per block.

Groups' offsets are a :class:`GroupOffsetStore` of their own, so that a node
(protocols/kafka/catalog.py) reads them, and deletes a group, while no Kafka listener
runs (``odradek group list`` sees the door's groups). While one runs, only its store
writes them, and the node asks its coordinator instead.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import uuid
from typing import Any

from odradek.engine.topicfiles import incarnation_of
from odradek.errors import StorageError
from odradek.storage.disk import LOCAL, Disk, describe_os_error
from odradek.storage.documents import COPY_SUFFIX, Document

log = logging.getLogger(__name__)

PRODUCER_ID_BLOCK = 1000


def _save(document: Document, data: Any) -> None:
    try:
        document.save(data)
    except OSError as exc:
        raise StorageError(
            f"could not write {os.path.basename(document.path)}: {describe_os_error(exc)}"
        ) from exc


def _load(document: Document) -> Any:
    """The document's data (None if absent); StorageError naming the file if damaged."""
    try:
        return document.load()
    except OSError as exc:
        raise StorageError(f"could not read {document.path}: {describe_os_error(exc)}") from exc


OffsetEntry = tuple[int, int, str | None]  # offset, leader epoch, metadata

# (first offset, partition count) in offset order: records from each offset on (up to
# the next entry's) that carry no partition of their own belong to one of that many
# partitions by their key's hash (decision 0014). The first entry's offset is 0.
PartitionHistory = tuple[tuple[int, int], ...]
SINGLE_PARTITION: PartitionHistory = ((0, 1),)


def partition_history(topics: dict[str, Any], topic: str, incarnation: str) -> PartitionHistory:
    """A topic's partition history from the entries of ``topics.json``: one partition
    unless set for this incarnation of the topic; an entry written before histories
    were kept has its count from offset 0 (what every record was read with then)."""
    entry = topics.get(topic)
    if entry is None:
        return SINGLE_PARTITION
    try:
        if incarnation_of({"topic": topic, **entry}) != incarnation:
            return SINGLE_PARTITION  # set for an earlier topic of that name
        stored = entry.get("kafka_partition_history")
        if stored is None:
            return ((0, int(entry.get("kafka_partitions", 1))),)
        history = tuple((int(offset), int(count)) for offset, count in stored)
        if not history or history[0][0] != 0 or any(count < 1 for _, count in history):
            raise ValueError("not a partition history")
        return history
    except (KeyError, TypeError, ValueError):
        log.warning("ignoring a malformed Kafka topic entry for %s: %r", topic, entry)
        return SINGLE_PARTITION


def load_partition_histories(data_dir: str, disk: Disk = LOCAL) -> dict[str, Any]:
    """The entries of ``topics.json`` (read only; nothing is created): for readers
    beside the door, such as the node's view of Kafka groups' lag."""
    document = Document(disk, os.path.join(data_dir, "kafka", "topics.json"), mode="mirror", sync=False)
    try:
        return _load(document) or {}
    except StorageError as exc:
        log.warning("%s", exc.message)
        return {}


class DoorStore:
    """Thread-safe access to the door's files; small documents, rewritten whole.

    Each file is a checksummed document (storage/documents.py): cluster id, topic
    settings and the producer-id block in two mirrored copies (a damaged one is
    replaced by the other); a group's offsets in two alternating copies (a damaged
    newest commit falls back to the one before, so a consumer re-reads a little instead
    of losing its place), kept by ``groups``.
    """

    def __init__(self, data_dir: str, disk: Disk = LOCAL, *, fsync: bool = True) -> None:
        self.disk = disk
        self.fsync = fsync
        self.directory = os.path.join(data_dir, "kafka")
        self.groups = GroupOffsetStore(data_dir, disk, fsync=fsync)
        self.groups.prepare()
        self._lock = threading.Lock()
        cluster_document = self._document("cluster.json")
        cluster = _load(cluster_document)
        if not cluster:
            cluster = {"cluster_id": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")}
            _save(cluster_document, cluster)
        self.cluster_id: str = cluster["cluster_id"]
        self._topics_document = self._document("topics.json")
        self._topics: dict[str, dict[str, Any]] = _load(self._topics_document) or {}
        self._producer_ids_document = self._document("producer_ids.json")
        state = _load(self._producer_ids_document) or {"next": 1}
        self._next_producer_id = int(state["next"])
        self._reserved_until = self._next_producer_id

    def _document(self, name: str, mode: str = "mirror") -> Document:
        return Document(self.disk, os.path.join(self.directory, name), mode=mode, sync=self.fsync)

    # -- topics -----------------------------------------------------------------------

    def partitions(self, topic: str, incarnation: str) -> int:
        """The topic's Kafka partition count; 1 unless set for this incarnation of it."""
        return partition_history(self._topics, topic, incarnation)[-1][1]

    def history(self, topic: str, incarnation: str) -> PartitionHistory:
        """From which offset on which partition count held (see :func:`partition_history`)."""
        return partition_history(self._topics, topic, incarnation)

    def set_partitions(self, topic: str, incarnation: str, count: int, from_offset: int = 0) -> None:
        """The topic has ``count`` partitions for records from ``from_offset`` on (the
        log's end when the count grows; 0 when the topic is created with it)."""
        with self._lock:
            earlier = [
                entry
                for entry in partition_history(self._topics, topic, incarnation)
                if entry[0] < from_offset
            ]
            history = [[offset, partitions] for offset, partitions in earlier] + [[from_offset, count]]
            topics = dict(self._topics)
            topics[topic] = {
                "incarnation": incarnation,
                "kafka_partitions": count,
                "kafka_partition_history": history,
            }
            _save(self._topics_document, topics)
            self._topics = topics

    def forget_topic(self, topic: str) -> None:
        with self._lock:
            if topic not in self._topics:
                return
            topics = {name: entry for name, entry in self._topics.items() if name != topic}
            _save(self._topics_document, topics)
            self._topics = topics

    # -- producer ids -----------------------------------------------------------------

    def next_producer_id(self) -> int:
        with self._lock:
            if self._next_producer_id >= self._reserved_until:
                until = self._next_producer_id + PRODUCER_ID_BLOCK
                _save(self._producer_ids_document, {"next": until})
                self._reserved_until = until
            producer_id = self._next_producer_id
            self._next_producer_id += 1
            return producer_id

    # -- group offsets ----------------------------------------------------------------

    def load_groups(self) -> dict[str, dict[tuple[str, int], OffsetEntry]]:
        return self.groups.load_groups()

    def save_group(self, group: str, offsets: dict[tuple[str, int], OffsetEntry]) -> None:
        self.groups.save_group(group, offsets)

    def delete_group(self, group: str) -> None:
        self.groups.delete_group(group)


class GroupOffsetStore:
    """The committed offsets of the door's consumer groups, one file per group:
    ``kafka/groups/<hex name>.json`` in two alternating copies. Thread-safe; creates
    nothing until :meth:`prepare` (so that reading the groups writes nothing)."""

    def __init__(self, data_dir: str, disk: Disk = LOCAL, *, fsync: bool = True) -> None:
        self.disk = disk
        self.fsync = fsync
        self._groups_dir = os.path.join(data_dir, "kafka", "groups")
        self._lock = threading.Lock()
        self._groups: dict[str, Document] = {}

    def prepare(self) -> None:
        """Make the directory (the door does at start, so that a full disk shows then)."""
        try:
            if not self.disk.isdir(self._groups_dir):
                self.disk.makedirs(self._groups_dir)
        except OSError as exc:
            raise StorageError(f"cannot use {self._groups_dir}: {describe_os_error(exc)}") from exc

    def _group_document(self, group: str) -> Document:
        with self._lock:
            document = self._groups.get(group)
            if document is None:
                path = os.path.join(self._groups_dir, group.encode().hex() + ".json")
                document = Document(self.disk, path, mode="alternate", sync=self.fsync)
                self._groups[group] = document
            return document

    def names(self) -> list[str]:
        """The groups with an offsets file (damaged ones too), without reading them."""
        try:
            if not self.disk.isdir(self._groups_dir):
                return []
            entries = self.disk.listdir(self._groups_dir)
        except OSError as exc:
            raise StorageError(f"cannot list {self._groups_dir}: {describe_os_error(exc)}") from exc
        names = set()
        for name in {entry.removesuffix(COPY_SUFFIX) for entry in entries}:
            if not name.endswith(".json"):
                continue
            try:
                names.add(bytes.fromhex(name[: -len(".json")]).decode())
            except (ValueError, UnicodeDecodeError):
                continue  # not a group's offsets file (load_groups says so)
        return sorted(names)

    def load_groups(self) -> dict[str, dict[tuple[str, int], OffsetEntry]]:
        groups: dict[str, dict[tuple[str, int], OffsetEntry]] = {}
        if not self.disk.isdir(self._groups_dir):
            return groups
        names = {
            name.removesuffix(COPY_SUFFIX)
            for name in sorted(self.disk.listdir(self._groups_dir))
            if name.endswith((".json", ".json" + COPY_SUFFIX))
        }
        for name in sorted(names):
            try:
                group = bytes.fromhex(name[: -len(".json")]).decode()
            except (ValueError, UnicodeDecodeError):
                log.warning("ignoring %s: not a group's offsets file", name)
                continue
            offsets = self.load_group(group)
            if offsets is not None:
                groups[group] = offsets
        return groups

    def load_group(self, group: str) -> dict[tuple[str, int], OffsetEntry] | None:
        """The group's committed offsets; None if it has no file (or lost it)."""
        document = self._group_document(group)
        try:
            data = document.load()
        except OSError as exc:
            log.error(
                "the committed offsets of Kafka group %r are lost (%s): its consumers start "
                "from their auto.offset.reset position",
                group,
                exc,
            )
            return None
        if not data:
            return None
        return {
            (topic, int(partition)): (int(offset), int(epoch), metadata)
            for topic, partition, offset, epoch, metadata in data["offsets"]
        }

    def save_group(self, group: str, offsets: dict[tuple[str, int], OffsetEntry]) -> None:
        rows = [[topic, partition, *entry] for (topic, partition), entry in sorted(offsets.items())]
        _save(self._group_document(group), {"group": group, "offsets": rows})

    def delete_group(self, group: str) -> None:
        try:
            self._group_document(group).delete()
        except OSError as exc:
            raise StorageError(
                f"could not delete the offsets of group {group!r}: {describe_os_error(exc)}"
            ) from exc
        with self._lock:
            self._groups.pop(group, None)
