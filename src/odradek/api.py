"""The public API of Odradek, defined once: what every client does.

:class:`Client` is the API of the synchronous clients, :class:`AsyncClient` of the
asyncio one; :class:`Consumer` and :class:`AsyncConsumer` are what ``subscribe``
returns. The classes that implement them::

    Client         odradek.open(path)          -> odradek.EmbeddedClient   (in-process)
                   odradek.connect(url)        -> odradek.RemoteClient     (Arrow Flight)
    AsyncClient    odradek.connect_async(url)  -> odradek.AsyncClient      (either, on threads)
    Consumer       EmbeddedClient.subscribe    -> odradek.client.consumer.Consumer
                   RemoteClient.subscribe      -> odradek.client.remote_consumer.RemoteConsumer
    AsyncConsumer  AsyncClient.subscribe       -> odradek.client.aio.AsyncConsumer

The clients subclass these protocols, so ``mypy --strict`` checks each of their
signatures against the ones here (and refuses to instantiate a client that lacks a
method); ``tests/test_api.py`` checks that no client has a public method the protocol
does not, and that every default is the protocol's (all come from
:mod:`odradek.defaults`). The docstrings here are the reference: ``help()`` shows them
for every client's methods, and ``scripts/api_reference.py`` writes them to docs/api.md.
Decision 0010 says why a protocol and not one client over two transports.

The types below document what a parameter takes; every client still checks its
arguments at run time and refuses anything else with ``InvalidRequest``.
"""

from __future__ import annotations

import datetime
import types
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeAlias

import pyarrow as pa

from odradek import defaults
from odradek.records import Records

if TYPE_CHECKING:
    from odradek.groups.delivery import AckResult, Delivery, DeliveryBatch, Settleable
    from odradek.groups.info import GroupInfo, OffsetReset
    from odradek.types import AppendResult, SchemaInfo, TopicInfo

__all__ = [
    "AsyncClient",
    "AsyncConsumer",
    "BatchStream",
    "Client",
    "Consumer",
    "DropRange",
    "Duration",
    "Expect",
    "Key",
    "Producer",
    "ProducerId",
    "Records",
    "Schema",
    "Size",
    "Start",
    "ViewFunction",
]

# -- the types of parameters ------------------------------------------------------------

Key: TypeAlias = bytes | str
"""A record key: bytes, or a str (its UTF-8 encoding)."""

Start: TypeAlias = str | int | datetime.datetime
"""Where a read or a new consumer group begins: ``"earliest"``, ``"latest"``, an offset
(int >= 0), a ``datetime`` (the first record at or after it; naive means UTC) or an
ISO-8601 timestamp string."""

Duration: TypeAlias = str | int | float | None
"""A length of time: ``"7d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"500ms"``, ``"2w"`` or a
number of seconds; ``None``, ``"forever"`` or ``-1`` mean no limit."""

Size: TypeAlias = str | int | None
"""A number of bytes: ``"10GiB"``, ``"512MB"``, ``"64k"`` or an int; ``None`` or ``-1``
mean no limit (``segment_bytes``: the default size)."""

Schema: TypeAlias = Mapping[str, Any] | pa.Schema | str | bytes
"""A topic's value schema: a JSON Schema or Avro schema as a dict (or its JSON text),
or a ``pyarrow.Schema``."""

Expect: TypeAlias = Mapping[bytes, int] | Mapping[str, int] | Mapping[bytes | str, int]
"""``{key: version}``: the version each key must have for an append to be written
(0: the key has no records yet)."""

ProducerId: TypeAlias = str | int | bytes
"""An idempotent producer's id: a str (1 to 256 characters, not starting with NUL), an
int (the same producer as its decimal text) or bytes (1 to 256 bytes, never the same
producer as any str)."""

Producer: TypeAlias = tuple[ProducerId, int]
"""``(producer_id, sequence)`` of an idempotent append; sequences start anywhere and go
up by one per append."""

DropRange: TypeAlias = tuple[int, int] | Sequence[tuple[int, int]]
"""``(first, last)`` offsets, inclusive, or a list of them."""

ViewFunction: TypeAlias = Callable[..., Any]
"""A view's reducer or key function given as a function (embedded client only): one
defined at the top level of an importable module, stored as its import path."""


class BatchStream(Protocol):
    """The batches of a read, as they arrive: an iterator of ``pyarrow.RecordBatch``
    that ``close()`` stops early (a remote read is cancelled on the server)."""

    def __iter__(self) -> Iterator[pa.RecordBatch]: ...

    def __next__(self) -> pa.RecordBatch: ...

    def close(self) -> None: ...


# -- the synchronous client -------------------------------------------------------------


