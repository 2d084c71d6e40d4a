"""The embedded client: the public API of DESIGN §3 over an in-process node.

The node (node.py) is the engine and what serves it: consumer groups of both kinds,
as ``odradek serve`` has them. ``client.node`` and ``client.engine`` reach them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pyarrow as pa

from odradek import limits
from odradek.client.consumer import Consumer
from odradek.groups import GroupInfo, GroupOptions
from odradek.node import Node
from odradek.records import Records
from odradek.types import AppendResult, SchemaInfo, TopicInfo


class EmbeddedClient:
    """``odradek.open(path)``: the whole API, no server. Thread-safe."""

    def __init__(self, path: str | os.PathLike[str], **options: Any) -> None:
        self.node = Node.open(path, **options)
        self.engine = self.node.engine

    # -- topics -----------------------------------------------------------------------

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
        compatibility: str = "backward",
    ) -> TopicInfo:
        return self.engine.create_topic(
            name,
            retention=retention,
            retention_bytes=retention_bytes,
            segment_bytes=segment_bytes,
            segment_age=segment_age,
            exist_ok=exist_ok,
            schema=schema,
            compatibility=compatibility,
        )

    # -- schemas ----------------------------------------------------------------------

    def set_schema(self, topic: str, schema: object, *, compatibility: str | None = None) -> SchemaInfo:
        return self.engine.set_schema(topic, schema, compatibility=compatibility)

    def get_schema(self, topic: str, version: int | None = None) -> SchemaInfo | None:
        return self.engine.get_schema(topic, version)

    def schema_versions(self, topic: str) -> list[SchemaInfo]:
        return self.engine.schema_versions(topic)

    def check_schema(self, topic: str, schema: object, *, compatibility: str | None = None) -> list[str]:
        return self.engine.check_schema(topic, schema, compatibility=compatibility)

    def set_compatibility(self, topic: str, compatibility: str) -> None:
        self.engine.set_compatibility(topic, compatibility)

    def delete_topic(self, name: str) -> None:
        self.engine.delete_topic(name)

    def list_topics(self, pattern: str | None = None) -> list[str]:
        return self.engine.list_topics(pattern)

    def describe_topic(self, name: str) -> TopicInfo:
        return self.engine.describe_topic(name)

    def unavailable_topics(self) -> dict[str, str]:
        """Topics whose files exist but cannot be opened, and why."""
        return self.engine.unavailable_topics()

    def verify_topic(self, name: str) -> dict[str, Any]:
        """Check every frame and derived file of a topic (see Engine.verify_topic)."""
        return self.engine.verify_topic(name)

    def repair_topic(self, name: str, *, drop_range: object) -> TopicInfo:
        """Accept the loss of damaged offsets (see Engine.repair_topic)."""
        return self.engine.repair_topic(name, drop_range=drop_range)

    # -- data -------------------------------------------------------------------------

    def append(
        self,
        topic: str,
        records: Records,
        *,
        expect: Mapping[Any, int] | None = None,
        expect_offset: int | None = None,
        producer: object = None,
    ) -> AppendResult:
        return self.engine.append(
            topic, records, expect=expect, expect_offset=expect_offset, producer=producer
        )

    def append_many(
        self, topic: str, batches: Iterable[Records], *, window: int = limits.append_window_default
    ) -> list[AppendResult]:
        """Append batches in order, each atomic, pipelined (see Engine.append_many)."""
        return self.engine.append_many(topic, batches, window=window)

    def read(
        self,
        pattern: str,
        *,
        start: Any = "earliest",
        wait: float = 1.0,
        follow: bool = False,
        max_records: int | None = None,
        max_bytes: int | None = None,
    ) -> Iterator[pa.RecordBatch]:
        return self.engine.read(
            pattern, start=start, wait=wait, follow=follow, max_records=max_records, max_bytes=max_bytes
        )

    def fetch(
        self,
        topic: str,
        offset: int,
        *,
        max_records: int = limits.read_records_max_default,
        max_bytes: int = limits.read_bytes_max_default,
    ) -> list[pa.RecordBatch]:
        return self.engine.fetch(topic, offset, max_records=max_records, max_bytes=max_bytes)

    def read_key(
        self, topic: str, key: object, from_version: int = 1, to_version: int | None = None
    ) -> pa.Table:
        return self.engine.read_key(topic, key, from_version, to_version)

    def key_version(self, topic: str, key: object) -> int:
        return self.engine.key_version(topic, key)

    # -- consumer groups --------------------------------------------------------------

    def subscribe(
        self,
        pattern: str,
        *,
        group: str,
        start: Any = "earliest",
        ack_timeout: float = 30.0,
        max_deliveries: int = 5,
        dead_letter_topic: str | None = None,
        max_in_flight_per_key: int | None = None,
        ordering: str = "key",
    ) -> Consumer:
        """Join consumer group ``group`` reading the topics of ``pattern``.

        ``ordering="key"`` delivers each key's records in version order, at most
        ``max_in_flight_per_key`` (default 1) at a time, keys in parallel across all
        members; ``"topic"`` gives each topic in offset order to one active member at a
        time; ``"none"`` spreads every record freely. Unsettled deliveries come back
        after ``ack_timeout`` s; after ``max_deliveries`` a record goes to
        ``dead_letter_topic`` (default ``dlq.<group>``). ``start`` places a new group.
        """
        options = GroupOptions.build(
            group,
            pattern,
            start=start,
            ack_timeout=ack_timeout,
            max_deliveries=max_deliveries,
            dead_letter_topic=dead_letter_topic,
            max_in_flight_per_key=max_in_flight_per_key,
            ordering=ordering,
        )
        return Consumer(self.node.groups, pattern, group, options)

    def describe_group(self, group: str) -> GroupInfo:
        """A group of either kind (``odradek``, or ``kafka``: joined through the Kafka
        door), with its members and its lag per topic."""
        return self.node.directory.describe_group(group)

    def list_groups(self) -> list[str]:
        """The names of every group, of both kinds."""
        return self.node.directory.list_groups()

    def delete_group(self, group: str) -> None:
        """Forget a group of either kind and its progress (refused while it has members)."""
        self.node.directory.delete_group(group)

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        self.node.close()

    def __enter__(self) -> EmbeddedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
