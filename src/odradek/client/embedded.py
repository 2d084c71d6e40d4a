"""The embedded client: the API of :class:`odradek.api.Client` over an in-process node.

The node (node.py) is the engine and what serves it: consumer groups of both kinds,
as ``odradek serve`` has them. ``client.node`` and ``client.engine`` reach them. The
methods' documentation is the protocol's (``help()`` shows it).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterable, Sequence
from typing import Any

import pyarrow as pa

from odradek import api, defaults
from odradek.client.consumer import Consumer
from odradek.errors import ClosedError
from odradek.groups import GroupInfo, GroupOptions, OffsetReset
from odradek.node import Node
from odradek.types import AppendResult, SchemaInfo, TopicInfo


class EmbeddedClient(api.Client):
    """``odradek.open(path)``: the whole API, no server. Thread-safe.

    ``options`` are the engine's (``odradek.open``), ``store=URL`` included: the node's
    data then lives in the object store, ``path`` being its cache."""

    def __init__(self, path: str | os.PathLike[str], **options: Any) -> None:
        self.node = Node.open(path, **options)
        self.engine = self.node.engine

    # -- topics -----------------------------------------------------------------------

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
        return self.engine.create_topic(
            name,
            retention=retention,
            retention_bytes=retention_bytes,
            segment_bytes=segment_bytes,
            segment_age=segment_age,
            cleanup=cleanup,
            delete_retention=delete_retention,
            min_compaction_lag=min_compaction_lag,
            min_cleanable_dirty_ratio=min_cleanable_dirty_ratio,
            exist_ok=exist_ok,
            schema=schema,
            compatibility=compatibility,
            reducer=reducer,
            snapshot_every=snapshot_every,
        )

    def delete_topic(self, name: str) -> None:
        self.engine.delete_topic(name)

    def alter_topic(self, name: str, **settings: Any) -> TopicInfo:
        return self.engine.alter_topic(name, **settings)

    def list_topics(self, pattern: str | None = None) -> list[str]:
        return self.engine.list_topics(pattern)

    def describe_topic(self, name: str) -> TopicInfo:
        return self.engine.describe_topic(name)

    def unavailable_topics(self) -> dict[str, str]:
        return self.engine.unavailable_topics()

    def verify_topic(self, name: str) -> dict[str, Any]:
        return self.engine.verify_topic(name)

    def repair_topic(self, name: str, *, drop_range: api.DropRange) -> TopicInfo:
        return self.engine.repair_topic(name, drop_range=drop_range)

    # -- schemas ----------------------------------------------------------------------

    def set_schema(self, topic: str, schema: api.Schema, *, compatibility: str | None = None) -> SchemaInfo:
        return self.engine.set_schema(topic, schema, compatibility=compatibility)

    def get_schema(self, topic: str, version: int | None = None) -> SchemaInfo | None:
        return self.engine.get_schema(topic, version)

    def schema_versions(self, topic: str) -> list[SchemaInfo]:
        return self.engine.schema_versions(topic)

    def check_schema(self, topic: str, schema: api.Schema, *, compatibility: str | None = None) -> list[str]:
        return self.engine.check_schema(topic, schema, compatibility=compatibility)

    def set_compatibility(self, topic: str, compatibility: str) -> None:
        self.engine.set_compatibility(topic, compatibility)

    # -- data -------------------------------------------------------------------------

    def append(
        self,
        topic: str,
        records: api.Records,
        *,
        expect: api.Expect | None = None,
        expect_offset: int | None = None,
        producer: api.Producer | None = None,
        wait_for: Sequence[str] | None = None,
        timeout: float = defaults.wait_for_timeout_seconds,
    ) -> AppendResult:
        return self.node.append(
            topic,
            records,
            expect=expect,
            expect_offset=expect_offset,
            producer=producer,
            wait_for=wait_for,
            timeout=timeout,
        )

    def append_many(
        self, topic: str, batches: Iterable[api.Records], *, window: int = defaults.append_window
    ) -> list[AppendResult]:
        return self.engine.append_many(topic, batches, window=window)

    def read(
        self,
        pattern: str,
        *,
        start: api.Start = defaults.start,
        wait: float = defaults.read_wait_seconds,
        follow: bool = False,
        max_records: int | None = None,
        max_bytes: int | None = None,
    ) -> Generator[pa.RecordBatch, None, None]:
        return self.engine.read(
            pattern, start=start, wait=wait, follow=follow, max_records=max_records, max_bytes=max_bytes
        )

    def fetch(
        self,
        topic: str,
        offset: int,
        *,
        max_records: int = defaults.fetch_records_max,
        max_bytes: int = defaults.fetch_bytes_max,
    ) -> list[pa.RecordBatch]:
        return self.engine.fetch(topic, offset, max_records=max_records, max_bytes=max_bytes)

    def read_key(
        self,
        topic: str,
        key: api.Key,
        from_version: int = defaults.from_version,
        to_version: int | None = None,
        *,
        from_snapshot: bool = False,
    ) -> pa.Table:
        return self.engine.read_key(topic, key, from_version, to_version, from_snapshot=from_snapshot)

    def snapshot(self, topic: str, key: api.Key, state: bytes, *, version: int) -> None:
        self.engine.snapshot(topic, key, state, version=version)

    def key_version(self, topic: str, key: api.Key) -> int:
        return self.engine.key_version(topic, key)

    # -- views ------------------------------------------------------------------------

    def create_view(
        self,
        name: str,
        pattern: str,
        reducer: str | api.ViewFunction,
        *,
        key: str | api.ViewFunction | None = None,
        exist_ok: bool = False,
        value_format: str | None = None,
    ) -> dict[str, Any]:
        return self.node.views.create(
            name, pattern, reducer, key, exist_ok=exist_ok, value_format=value_format
        )

    def view_get(self, name: str, key: api.Key) -> bytes | None:
        return self.node.views.get(name, key)

    def view_scan(
        self, name: str, prefix: api.Key = b"", *, after: api.Key | None = None, limit: int | None = None
    ) -> pa.Table:
        return self.node.views.scan(name, prefix, after=after, limit=limit)

    def describe_view(self, name: str) -> dict[str, Any]:
        return self.node.views.describe(name)

    def list_views(self) -> list[str]:
        return self.node.views.list()

    def delete_view(self, name: str) -> None:
        self.node.views.delete(name)

    # -- consumer groups --------------------------------------------------------------

    def subscribe(
        self,
        pattern: str,
        *,
        group: str,
        start: api.Start = defaults.start,
        ack_timeout: float = defaults.ack_timeout_seconds,
        max_deliveries: int = defaults.max_deliveries,
        dead_letter_topic: str | None = None,
        max_in_flight_per_key: int | None = None,
        ordering: str = defaults.ordering,
    ) -> Consumer:
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
        return self.node.directory.describe_group(group)

    def list_groups(self) -> list[str]:
        return self.node.directory.list_groups()

    def delete_group(self, group: str) -> None:
        self.node.directory.delete_group(group)

    def reset_offsets(
        self, group: str, to: api.Start, *, topics: str | None = None, dry_run: bool = False
    ) -> list[OffsetReset]:
        return self.node.directory.reset_offsets(group, topics, to, dry_run=dry_run)

    # -- lifecycle --------------------------------------------------------------------

    def ping(self) -> None:
        if self.engine.closed:
            raise ClosedError("the client is closed")

    def close(self) -> None:
        self.node.close()

    def __enter__(self) -> EmbeddedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