class Client(Protocol):
    """A client of Odradek: ``odradek.open(path)`` (embedded) or ``odradek.connect(url)``
    (a server), with the same methods, answers and errors. Thread-safe: share one
    client between threads. Close it (or use it in a ``with`` block) when done.

    Every error is an ``odradek.OdradekError``; those listed under *Raises* are the ones
    a caller may want to handle. Any call may also raise ``ClosedError`` (the client
    was closed), and a remote client ``Unavailable`` (the server cannot be reached or
    is shutting down: retry) and ``StorageError`` (the server's disk refused).
    """

    # -- topics -----------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        *,
        retention: Duration = defaults.retention,
        retention_bytes: Size = defaults.retention_bytes,
        segment_bytes: Size = defaults.segment_bytes,
        segment_age: Duration = defaults.segment_age,
        cleanup: str = defaults.cleanup,
        delete_retention: Duration = defaults.delete_retention,
        min_compaction_lag: Duration = defaults.min_compaction_lag,
        min_cleanable_dirty_ratio: float = defaults.min_cleanable_dirty_ratio,
        exist_ok: bool = False,
        schema: Schema | None = None,
        compatibility: str = defaults.compatibility,
        reducer: str | None = None,
        snapshot_every: int = defaults.snapshot_every,
    ) -> TopicInfo:
        """Create a topic: one ordered log with dense offsets from 0.

        Args:
            name: segments of ``[A-Za-z0-9_-]+`` joined by ``.`` (``orders.eu.created``),
                at most 249 characters; names starting with ``_`` are the system's.
            retention: how long records are kept (a Duration); whole segments older than
                this are removed.
            retention_bytes: how many bytes of records are kept at most (a Size); the
                oldest whole segments go first.
            segment_bytes: the size at which a segment file rolls (64 KiB to 4 GiB).
            segment_age: the age at which the active segment rolls, so that retention
                can remove the records of a quiet topic.
            cleanup: ``"delete"`` (retention removes whole segments), ``"compact"``
                (a background compactor keeps only the latest record of each key in
                sealed segments; a record with a null value is a tombstone that
                deletes its key; keyless appends are refused) or ``"compact,delete"``
                (both). Offsets keep their gaps and versions stay per key.
                ``"snapshot"``: the compactor drops, from sealed segments, the events
                that their key's latest snapshot covers (see ``snapshot``); the others
                stay, keyless ones too.
            delete_retention: how long a compacted topic keeps a tombstone once its
                segment was compacted (default one day; 0: at the next compaction).
            min_compaction_lag: records younger than this are never compacted away
                (default 0).
            min_cleanable_dirty_ratio: compaction starts once this share (0 to 1) of
                the sealed bytes was never compacted (default 0.5).
            exist_ok: if the topic exists already, return its description instead of
                raising TopicExists (its settings are left as they are).
            schema: a value schema (JSON Schema, Avro or Arrow): every append is
                validated against it and values are stored as typed columns.
            compatibility: the mode later schema versions must satisfy: ``backward``,
                ``backward_transitive``, ``forward``, ``forward_transitive``, ``full``,
                ``full_transitive`` or ``none`` (any case).
            reducer: a function ``f(state: bytes | None, record: dict) -> bytes | None``
                the server runs in the background to snapshot each key (see
                ``snapshot``): an import path ``"package.module:function"`` or the name
                of an ``odradek.reducers`` entry point, importable on the server; None
                for none. ``record["value"]`` is bytes, or on a topic with a schema the
                typed value (a dict for a record schema) as ``read_key`` returns it.
            snapshot_every: with a reducer, a key is snapshotted each time its version
                crosses a multiple of this (1 to 1,000,000,000; default 1,000).

        Returns:
            The new topic's description (``snapshots`` reports the reducer's progress
            and failures).

        Raises:
            TopicExists: the topic exists (and ``exist_ok`` is false), or it exists but
                cannot be opened (delete it first).
            InvalidRequest: a bad name, setting or mode, or the server's topic limit.
            InvalidSchema: the schema cannot be read or stored as columns.

        Example::

            client.create_topic("orders.eu.created", retention="30d", exist_ok=True)
        """

    def alter_topic(self, name: str, **settings: Any) -> TopicInfo:
        """Change a topic's retention, segment and cleanup settings; the others are kept.

        Args:
            name: the topic.
            settings: ``create_topic``'s names and forms, at least one: ``retention``,
                ``retention_bytes``, ``segment_bytes``, ``segment_age``, ``cleanup``,
                ``delete_retention``, ``min_compaction_lag``, ``min_cleanable_dirty_ratio``.

        Returns:
            The topic's description with its new settings.

        Raises:
            TopicNotFound: there is no such topic.
            InvalidRequest: an unknown setting or a value out of range; nothing changed.
        """

    def delete_topic(self, name: str) -> None:
        """Delete a topic and all its records (also one whose files cannot be opened).

        Args:
            name: the topic.

        Raises:
            TopicNotFound: there is no such topic.
        """

    def list_topics(self, pattern: str | None = None) -> list[str]:
        """The names of the topics, sorted.

        Args:
            pattern: only names that match it: a topic name, ``*`` for one segment,
                ``>`` for one or more trailing segments (``orders.*.created``,
                ``orders.>``); None lists every topic.

        Raises:
            InvalidRequest: the pattern is not valid.
        """

    def describe_topic(self, name: str) -> TopicInfo:
        """A topic's offsets, size, keys, settings, schema and health.

        ``first_offset`` is the oldest offset retention kept, ``next_offset`` the one the
        next append gets; ``status`` is ``"ok"``, ``"damaged"`` (some offsets cannot be
        read) or ``"read-only"`` (see ``repair_topic``).

        Args:
            name: the topic.

        Raises:
            TopicNotFound: there is no such topic.
            DataDamaged: the topic's files exist but it cannot be opened.
        """

    def unavailable_topics(self) -> dict[str, str]:
        """Topics whose files exist but cannot be opened, each with the reason.

        Such topics are left out of ``list_topics``; ``delete_topic`` removes them.
        """

    def verify_topic(self, name: str) -> dict[str, Any]:
        """Check every frame and derived file of a topic against its checksums, online.

        Args:
            name: the topic.

        Returns:
            ``{"topic", "segments", "frames", "bytes", "damaged": [...], "problems":
            [...], "ok"}``: ``damaged`` lists offset ranges whose records are lost or
            unreadable (each with ``accepted`` once ``repair_topic`` accepted it),
            ``problems`` derived files that are rebuilt from the log at the next open.

        Raises:
            TopicNotFound: there is no such topic.
        """

    def repair_topic(self, name: str, *, drop_range: DropRange) -> TopicInfo:
        """Accept the loss of damaged offsets, so that a read-only topic takes appends again.

        Reads skip damaged offsets already. A topic whose key versions were rebuilt
        across damage refuses appends until an operator accepts the loss; new records
        then get offsets after everything it ever acknowledged.

        Args:
            name: the topic.
            drop_range: ``(first, last)`` offsets (inclusive), or a list of them; each
                range must cover damaged offsets only.

        Raises:
            TopicNotFound: there is no such topic.
            InvalidRequest: a range is malformed or covers intact records.
        """

    # -- schemas ----------------------------------------------------------------------

    def set_schema(self, topic: str, schema: Schema, *, compatibility: str | None = None) -> SchemaInfo:
        """Add a version to a topic's schema, or give a topic without records its first one.

        The new version must be compatible with the current one (with every version in
        a ``*_transitive`` mode). The same schema as the newest version adds nothing.

        Args:
            topic: the topic.
            schema: the new version (JSON Schema, Avro or Arrow).
            compatibility: the mode to check with, which becomes the topic's mode; None
                keeps the topic's mode (``backward`` for a first schema).

        Returns:
            The newest version after the change.

        Raises:
            TopicNotFound: there is no such topic.
            IncompatibleSchema: the version breaks the mode; ``.problems`` lists what
                breaks, and the topic keeps its schema.
            InvalidSchema: the schema cannot be read or stored as columns.
            InvalidRequest: the topic holds records without a schema, or a bad mode.

        Example::

            client.set_schema("payments", newer, compatibility="backward")
        """

    def get_schema(self, topic: str, version: int | None = None) -> SchemaInfo | None:
        """One version of a topic's schema.

        Args:
            topic: the topic.
            version: the version (1, 2, ...); None for the newest.

        Returns:
            The version, or None if the topic has no schema (and no version was asked).

        Raises:
            TopicNotFound: there is no such topic.
            InvalidRequest: the topic has no such version.
        """

    def schema_versions(self, topic: str) -> list[SchemaInfo]:
        """Every version of a topic's schema, oldest first ([] without a schema).

        Args:
            topic: the topic.

        Raises:
            TopicNotFound: there is no such topic.
        """

    def check_schema(self, topic: str, schema: Schema, *, compatibility: str | None = None) -> list[str]:
        """What would make ``set_schema`` refuse a schema, without changing anything.

        Args:
            topic: the topic.
            schema: the candidate version.
            compatibility: the mode to check with; None for the topic's mode.

        Returns:
            The problems, each a readable sentence; ``[]`` if the schema would be accepted
            (or the topic has no schema yet).

        Raises:
            TopicNotFound: there is no such topic.
            InvalidSchema: the schema cannot be read or stored as columns.
        """

    def set_compatibility(self, topic: str, compatibility: str) -> None:
        """Set the compatibility mode a topic's next schema versions must satisfy.

        Args:
            topic: the topic, which must have a schema.
            compatibility: the mode (see ``create_topic``); there is no default: a
                missing or unknown mode is refused, never read as ``none``.

        Raises:
            TopicNotFound: there is no such topic.
            InvalidRequest: an unknown mode, or the topic has no schema.
        """

    # -- data -------------------------------------------------------------------------

    def append(
        self,
        topic: str,
        records: Records,
        *,
        expect: Expect | None = None,
        expect_offset: int | None = None,
        producer: Producer | None = None,
        wait_for: Sequence[str] | None = None,
        timeout: float = defaults.wait_for_timeout_seconds,
    ) -> AppendResult:
        """Append records atomically: all of them are written, or none.

        Returns once the records are durable (fsync'd). Each record gets the next
        offset; each keyed record also the next version of its key (1, 2, 3...).

        Args:
            topic: the topic.
            records: a list of dicts, a ``pyarrow.RecordBatch`` or a ``pyarrow.Table``
                with ``key`` (bytes or None), ``value`` (bytes; a dict or typed column
                for a schema'd topic), ``headers`` (str to bytes) and ``timestamp``
                (a datetime or int microseconds; the server's time when absent).
            expect: ``{key: version}`` each key must be at (0: no records yet);
                if one is not, nothing is written.
            expect_offset: the offset the append must start at (the topic's next
                offset); if it does not, nothing is written.
            producer: ``(producer_id, sequence)``: a retry of one of the producer's last
                five appends returns the original result (``duplicate=True``) instead
                of writing again, also after a restart.
            wait_for: synchronous commit: ``["group:NAME", "view:NAME"]``; the append
                returns only once each named consumer group has acked the records (its
                committed offset is past them) and each named view has applied them,
                so a ``view_get`` after it sees them. Each must exist and read the
                topic, or nothing is written.
            timeout: seconds to wait for ``wait_for`` (at most 300).

        Returns:
            The first offset, the count and ``{key: new version}`` of the append.

        Raises:
            TopicNotFound: there is no such topic.
            ConflictError: an expectation failed (``.key``, ``.expected``, ``.actual``).
            SequenceError: the producer's sequence skipped ahead or is older than
                what is remembered (``.expected``, ``.actual``).
            SchemaViolation: a value does not conform to the topic's schema
                (``.index``, ``.path``).
            RequestTooLarge: the append is over the size limit (64 MiB by default).
            WaitTimeout: the records are durable, but waiters of ``wait_for`` did not
                process them in ``timeout`` or cannot (a view stopped on an error):
                ``.pending`` names them, ``.result`` is the append's result.
            ViewNotFound: ``wait_for`` names a view that does not exist.
            InvalidRequest: malformed records or options, or ``wait_for`` names a
                group that does not exist, or a waiter that does not read the topic.

        Example::

            client.append("orders", [{"key": b"order-1", "value": b"{}"}], expect={b"order-1": 0})
            client.append("orders", records, wait_for=["view:orders_by_customer"], timeout=5.0)
        """

    def append_many(
        self, topic: str, batches: Iterable[Records], *, window: int = defaults.append_window
    ) -> list[AppendResult]:
        """Append several batches in order, each atomic on its own, pipelined.

        The next batches are written while the previous ones are being fsync'd, which
        is the fastest way to load a stream of batches. If one is refused, those before
        it are written (their results are lost with the error), none after it is, and
        its error is raised.

        Args:
            topic: the topic.
            batches: any iterable of what ``append`` takes as records.
            window: batches written ahead of the oldest one's acknowledgement (>= 1).

        Returns:
            One result per batch, in order.

        Raises:
            TopicNotFound: there is no such topic.
            InvalidRequest: a malformed batch or window (see ``append`` for the rest).
        """

    def read(
        self,
        pattern: str,
        *,
        start: Start = defaults.start,
        wait: float = defaults.read_wait_seconds,
        follow: bool = False,
        max_records: int | None = None,
        max_bytes: int | None = None,
    ) -> BatchStream:
        """Read the records of a topic, or of every topic that matches a pattern.

        Yields Arrow record batches (``pyarrow.RecordBatch``) with ``offset``, ``key``,
        ``value``, ``headers``, ``timestamp`` and ``version`` (and ``topic`` for a
        pattern with wildcards). A schema'd topic's ``value`` is a typed struct column when one
        topic is read, and JSON text across several. A wildcard read picks up topics
        created while it runs. Close the stream to stop early.

        Args:
            pattern: a topic name, or a pattern with ``*`` (one segment) and ``>`` (one
                or more trailing segments).
            start: where to begin (a Start); for a pattern, in every matching topic.
            wait: once caught up, end after this many seconds with nothing new (at
                most 300).
            follow: never end; wait for new records forever.
            max_records: records per batch at most (default 100,000).
            max_bytes: bytes per batch at most, roughly (default 16 MiB).

        Raises:
            TopicNotFound: the topic (not a pattern) does not exist, or was deleted
                during the read.
            OffsetOutOfRange: ``start`` is below the first or past the next offset.
            InvalidRequest: a bad pattern, start, wait or limit.

        Example::

            for batch in client.read("orders.>", start="earliest", wait=0.5):
                print(batch.to_pydict())
        """

    def fetch(
        self,
        topic: str,
        offset: int,
        *,
        max_records: int = defaults.fetch_records_max,
        max_bytes: int = defaults.fetch_bytes_max,
    ) -> list[pa.RecordBatch]:
        """One read of a topic from an offset, without waiting (the records there now).

        Args:
            topic: the topic.
            offset: the first offset to return.
            max_records: records at most.
            max_bytes: bytes at most, roughly (at least one record is returned).

        Returns:
            The batches, possibly none (at the end of the topic).

        Raises:
            TopicNotFound: there is no such topic.
            OffsetOutOfRange: ``offset`` is below the first or past the next offset.
            InvalidRequest: a bad limit.
        """

    def read_key(
        self,
        topic: str,
        key: Key,
        from_version: int = defaults.from_version,
        to_version: int | None = None,
        *,
        from_snapshot: bool = False,
    ) -> pa.Table:
        """The records of one key, in version order: the key's stream.

        Costs the key's records, not a scan of the topic. On a topic with
        ``cleanup="snapshot"`` the events a snapshot covered may be gone: the stream
        then starts at the first version kept.

        Args:
            topic: the topic.
            key: the key.
            from_version: the first version to return (>= 1).
            to_version: the last version to return (inclusive); None for the newest.
            from_snapshot: start at the key's latest snapshot (see ``snapshot``): its
                first row is the snapshot (``value`` its state, ``version`` the version
                it covers, ``offset`` that version's offset or null if unknown), the
                rows after it the events of the later versions; every row has a
                ``snapshot`` column (True for the snapshot). On a topic with a schema
                ``value`` is typed, so the state is in a ``state`` column (binary, after
                ``snapshot``; null on the events) and the snapshot row's ``value`` is
                null. Without a snapshot, the key's whole stream with ``snapshot``
                False. Leave ``from_version`` and ``to_version`` out with it.

        Returns:
            A table with the columns of ``read`` (no rows if the key has none), and
            ``snapshot`` with ``from_snapshot`` (and ``state`` on a topic with a
            schema).

        Raises:
            TopicNotFound: there is no such topic.
            InvalidRequest: a bad key or version.

        Example::

            events = client.read_key("accounts", b"acct-7").to_pylist()
            rows = client.read_key("accounts", b"acct-7", from_snapshot=True).to_pylist()
        """

    def snapshot(self, topic: str, key: Key, state: bytes, *, version: int) -> None:
        """Store the state of a key as of one of its versions, so that a replay of the
        key can start there (``read_key(..., from_snapshot=True)``).

        Returns once the snapshot is durable; the events it covers are durable before
        it. A key keeps its latest snapshot (older ones are compacted away).

        Args:
            topic: the topic (with or without a schema: the state is bytes either way).
            key: the key.
            state: the key's state as of ``version``, in any encoding the caller folds
                (at most 512 KiB).
            version: the key's version the state covers: from 1 to the key's current
                version, and at least the version of its latest snapshot (the same
                version replaces it).

        Raises:
            TopicNotFound: there is no such topic.
            ConflictError: the key has a snapshot of a later version (``.key``;
                ``.expected`` the version given, ``.actual`` the latest snapshot's).
            RequestTooLarge: the state is over 512 KiB.
            InvalidRequest: a bad key, state or version (above the key's current
                version).

        Example::

            client.snapshot("accounts", b"acct-7", b'{"balance": 40}', version=1200)
        """

    def key_version(self, topic: str, key: Key) -> int:
        """A key's current version: the number of records it has had (0 if none).

        Args:
            topic: the topic.
            key: the key.

        Raises:
            TopicNotFound: there is no such topic.
            InvalidRequest: a bad key.
        """

    # -- views ------------------------------------------------------------------------

    def create_view(
        self,
        name: str,
        pattern: str,
        reducer: str | ViewFunction,
        *,
        key: str | ViewFunction | None = None,
        exist_ok: bool = False,
        value_format: str | None = None,
    ) -> dict[str, Any]:
        """Define a materialized key view: a key -> state table the server keeps up to
        date from the log, at least once, from the first record of every topic the
        pattern matches (topics created later included).

        For each record, in offset order per topic, the server calls
        ``reducer(state, record)``: ``state`` is the key's state (bytes, None for a new
        key), ``record`` a dict with ``topic``, ``offset``, ``key``, ``value``,
        ``headers``, ``timestamp`` (microseconds) and ``version``; it returns the new
        state (bytes) or None to delete the key. A reducer that raises stops the view
        at that record (``describe_view`` says why); appends are never held back. On a
        topic with a schema, ``value`` is the typed value (a dict for a record schema,
        as ``read_key`` returns it), or its JSON text with ``value_format="json"``.

        Args:
            name: the view's name (topic name rules).
            pattern: the topics it reads: a name or a pattern (``orders.>``).
            reducer: an import path ``"package.module:function"`` the server can import;
                the embedded client also takes a function defined at the top level of
                an importable module (stored as its path).
            key: the view key of a record, as ``key(record) -> bytes | None`` (None:
                the record is skipped), by import path or function as ``reducer``;
                None uses the record's key (keyless records are skipped).
            exist_ok: if a view of that name exists with the same pattern, reducer and
                key (and value_format, when given), return its description instead of
                refusing.
            value_format: how a schema'd topic's values reach the reducer and the key
                function: ``"typed"`` (None: the default for a new view) or ``"json"``
                (JSON text, as every view got them before views had the choice; a view
                defined then keeps it). Values of topics without a schema are bytes
                either way.

        Returns:
            The view's description (see ``describe_view``).

        Raises:
            InvalidRequest: a bad name or pattern, a reducer that cannot be imported
                (or stored), a view of that name exists, or the node's view limit.

        Example::

            client.create_view("balances", "payments.>", "myapp.reducers:balance")
        """

    def view_get(self, name: str, key: Key) -> bytes | None:
        """A key's state in a view, as applied so far (None if it has none).

        Args:
            name: the view.
            key: the view key.

        Raises:
            ViewNotFound: there is no such view.
            InvalidRequest: a bad key.
        """

    def view_scan(
        self, name: str, prefix: Key = b"", *, after: Key | None = None, limit: int | None = None
    ) -> pa.Table:
        """The keys of a view that start with ``prefix``, in key order, with their states.

        Args:
            name: the view.
            prefix: the start every key returned has (``b""``: every key).
            after: only keys after this one: the last key of the previous page.
            limit: rows at most (1 to 100,000; None for 100,000).

        Returns:
            A table with columns ``key`` and ``state`` (binary).

        Raises:
            ViewNotFound: there is no such view.
            InvalidRequest: a bad prefix or limit.
        """

    def describe_view(self, name: str) -> dict[str, Any]:
        """A view's definition and progress.

        Args:
            name: the view.

        Returns:
            ``{"name", "pattern", "reducer", "key", "created_at", "status"
            ("running", "failed" or "stopped"), "error" (why it stopped, or None),
            "offsets" ({topic: next offset to apply}), "lag" ({topic: records not yet
            applied}), "keys", "bytes", "applied"}``.

        Raises:
            ViewNotFound: there is no such view.
        """

    def list_views(self) -> list[str]:
        """The names of the views, sorted."""

    def delete_view(self, name: str) -> None:
        """Delete a view and its table (appends waiting for it stop waiting).

        Args:
            name: the view.

        Raises:
            ViewNotFound: there is no such view.
        """

    # -- consumer groups --------------------------------------------------------------

    def subscribe(
        self,
        pattern: str,
        *,
        group: str,
        start: Start = defaults.start,
        ack_timeout: float = defaults.ack_timeout_seconds,
        max_deliveries: int = defaults.max_deliveries,
        dead_letter_topic: str | None = None,
        max_in_flight_per_key: int | None = None,
        ordering: str = defaults.ordering,
    ) -> Consumer:
        """Join a consumer group reading the topics of ``pattern``.

        Records are shared among the group's members. The options belong to the group:
        the first member to join an empty group sets them, and a member joining a group
        with members must ask for the same ones (``start`` excepted).

        Args:
            pattern: a topic name or pattern (topics created later that match are read
                from their first record).
            group: the group's name (topic name rules; at most 245 characters).
            start: where a new group begins (a Start); an existing group continues
                where it left off.
            ack_timeout: seconds a delivery may stay unsettled before it is delivered
                again; also how long a member may be silent (no poll, ack or nack)
                before it leaves the group (at most 3,600).
            max_deliveries: deliveries of one record before it goes to the dead-letter
                topic (1 to 1,000).
            dead_letter_topic: where records go after ``max_deliveries``; None for
                ``dlq.<group>``.
            max_in_flight_per_key: records of one key (of one topic with
                ``ordering="topic"``) delivered and unsettled at once, always to the
                same member; None for 1 (a whole window with ``ordering="topic"``).
            ordering: ``"key"``: each key's records in version order, keys in parallel
                over all members; ``"topic"``: each topic in offset order to one active
                member at a time; ``"none"``: every record independent, as a work queue.

        Returns:
            The member; close it (or use it in a ``with`` block) to leave the group.

        Raises:
            InvalidRequest: a bad name, pattern or option, or options that differ from
                those of the group's members.

        Example::

            with client.subscribe("orders.>", group="billing") as consumer:
                for delivery in consumer.poll(max_records=100, timeout=1.0):
                    ...
                    consumer.ack(delivery)
        """

    def describe_group(self, group: str) -> GroupInfo:
        """A group of either kind (``odradek``, or ``kafka``: joined through the Kafka
        door), with its members, its options and its lag per topic.

        Args:
            group: the group's name.

        Raises:
            InvalidRequest: there is no such group, or a bad name.
        """

    def list_groups(self) -> list[str]:
        """The names of every consumer group, of both kinds, sorted."""

    def delete_group(self, group: str) -> None:
        """Forget a group of either kind and its progress.

        Args:
            group: the group's name.

        Raises:
            InvalidRequest: there is no such group, or it has members.
        """

    def reset_offsets(
        self, group: str, to: Start, *, topics: str | None = None, dry_run: bool = False
    ) -> list[OffsetReset]:
        """Move a group's committed offsets, as Kafka's ``kafka-consumer-groups
        --reset-offsets`` does, for a group of either kind: its next member starts there.

        Args:
            group: the group's name; it must have no members (stop its consumers first).
            to: ``"earliest"``, ``"latest"``, an offset (moved into the topic's range)
                or a ``datetime`` / ISO-8601 text (the first record at or after it).
            topics: a topic pattern: an ``odradek`` group resets those of its own
                pattern that match, a ``kafka`` group every Kafka partition of each
                matching topic. None: every topic the group reads (an ``odradek``
                group's pattern) or has committed offsets in (a ``kafka`` group).
            dry_run: only compute the plan; change nothing.

        Returns:
            The plan, one row per topic (per Kafka partition of a ``kafka`` group): its
            ``topic``, ``partition`` (None for an ``odradek`` group), ``old`` committed
            offset (None if there was none) and ``new`` one. Applied whole, or not at all.

        Raises:
            InvalidRequest: no such group, it has members, a bad target or pattern, or no
                topic matches.

        Example::

            plan = client.reset_offsets("billing", "earliest", topics="orders.>", dry_run=True)
        """

    # -- lifecycle --------------------------------------------------------------------

    def ping(self) -> None:
        """Check that the client can be used: a remote client asks its server.

        Raises:
            Unavailable: the server does not answer.
            ClosedError: the client is closed.
        """

    def close(self) -> None:
        """Release the client: an embedded one closes its data directory, a remote one
        its connection (leaving its consumers' groups). Closing twice is harmless."""

    def __enter__(self) -> Self:
        """``with odradek.open(path) as client:`` closes the client at the end."""

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        """Close the client."""


