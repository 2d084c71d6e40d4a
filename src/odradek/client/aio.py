"""The asyncio client: a thin twin of a sync client (``odradek.connect_async(url)``).

There is one implementation of each call, the sync one; :class:`AsyncClient` runs it
on a thread pool of its own so the event loop never blocks, and awaits the result.
Any sync client (:class:`odradek.api.Client`: remote or embedded) can be wrapped, so
the twins cannot drift: :class:`odradek.api.AsyncClient` states the API, whose
docstrings document it, and the conformance suite runs the same tests through both.
GIL-free waiting happens in gRPC and in the engine, so the threads cost little; each
read in progress holds one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import pyarrow as pa

from odradek import api, defaults, limits
from odradek.client.remote import RemoteClient
from odradek.groups import AckResult, Delivery, DeliveryBatch, GroupInfo, OffsetReset
from odradek.groups.delivery import Settleable
from odradek.records import Records
from odradek.types import AppendResult, SchemaInfo, TopicInfo

T = TypeVar("T")


# What AsyncClient wraps: any sync client (both implement the one protocol).
SyncClient = api.Client


def connect_async(
    url: str | None = None,
    *,
    timeout: float | None = defaults.call_timeout_seconds,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    token: str | None = None,
    user: str | None = None,
    password: str | None = None,
) -> AsyncClient:
    """An asyncio client (:class:`odradek.api.AsyncClient`) of the server at ``url``.

    ``await`` on the result is optional. Connecting is lazy, as for ``connect``.

    Args:
        url: ``grpc://host:port`` (or ``host:port``); None for ``$ODRADEK_URL`` when it
            is set and not empty, else ``grpc://127.0.0.1:8815`` (as ``connect``).
        timeout: seconds every call may take, except reads, polls and appends; None
            for no bound.
        tls_ca: as ``connect``'s (``grpc+tls://``: the CA of the server's certificate).
        tls_cert: as ``connect``'s (a client certificate).
        tls_key: as ``connect``'s (the key of ``tls_cert``).
        token: as ``connect``'s (an API token or a JWT; None: ``$ODRADEK_TOKEN``).
        user: as ``connect``'s (with ``password``, instead of a token).
        password: as ``connect``'s.

    Raises:
        InvalidRequest: the URL (given or from the variable) is not a grpc:// URL.

    Example::

        async with odradek.connect_async() as client:
            await client.append("orders", [{"key": b"o-1", "value": b"{}"}])
    """
    return AsyncClient(
        RemoteClient(
            url,
            timeout=timeout,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            token=token,
            user=user,
            password=password,
        )
    )


class AsyncClient(api.AsyncClient):
    """``odradek.connect_async(url)``, or ``AsyncClient(odradek.open(path))``: every
    method of the sync API as a coroutine; ``read`` is an async iterator."""

    def __init__(self, client: SyncClient) -> None:
        self.sync = client
        self._pool = concurrent.futures.ThreadPoolExecutor(
            limits.async_client_threads_max, thread_name_prefix="odradek-async"
        )

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(function, *args, **kwargs))

    # -- topics -----------------------------------------------------------------------

    async def create_topic(
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
        return await self._call(
            self.sync.create_topic,
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

    # -- schemas ----------------------------------------------------------------------

    async def set_schema(
        self, topic: str, schema: api.Schema, *, compatibility: str | None = None
    ) -> SchemaInfo:
        return await self._call(self.sync.set_schema, topic, schema, compatibility=compatibility)

    async def get_schema(self, topic: str, version: int | None = None) -> SchemaInfo | None:
        return await self._call(self.sync.get_schema, topic, version)

    async def schema_versions(self, topic: str) -> list[SchemaInfo]:
        return await self._call(self.sync.schema_versions, topic)

    async def check_schema(
        self, topic: str, schema: api.Schema, *, compatibility: str | None = None
    ) -> list[str]:
        return await self._call(self.sync.check_schema, topic, schema, compatibility=compatibility)

    async def set_compatibility(self, topic: str, compatibility: str) -> None:
        await self._call(self.sync.set_compatibility, topic, compatibility)

    async def delete_topic(self, name: str) -> None:
        await self._call(self.sync.delete_topic, name)

    async def alter_topic(self, name: str, **settings: Any) -> TopicInfo:
        return await self._call(self.sync.alter_topic, name, **settings)

    async def list_topics(self, pattern: str | None = None) -> list[str]:
        return await self._call(self.sync.list_topics, pattern)

    async def describe_topic(self, name: str) -> TopicInfo:
        return await self._call(self.sync.describe_topic, name)

    async def unavailable_topics(self) -> dict[str, str]:
        return await self._call(self.sync.unavailable_topics)

    async def verify_topic(self, name: str) -> dict[str, Any]:
        return await self._call(self.sync.verify_topic, name)

    async def repair_topic(self, name: str, *, drop_range: api.DropRange) -> TopicInfo:
        return await self._call(functools.partial(self.sync.repair_topic, drop_range=drop_range), name)

    # -- data -------------------------------------------------------------------------

    async def append(
        self,
        topic: str,
        records: Records,
        *,
        expect: api.Expect | None = None,
        expect_offset: int | None = None,
        producer: api.Producer | None = None,
        wait_for: Sequence[str] | None = None,
        timeout: float = defaults.wait_for_timeout_seconds,
    ) -> AppendResult:
        return await self._call(
            self.sync.append,
            topic,
            records,
            expect=expect,
            expect_offset=expect_offset,
            producer=producer,
            wait_for=wait_for,
            timeout=timeout,
        )

    async def append_many(
        self, topic: str, batches: Iterable[Records], *, window: int = defaults.append_window
    ) -> list[AppendResult]:
        return await self._call(self.sync.append_many, topic, batches, window=window)

    async def read(
        self,
        pattern: str,
        *,
        start: api.Start = defaults.start,
        wait: float = defaults.read_wait_seconds,
        follow: bool = False,
        max_records: int | None = None,
        max_bytes: int | None = None,
    ) -> AsyncIterator[pa.RecordBatch]:
        stream = await self._call(
            self.sync.read,
            pattern,
            start=start,
            wait=wait,
            follow=follow,
            max_records=max_records,
            max_bytes=max_bytes,
        )
        try:
            while True:
                batch = await self._call(next, stream, None)
                if batch is None:
                    return
                yield batch
        finally:
            _close_stream(stream)

    async def fetch(
        self,
        topic: str,
        offset: int,
        *,
        max_records: int = defaults.fetch_records_max,
        max_bytes: int = defaults.fetch_bytes_max,
    ) -> list[pa.RecordBatch]:
        return await self._call(self.sync.fetch, topic, offset, max_records=max_records, max_bytes=max_bytes)

    async def read_key(
        self,
        topic: str,
        key: api.Key,
        from_version: int = defaults.from_version,
        to_version: int | None = None,
        *,
        from_snapshot: bool = False,
    ) -> pa.Table:
        return await self._call(
            self.sync.read_key, topic, key, from_version, to_version, from_snapshot=from_snapshot
        )

    async def snapshot(self, topic: str, key: api.Key, state: bytes, *, version: int) -> None:
        await self._call(self.sync.snapshot, topic, key, state, version=version)

    async def key_version(self, topic: str, key: api.Key) -> int:
        return await self._call(self.sync.key_version, topic, key)

    # -- views ------------------------------------------------------------------------

    async def create_view(
        self,
        name: str,
        pattern: str,
        reducer: str | api.ViewFunction,
        *,
        key: str | api.ViewFunction | None = None,
        exist_ok: bool = False,
        value_format: str | None = None,
    ) -> dict[str, Any]:
        return await self._call(
            self.sync.create_view,
            name,
            pattern,
            reducer,
            key=key,
            exist_ok=exist_ok,
            value_format=value_format,
        )

    async def view_get(self, name: str, key: api.Key) -> bytes | None:
        return await self._call(self.sync.view_get, name, key)

    async def view_scan(
        self, name: str, prefix: api.Key = b"", *, after: api.Key | None = None, limit: int | None = None
    ) -> pa.Table:
        return await self._call(self.sync.view_scan, name, prefix, after=after, limit=limit)

    async def describe_view(self, name: str) -> dict[str, Any]:
        return await self._call(self.sync.describe_view, name)

    async def list_views(self) -> list[str]:
        return await self._call(self.sync.list_views)

    async def delete_view(self, name: str) -> None:
        await self._call(self.sync.delete_view, name)

    # -- consumer groups --------------------------------------------------------------

    async def subscribe(
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
    ) -> AsyncConsumer:
        consumer = await self._call(
            self.sync.subscribe,
            pattern,
            group=group,
            start=start,
            ack_timeout=ack_timeout,
            max_deliveries=max_deliveries,
            dead_letter_topic=dead_letter_topic,
            max_in_flight_per_key=max_in_flight_per_key,
            ordering=ordering,
        )
        return AsyncConsumer(consumer, self)

    async def describe_group(self, group: str) -> GroupInfo:
        return await self._call(self.sync.describe_group, group)

    async def list_groups(self) -> list[str]:
        return await self._call(self.sync.list_groups)

    async def delete_group(self, group: str) -> None:
        await self._call(self.sync.delete_group, group)

    async def reset_offsets(
        self, group: str, to: api.Start, *, topics: str | None = None, dry_run: bool = False
    ) -> list[OffsetReset]:
        return await self._call(self.sync.reset_offsets, group, to, topics=topics, dry_run=dry_run)

    async def ping(self) -> None:
        await self._call(self.sync.ping)

    # -- lifecycle --------------------------------------------------------------------

    async def close(self) -> None:
        await self._call(self.sync.close)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __await__(self) -> Generator[Any, None, AsyncClient]:
        """``client = await odradek.connect_async(url)`` works as well as without await."""
        if False:  # pragma: no cover - makes this a generator
            yield
        return self


class AsyncConsumer:
    """A consumer-group member as coroutines: the sync consumer's calls, run on the
    client's thread pool."""

    def __init__(self, consumer: api.Consumer, client: AsyncClient) -> None:
        self.sync = consumer
        self._client = client

    @property
    def member_id(self) -> str:
        return self.sync.member_id

    @property
    def group(self) -> str:
        return self.sync.group

    @property
    def pattern(self) -> str:
        return self.sync.pattern

    async def poll(
        self, max_records: int = defaults.poll_records, timeout: float = defaults.poll_timeout_seconds
    ) -> list[Delivery]:
        return await self._client._call(self.sync.poll, max_records, timeout)

    async def poll_batches(
        self, max_records: int = defaults.poll_records, timeout: float = defaults.poll_timeout_seconds
    ) -> list[DeliveryBatch]:
        return await self._client._call(self.sync.poll_batches, max_records, timeout)

    async def ack(self, deliveries: Settleable) -> AckResult:
        return await self._client._call(self.sync.ack, deliveries)

    async def nack(self, deliveries: Settleable, delay: float = defaults.nack_delay_seconds) -> AckResult:
        return await self._client._call(self.sync.nack, deliveries, delay)

    async def describe(self) -> GroupInfo:
        return await self._client._call(self.sync.describe)

    async def close(self, *, failed: bool = False) -> None:
        await self._client._call(self.sync.close, failed=failed)

    async def __aenter__(self) -> AsyncConsumer:
        return self

    async def __aexit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        await self.close(failed=isinstance(error, Exception))


def _close_stream(stream: Iterator[pa.RecordBatch]) -> None:
    """Cancel a read left early. A remote ReadStream cancels from any thread; an
    embedded generator still running in a worker ends at its next wake-up instead."""
    close = getattr(stream, "close", None)
    if close is None:
        return
    try:
        close()
    except ValueError:  # "generator already executing" in the worker thread
        pass
