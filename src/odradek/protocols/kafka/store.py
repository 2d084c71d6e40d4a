"""What the Kafka door keeps beside the engine's data, in ``<data dir>/kafka/``::

    cluster.json              {"cluster_id": ...}: stable across restarts
    topics.json               {topic: {"created_at": t, "kafka_partitions": n}}
    producer_ids.json         {"next": n}: the first producer id not yet handed out
    groups/<hex name>.json    a consumer group's committed offsets

Every file is replaced atomically (write, fsync, rename), so a crash leaves either
the old or the new version. Settings of a topic are tied to its creation time: a
topic deleted and created again (through any door) starts with the defaults.

Producer ids are reserved in blocks (as Kafka's controller does) so that a restart
never hands out an id twice while a file write is needed only once per block.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from typing import Any

from odradek.errors import StorageError
from odradek.files import write_json_atomically

PRODUCER_ID_BLOCK = 1000


def _write_json(path: str, data: Any) -> None:
    try:
        write_json_atomically(path, data)
    except OSError as exc:
        raise StorageError(f"could not write {os.path.basename(path)}: {exc}") from exc


def _read_json(path: str) -> Any:
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StorageError(f"could not read {path}: {exc}") from exc


OffsetEntry = tuple[int, int, str | None]  # offset, leader epoch, metadata


class DoorStore:
    """Thread-safe access to the door's files; small documents, rewritten whole."""

    def __init__(self, data_dir: str) -> None:
        self.directory = os.path.join(data_dir, "kafka")
        self._groups_dir = os.path.join(self.directory, "groups")
        os.makedirs(self._groups_dir, exist_ok=True)
        self._lock = threading.Lock()
        cluster = _read_json(os.path.join(self.directory, "cluster.json"))
        if not cluster:
            cluster = {"cluster_id": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")}
            _write_json(os.path.join(self.directory, "cluster.json"), cluster)
        self.cluster_id: str = cluster["cluster_id"]
        self._topics: dict[str, dict[str, Any]] = _read_json(self._path("topics.json")) or {}
        state = _read_json(self._path("producer_ids.json")) or {"next": 1}
        self._next_producer_id = int(state["next"])
        self._reserved_until = self._next_producer_id

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    # -- topics -----------------------------------------------------------------------

    def partitions(self, topic: str, created_at: float) -> int:
        entry = self._topics.get(topic)
        if entry is None or entry.get("created_at") != created_at:
            return 1
        return int(entry.get("kafka_partitions", 1))

    def set_partitions(self, topic: str, created_at: float, count: int) -> None:
        with self._lock:
            topics = dict(self._topics)
            topics[topic] = {"created_at": created_at, "kafka_partitions": count}
            _write_json(self._path("topics.json"), topics)
            self._topics = topics

    def forget_topic(self, topic: str) -> None:
        with self._lock:
            if topic not in self._topics:
                return
            topics = {name: entry for name, entry in self._topics.items() if name != topic}
            _write_json(self._path("topics.json"), topics)
            self._topics = topics

    # -- producer ids -----------------------------------------------------------------

    def next_producer_id(self) -> int:
        with self._lock:
            if self._next_producer_id >= self._reserved_until:
                until = self._next_producer_id + PRODUCER_ID_BLOCK
                _write_json(self._path("producer_ids.json"), {"next": until})
                self._reserved_until = until
            producer_id = self._next_producer_id
            self._next_producer_id += 1
            return producer_id

    # -- group offsets ----------------------------------------------------------------

    def _group_path(self, group: str) -> str:
        return os.path.join(self._groups_dir, group.encode().hex() + ".json")

    def load_groups(self) -> dict[str, dict[tuple[str, int], OffsetEntry]]:
        groups: dict[str, dict[tuple[str, int], OffsetEntry]] = {}
        for name in sorted(os.listdir(self._groups_dir)):
            if not name.endswith(".json"):
                continue
            data = _read_json(os.path.join(self._groups_dir, name))
            if not data:
                continue
            groups[data["group"]] = {
                (topic, int(partition)): (int(offset), int(epoch), metadata)
                for topic, partition, offset, epoch, metadata in data["offsets"]
            }
        return groups

    def save_group(self, group: str, offsets: dict[tuple[str, int], OffsetEntry]) -> None:
        rows = [[topic, partition, *entry] for (topic, partition), entry in sorted(offsets.items())]
        _write_json(self._group_path(group), {"group": group, "offsets": rows})

    def delete_group(self, group: str) -> None:
        try:
            os.remove(self._group_path(group))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"could not delete the offsets of group {group!r}: {exc}") from exc