class Consumer(Protocol):
    """A member of a consumer group, as ``Client.subscribe`` returns it. Thread-safe;
    usually one per thread.

    Leaving cleanly (``close()``, or a ``with`` block left normally) gives the
    deliveries it holds back to the group without counting an attempt. A ``with``
    block left by an exception, or ``close(failed=True)``, counts one attempt each: the
    consumer may have died of one of them, which must reach the dead-letter topic
    after ``max_deliveries``.
    """

    @property
    def group(self) -> str:
        """The group's name."""

    @property
    def pattern(self) -> str:
        """The topic pattern the group reads."""

    @property
    def member_id(self) -> str:
        """This member's id in the group (it changes if the group dropped the member
        for silence and it joined again)."""

    def poll(
        self, max_records: int = defaults.poll_records, timeout: float = defaults.poll_timeout_seconds
    ) -> list[Delivery]:
        """The next deliveries: records of the group's topics handed to this member.

        With ``ordering="key"`` records of one key come in version order, never more
        than ``max_in_flight_per_key`` at once: ack (or nack) a delivery to get the
        next record of its key. Each ``Delivery`` has ``topic``, ``offset``, ``key``,
        ``value``, ``headers``, ``timestamp``, ``version`` and ``attempt`` (1 on the
        first delivery).

        Args:
            max_records: deliveries at most (1 to 100,000).
            timeout: seconds to wait for the first delivery (at most 300); 0 returns at
                once.

        Returns:
            The deliveries, possibly none.

        Raises:
            ClosedError: the consumer is closed.
            InvalidRequest: a bad limit or timeout.
        """

    def poll_batches(
        self, max_records: int = defaults.poll_records, timeout: float = defaults.poll_timeout_seconds
    ) -> list[DeliveryBatch]:
        """Like ``poll``, as Arrow record batches, one per topic: the fast way to take
        many records. Each batch can be acked as a whole.

        Args:
            max_records: deliveries at most (1 to 100,000).
            timeout: seconds to wait for the first delivery (at most 300).

        Raises:
            ClosedError: the consumer is closed.
            InvalidRequest: a bad limit or timeout.
        """

    def ack(self, deliveries: Settleable) -> AckResult:
        """Settle deliveries: the records are done for the group.

        Args:
            deliveries: one ``Delivery``, a ``DeliveryBatch``, or any number of them.

        Returns:
            How many were settled, and each delivery that was not with the reason:
            ``"done"`` (already settled), ``"stale"`` (delivered again since, e.g. after
            its ack timeout: only the newer delivery settles it) or ``"unknown"``.

        Raises:
            ClosedError: the consumer is closed.
            InvalidRequest: something that is not a delivery.
        """

    def nack(self, deliveries: Settleable, delay: float = defaults.nack_delay_seconds) -> AckResult:
        """Give deliveries back: each is delivered again after ``delay`` (before any later
        record of its key), or goes to the dead-letter topic after ``max_deliveries``.

        Args:
            deliveries: one ``Delivery``, a ``DeliveryBatch``, or any number of them.
            delay: seconds before the records are delivered again (at most a day).

        Returns:
            As for ``ack``.

        Raises:
            ClosedError: the consumer is closed.
            InvalidRequest: something that is not a delivery, or a bad delay.
        """

    def describe(self) -> GroupInfo:
        """The group this member belongs to (``Client.describe_group``)."""

    def close(self, *, failed: bool = False) -> None:
        """Leave the group: the deliveries this member holds go back to it at once.

        Args:
            failed: count an attempt for each of them (the consumer could not process
                them); a clean leave counts none.
        """

    def __enter__(self) -> Self:
        """``with client.subscribe(...) as consumer:`` leaves the group at the end."""

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        """Leave the group, failed if the block raised an ``Exception``."""


# -- asyncio ------------------------------------------------------------------------------


class AsyncClient(Protocol):
    """The API of :class:`Client` as coroutines, for asyncio: ``odradek.connect_async(url)``,
    or ``odradek.AsyncClient(client)`` around any client. ``read`` is an async
    iterator. Parameters, defaults, results and errors are those of :class:`Client`."""

    async def create_topic(
        self,
        name: str,
        *,
        retention: Duration = defaults.retention,
        retention_bytes: Size = defaults.retention_bytes,
        segment_bytes: Size = defaults.segment_bytes,
        segment_age: Duration = defaults.segment_age,
        cleanup: str = defaults.cleanup,
        delete_retention: Duration = defaults.delete_retention,
        min_compaction_lag: Duration = defaults.min_compaction_lag,
        min_cleanable_dirty_ratio: float = defaults.min_cleanable_dirty_ratio,
        exist_ok: bool = False,
        schema: Schema | None = None,
        compatibility: str = defaults.compatibility,
        reducer: str | None = None,
        snapshot_every: int = defaults.snapshot_every,
    ) -> TopicInfo:
        """``Client.create_topic``, awaited."""

    async def alter_topic(self, name: str, **settings: Any) -> TopicInfo:
        """``Client.alter_topic``, awaited."""

    async def delete_topic(self, name: str) -> None:
        """``Client.delete_topic``, awaited."""

    async def list_topics(self, pattern: str | None = None) -> list[str]:
        """``Client.list_topics``, awaited."""

    async def describe_topic(self, name: str) -> TopicInfo:
        """``Client.describe_topic``, awaited."""

    async def unavailable_topics(self) -> dict[str, str]:
        """``Client.unavailable_topics``, awaited."""

    async def verify_topic(self, name: str) -> dict[str, Any]:
        """``Client.verify_topic``, awaited."""

    async def repair_topic(self, name: str, *, drop_range: DropRange) -> TopicInfo:
        """``Client.repair_topic``, awaited."""

    async def set_schema(self, topic: str, schema: Schema, *, compatibility: str | None = None) -> SchemaInfo:
        """``Client.set_schema``, awaited."""

    async def get_schema(self, topic: str, version: int | None = None) -> SchemaInfo | None:
        """``Client.get_schema``, awaited."""

    async def schema_versions(self, topic: str) -> list[SchemaInfo]:
        """``Client.schema_versions``, awaited."""

    async def check_schema(
        self, topic: str, schema: Schema, *, compatibility: str | None = None
    ) -> list[str]:
        """``Client.check_schema``, awaited."""

    async def set_compatibility(self, topic: str, compatibility: str) -> None:
        """``Client.set_compatibility``, awaited."""

    async def append(
        self,
        topic: str,
        records: Records,
        *,
        expect: Expect | None = None,
        expect_offset: int | None = None,
        producer: Producer | None = None,
        wait_for: Sequence[str] | None = None,
        timeout: float = defaults.wait_for_timeout_seconds,
    ) -> AppendResult:
        """``Client.append``, awaited. Appends of many tasks share fsyncs."""

    async def append_many(
        self, topic: str, batches: Iterable[Records], *, window: int = defaults.append_window
    ) -> list[AppendResult]:
        """``Client.append_many``, awaited (``batches`` is iterated on a worker thread)."""

    def read(
        self,
        pattern: str,
        *,
        start: Start = defaults.start,
        wait: float = defaults.read_wait_seconds,
        follow: bool = False,
        max_records: int | None = None,
        max_bytes: int | None = None,
    ) -> AsyncIterator[pa.RecordBatch]:
        """``Client.read`` as an async iterator: ``async for batch in client.read(...)``.
        Leaving the loop early (or ``aclose()``) cancels the read."""

    async def fetch(
        self,
        topic: str,
        offset: int,
        *,
        max_records: int = defaults.fetch_records_max,
        max_bytes: int = defaults.fetch_bytes_max,
    ) -> list[pa.RecordBatch]:
        """``Client.fetch``, awaited."""

    async def read_key(
        self,
        topic: str,
        key: Key,
        from_version: int = defaults.from_version,
        to_version: int | None = None,
        *,
        from_snapshot: bool = False,
    ) -> pa.Table:
        """``Client.read_key``, awaited."""

    async def snapshot(self, topic: str, key: Key, state: bytes, *, version: int) -> None:
        """``Client.snapshot``, awaited."""

    async def key_version(self, topic: str, key: Key) -> int:
        """``Client.key_version``, awaited."""

    async def create_view(
        self,
        name: str,
        pattern: str,
        reducer: str | ViewFunction,
        *,
        key: str | ViewFunction | None = None,
        exist_ok: bool = False,
        value_format: str | None = None,
    ) -> dict[str, Any]:
        """``Client.create_view``, awaited."""

    async def view_get(self, name: str, key: Key) -> bytes | None:
        """``Client.view_get``, awaited."""

    async def view_scan(
        self, name: str, prefix: Key = b"", *, after: Key | None = None, limit: int | None = None
    ) -> pa.Table:
        """``Client.view_scan``, awaited."""

    async def describe_view(self, name: str) -> dict[str, Any]:
        """``Client.describe_view``, awaited."""

    async def list_views(self) -> list[str]:
        """``Client.list_views``, awaited."""

    async def delete_view(self, name: str) -> None:
        """``Client.delete_view``, awaited."""

    async def subscribe(
        self,
        pattern: str,
        *,
        group: str,
        start: Start = defaults.start,
        ack_timeout: float = defaults.ack_timeout_seconds,
        max_deliveries: int = defaults.max_deliveries,
        dead_letter_topic: str | None = None,
        max_in_flight_per_key: int | None = None,
        ordering: str = defaults.ordering,
    ) -> AsyncConsumer:
        """``Client.subscribe``, awaited: the member's calls are coroutines too."""

    async def describe_group(self, group: str) -> GroupInfo:
        """``Client.describe_group``, awaited."""

    async def list_groups(self) -> list[str]:
        """``Client.list_groups``, awaited."""

    async def delete_group(self, group: str) -> None:
        """``Client.delete_group``, awaited."""

    async def reset_offsets(
        self, group: str, to: Start, *, topics: str | None = None, dry_run: bool = False
    ) -> list[OffsetReset]:
        """``Client.reset_offsets``, awaited."""

    async def ping(self) -> None:
        """``Client.ping``, awaited."""

    async def close(self) -> None:
        """``Client.close``, awaited; also stops the client's worker threads."""

    async def __aenter__(self) -> Self:
        """``async with odradek.connect_async(url) as client:`` closes it at the end."""

    async def __aexit__(self, *exc: object) -> None:
        """Close the client."""


class AsyncConsumer(Protocol):
    """:class:`Consumer` as coroutines, as ``AsyncClient.subscribe`` returns it."""

    @property
    def group(self) -> str:
        """``Consumer.group``."""

    @property
    def pattern(self) -> str:
        """``Consumer.pattern``."""

    @property
    def member_id(self) -> str:
        """``Consumer.member_id``."""

    async def poll(
        self, max_records: int = defaults.poll_records, timeout: float = defaults.poll_timeout_seconds
    ) -> list[Delivery]:
        """``Consumer.poll``, awaited."""

    async def poll_batches(
        self, max_records: int = defaults.poll_records, timeout: float = defaults.poll_timeout_seconds
    ) -> list[DeliveryBatch]:
        """``Consumer.poll_batches``, awaited."""

    async def ack(self, deliveries: Settleable) -> AckResult:
        """``Consumer.ack``, awaited."""

    async def nack(self, deliveries: Settleable, delay: float = defaults.nack_delay_seconds) -> AckResult:
        """``Consumer.nack``, awaited."""

    async def describe(self) -> GroupInfo:
        """``Consumer.describe``, awaited."""

    async def close(self, *, failed: bool = False) -> None:
        """``Consumer.close``, awaited."""

    async def __aenter__(self) -> Self:
        """``async with await client.subscribe(...) as consumer:`` leaves at the end."""

    async def __aexit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        """Leave the group, failed if the block raised an ``Exception``."""
