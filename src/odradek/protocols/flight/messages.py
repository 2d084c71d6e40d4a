"""The Arrow Flight wire format of Odradek, without IO (see docs/flight-protocol.md).

Everything a Flight call carries besides record batches is a small JSON document:
tickets (DoGet), descriptor commands and per-batch metadata (DoPut), tagged requests
and answers (the append stream, DoExchange), action bodies and results (DoAction),
error details. This module turns those bytes into typed requests
and back; the server and the remote client are thin shells around it. Nothing here
imports Flight or touches a socket, so it is tested with plain bytes.

Rules
-----
* Every decoder refuses what it cannot read with ``InvalidRequest`` (never a
  ``KeyError`` or ``ValueError``), so a garbage request gets a clear error and the
  server keeps serving.
* Keys inside JSON are hex (``"key_encoding": "base64"`` switches a request to
  base64). Record data never goes through JSON: it travels as Arrow batches.
* An idempotent producer travels as ``[producer_id, sequence]``; a bytes producer id
  as ``{"hex": "<its hex digits>"}`` (a str or int id as itself).
* An append result's versions travel inside its JSON when there are few, else as an
  Arrow IPC stream of one batch (``key: binary, version: int64``) after the JSON line,
  because a 10,000-key append would cost milliseconds as a JSON object while a
  one-key append would spend most of its encoding on the IPC stream's setup.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pyarrow as pa

from odradek import api, defaults, limits
from odradek.errors import InvalidRequest, OdradekError, RequestTooLarge, from_wire, to_wire
from odradek.names import is_pattern
from odradek.types import AppendResult, KeyVersions, SchemaInfo, TopicInfo

# Version of this wire format; a request may name it as "v" and a newer server
# refuses versions it does not know.
PROTOCOL_VERSION = 1

# DoGet ticket kinds.
KIND_READ = "read"
KIND_FETCH = "fetch"
KIND_READ_KEY = "read_key"

# DoAction types, each with the description ListActions returns.
ACTIONS: dict[str, str] = {
    "create_topic": 'Create a topic. Body: {"name", "retention"?, "retention_bytes"?, '
    '"segment_bytes"?, "segment_age"?, "cleanup"?, "delete_retention"?, "min_compaction_lag"?, '
    '"min_cleanable_dirty_ratio"?, "exist_ok"?, "schema"?, "compatibility"?, "reducer"?, '
    '"snapshot_every"?}. Result: topic info JSON.',
    "delete_topic": 'Delete a topic and its data. Body: {"name"}. Result: {}.',
    "list_topics": 'Topic names, sorted. Body: {"pattern"?}. Result: {"topics": [...], "unavailable": '
    "{name: why}} (topics whose files are damaged: see odradek topic verify).",
    "describe_topic": 'Offsets, sizes and config of a topic. Body: {"name"}. Result: topic info JSON.',
    "alter_topic": "Change a topic's retention, segment or cleanup settings (create_topic's names). "
    'Body: {"name", "settings": {"retention"?, "retention_bytes"?, "segment_bytes"?, "segment_age"?, '
    '"cleanup"?, "delete_retention"?, "min_compaction_lag"?, "min_cleanable_dirty_ratio"?}}. '
    "Result: topic info JSON.",
    "key_version": 'Current version of a key (0 if none). Body: {"topic", "key"}. Result: {"version": n}.',
    "snapshot": 'Store the state of a key as of one of its versions. Body: {"topic", "key", '
    '"state" (base64), "version"}. Result: {}.',
    "ping": 'Liveness check. Body: {}. Result: {"ok": true, "protocol": 1}.',
    "cluster_status": "A cluster agent's view of its cluster (answered by standbys too). Body: {}. "
    'Result: {"cluster", "agent", "role", "owner", "owner_url", "epoch", "agents": [...]}, and on '
    'the owner "store": how far its checkpoints lag the journal ({"manifest", "seconds", '
    '"journal_objects", "journal_bytes", "checkpoints", "failures", "interval_seconds"}); '
    '{"cluster": null} on a server that is not in a cluster.',
    "handover": "Hand a cluster's data over to another agent (the owner answers; standbys redirect). "
    'Body: {"to"?: agent id}. Result: {"from", "to"}; the new owner serves about a second later.',
    "release_topic": "Release a topic of a cluster of several cells for a move to another cell (the "
    'agent serving its cell answers; others redirect). Body: {"topic", "to"?: agent id, "cell"?: '
    'target cell}. Result: {"topic", "from_cell", "to_cell", "to_agent", "to_url"}; then adopt_topic '
    "at to_url (odradek topic move does both).",
    "adopt_topic": "Adopt a released topic into a cell and place it there (the agent serving the cell "
    'answers; others redirect). Body: {"topic", "from_cell", "cell"}. Result: topic info JSON.',
    "list_groups": 'Consumer group names, sorted. Body: {}. Result: {"groups": [...]}.',
    "describe_group": 'Members, per-topic progress and lag, counters of a consumer group. Body: {"group"}. '
    "Result: group info JSON.",
    "delete_group": 'Forget a consumer group without members and its progress. Body: {"group"}. Result: {}.',
    "kafka_partitions": "The Kafka partition of a topic's records in [start, end) (decision 0014): the "
    'partition history and the runs whose frames store theirs. Body: {"topic", "start", "end"}. '
    'Result: {"history": [[first offset, count]], "stored": [[from, to, partition]], "end"}.',
    "reset_offsets": "Move a consumer group's committed offsets (refused while it has members). "
    'Body: {"group", "topics"?: pattern, "to": "earliest"|"latest"|offset|ISO-8601, "dry_run"?}. '
    'Result: {"plan": [{"topic", "partition", "old", "new"}]}, applied unless dry_run.',
    "set_schema": 'Add a version to a topic\'s schema. Body: {"topic", "schema", "compatibility"?}. '
    "Result: schema info JSON.",
    "get_schema": 'A version of a topic\'s schema (the newest without "version"). Body: {"topic", '
    '"version"?}. Result: {"schema": schema info JSON or null}.',
    "schema_versions": 'A page of a topic\'s schema versions. Body: {"topic", "from_version"?}. '
    'Result: {"versions": [...], "next_version": first version of the next page or null}.',
    "check_schema": 'What would make set_schema refuse a schema. Body: {"topic", "schema", '
    '"compatibility"?}. Result: {"problems": [...]}.',
    "set_compatibility": 'Set a topic\'s compatibility mode. Body: {"topic", "compatibility"}. Result: {}.',
    "verify_topic": 'Check every frame and derived file of a topic against its checksums. Body: {"name"}. '
    'Result: {"topic", "segments", "frames", "bytes", "damaged": [...], "problems": [...], "ok"}.',
    "repair_topic": 'Accept the loss of damaged offsets. Body: {"name", "drop_range": [first, last] or '
    "a list of them}. Result: topic info JSON.",
    "create_view": 'Define a materialized key view. Body: {"name", "pattern", "reducer" (import path), '
    '"key"? (import path), "exist_ok"?, "value_format"? ("typed" or "json"; absent: typed for a new '
    "view, any for exist_ok)}. Result: the view's description (as describe_view).",
    "view_get": 'A key\'s state in a view. Body: {"name", "key"}. Result: {"state": hex or null}.',
    "view_scan": 'Keys of a view with a prefix, in key order. Body: {"name", "prefix"?, "after"?, "limit"?} '
    "(keys hex). Result: an Arrow IPC stream of a table with binary columns key and state.",
    "describe_view": 'A view\'s definition, status, error, offsets and lag. Body: {"name"}. Result: JSON.',
    "list_views": 'View names, sorted. Body: {}. Result: {"views": [...]}.',
    "delete_view": 'Delete a view and its table. Body: {"name"}. Result: {}.',
    "check_waiters": 'Refuse an append\'s wait_for before it is written. Body: {"topic", "wait_for", '
    '"timeout"}. Result: {}.',
    "wait_for": 'Wait until an append\'s waiters processed it. Body: {"topic", "wait_for", '
    '"timeout", "base_offset", "count"}. Result: {} once they did, else {"pending": [...], "message"}.',
}

_VERSIONS_SCHEMA = pa.schema([pa.field("key", pa.binary()), pa.field("version", pa.int64())])


# -- requests -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AppendOptions:
    """Expectations and idempotence of one appended batch (DoPut)."""

    expect: dict[bytes, int] | None = None
    expect_offset: int | None = None
    producer: api.Producer | None = None

    @property
    def empty(self) -> bool:
        return self.expect is None and self.expect_offset is None and self.producer is None


@dataclasses.dataclass(frozen=True)
class ReadRequest:
    pattern: str
    start: str | int = defaults.start  # "earliest" | "latest" | offset | ISO-8601 timestamp
    wait: float = defaults.read_wait_seconds
    follow: bool = False
    max_records: int | None = None
    max_bytes: int | None = None
    # A part of a wildcard read one agent asks of another (decision 0035): the topics of
    # this cell only, which the agent asked must serve. None: every cell's.
    cell: str | None = None
    # Such a part continuing what the asking agent read from the cell's store (decision
    # 0042): where each topic named goes on, (offset, incarnation); Engine.read's starts.
    starts: dict[str, tuple[int, str]] | None = None


@dataclasses.dataclass(frozen=True)
class FetchRequest:
    topic: str
    offset: int
    max_records: int = defaults.fetch_records_max
    max_bytes: int = defaults.fetch_bytes_max
    # A schema'd topic's values: typed (the default, not sent), json or wire (Engine.fetch).
    value_format: str | None = None


@dataclasses.dataclass(frozen=True)
class ReadKeyRequest:
    topic: str
    key: bytes
    from_version: int = defaults.from_version
    to_version: int | None = None
    from_snapshot: bool = False


Ticket = ReadRequest | FetchRequest | ReadKeyRequest


# -- JSON framing -----------------------------------------------------------------------


def dump(document: Mapping[str, Any]) -> bytes:
    """Compact JSON; a value JSON cannot carry is an InvalidRequest (the caller passed
    something of the wrong type), never a TypeError."""
    try:
        return json.dumps(document, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"a request holds a value of the wrong type: {exc}") from None


def load(raw: bytes, what: str) -> dict[str, Any]:
    """A JSON object from ``raw``, or InvalidRequest saying which message was bad."""
    if len(raw) > limits.flight_command_bytes_max:
        raise RequestTooLarge(
            f"{what} of {len(raw)} bytes is over the limit of {limits.flight_command_bytes_max} bytes"
        )
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidRequest(f"{what} must be a JSON object, got {type(document).__name__}")
    version = document.get("v", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise InvalidRequest(
            f"{what} uses protocol version {version!r}; this server speaks {PROTOCOL_VERSION}"
        )
    return document


def encode_key(key: bytes) -> str:
    return key.hex()


def encode_snapshot(topic: str, key: bytes, state: object, version: object) -> dict[str, Any]:
    """The body of a ``snapshot`` action; the state as base64."""
    if isinstance(state, (bytearray, memoryview)):
        state = bytes(state)
    if not isinstance(state, bytes):
        raise InvalidRequest(f"a snapshot's state must be bytes, got {type(state).__name__}")
    if len(state) > limits.snapshot_state_bytes_max:
        raise RequestTooLarge(
            f"a snapshot state of {len(state)} bytes is over the limit of "
            f"{limits.snapshot_state_bytes_max} bytes (snapshot_state_bytes_max)"
        )
    return {
        "topic": topic,
        "key": encode_key(key),
        "state": base64.b64encode(state).decode(),
        "version": version,
    }


def decode_snapshot_state(document: Mapping[str, Any]) -> bytes:
    """The state of a ``snapshot`` action's body."""
    text = _required(document, "state", str)
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise InvalidRequest("a snapshot's state must be base64") from None


def encode_view_scan(table: pa.Table) -> bytes:
    """A ``view_scan`` result: the table as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def decode_view_scan(raw: bytes) -> pa.Table:
    try:
        return pa.ipc.open_stream(pa.py_buffer(raw)).read_all()
    except pa.ArrowException as exc:
        raise InvalidRequest(f"a view_scan result is not an Arrow stream: {exc}") from None


def decode_key(text: object, encoding: object = "hex") -> bytes:
    if not isinstance(text, str):
        raise InvalidRequest(f"a key must be a {encoding}-encoded string, got {type(text).__name__}")
    try:
        if encoding == "hex":
            return bytes.fromhex(text)
        if encoding == "base64":
            return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise InvalidRequest(f"key {text!r} is not valid {encoding}") from None
    raise InvalidRequest(f"key_encoding must be 'hex' or 'base64', got {encoding!r}")


def _field(document: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = document.get(name)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise InvalidRequest(f"field {name!r} has the wrong type: {type(value).__name__}")
    return value


def _required(document: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if document.get(name) is None:
        raise InvalidRequest(f"field {name!r} is required")
    return _field(document, name, kind)


# -- appends (DoPut) ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PutCommand:
    """A DoPut descriptor: the topic, the options of the first batch, and how many
    appends of the stream the server may keep in flight (1: each is acknowledged
    before the next batch is read)."""

    topic: str
    options: AppendOptions = AppendOptions()
    window: int = limits.append_window_default


def encode_append_options(
    expect: api.Expect | None = None,
    expect_offset: int | None = None,
    producer: api.Producer | None = None,
    topic: str | None = None,
    window: int | None = None,
) -> bytes:
    """The JSON a client puts in a DoPut descriptor command (``topic``, ``window`` and
    options) or a batch's app_metadata (options)."""
    document: dict[str, Any] = {}
    if topic is not None:
        document["topic"] = topic
    if window is not None:
        document["window"] = window
    if expect is not None:
        if not isinstance(expect, Mapping):
            raise InvalidRequest("expect must be a dict of key to expected version")
        document["expect"] = {encode_key(key_bytes(key)): version for key, version in expect.items()}
    if expect_offset is not None:
        document["expect_offset"] = expect_offset
    if producer is not None:
        document["producer"] = encode_producer(producer)
    return dump(document)


def encode_producer(producer: object) -> list[Any]:
    """``[producer_id, sequence]`` as JSON carries it: a bytes id as ``{"hex": ...}``.
    Anything but a pair of a str, int or bytes id and an int is refused here, before
    it is sent."""
    if (
        not isinstance(producer, (tuple, list))
        or len(producer) != 2
        or isinstance(producer[1], bool)
        or not isinstance(producer[1], int)
    ):
        raise InvalidRequest("producer must be a (producer_id, sequence) pair: (str, int or bytes, int)")
    producer_id = producer[0]
    if isinstance(producer_id, bytes):
        return [{"hex": producer_id.hex()}, producer[1]]
    if isinstance(producer_id, bool) or not isinstance(producer_id, (str, int)):
        raise InvalidRequest(f"a producer id is a str, an int or bytes, got {type(producer_id).__name__}")
    return [producer_id, producer[1]]


def decode_producer(raw: list[Any]) -> api.Producer:
    """A producer as ``encode_producer`` wrote it. The id's and the sequence's types are
    checked by the engine, with its messages; only the bytes form is read here."""
    if len(raw) != 2:
        raise InvalidRequest("producer must be a [producer_id, sequence] pair")
    producer_id = raw[0]
    if isinstance(producer_id, dict):
        text = producer_id.get("hex")
        if set(producer_id) != {"hex"} or not isinstance(text, str):
            raise InvalidRequest('a bytes producer id travels as {"hex": "<hex digits>"}')
        try:
            producer_id = bytes.fromhex(text)
        except ValueError:
            raise InvalidRequest(f"bytes producer id {text!r} is not valid hex") from None
    return (producer_id, raw[1])


def decode_put_command(raw: bytes) -> PutCommand:
    """A DoPut descriptor command; it must name the topic."""
    document = load(raw, "DoPut command")
    topic = _field(document, "topic", str)
    if topic is None:
        raise InvalidRequest('a DoPut command must name the topic: {"topic": "..."}')
    window = _field(document, "window", int, limits.append_window_default)
    if not 1 <= window <= limits.append_window_max:
        raise InvalidRequest(f"window must be an int from 1 to {limits.append_window_max}, got {window}")
    return PutCommand(topic, _options_of(document), window)


def decode_append_options(raw: bytes, what: str = "append options") -> tuple[str | None, AppendOptions]:
    """(topic named in the document or None, options). Empty bytes mean no options."""
    if not raw:
        return None, AppendOptions()
    document = load(raw, what)
    return _field(document, "topic", str), _options_of(document)


def _options_of(document: Mapping[str, Any]) -> AppendOptions:
    encoding = document.get("key_encoding", "hex")
    expect_raw = _field(document, "expect", dict)
    expect = None
    if expect_raw is not None:
        expect = {decode_key(key, encoding): version for key, version in expect_raw.items()}
    producer_raw = _field(document, "producer", list)
    producer = None if producer_raw is None else decode_producer(producer_raw)
    expect_offset = document.get("expect_offset")
    # Types of the values are checked by the engine, with its messages.
    return AppendOptions(expect, expect_offset, producer)


def encode_append_result(result: AppendResult, request_id: int | None = None) -> bytes:
    """A PutResult's app_metadata: what one appended batch was assigned.

    One line of JSON. The versions of an append with at most
    ``limits.flight_result_inline_keys_max`` keys are a JSON object in it
    (``{"<hex key>": version}``); with more, ``"versions": "arrow"`` says that a
    newline and an Arrow IPC stream of one batch (``key: binary, version: int64``)
    follow it. Without keys there is no ``versions``. On the append stream the line
    starts with the request's ``"id"``.
    """
    versions = result.versions
    count = len(versions)
    tag = "" if request_id is None else f'"id":{int(request_id)},'
    head = (
        f'{{{tag}"base_offset":{int(result.base_offset)},"count":{int(result.count)},'
        f'"duplicate":{"true" if result.duplicate else "false"}'
    )
    if not count:
        return (head + "}").encode()
    if count <= limits.flight_result_inline_keys_max:
        inline = ",".join(f'"{key.hex()}":{int(version)}' for key, version in _version_items(versions))
        return (head + ',"versions":{' + inline + "}}").encode()
    keys, numbers = _version_arrays(versions)
    batch = pa.RecordBatch.from_arrays([keys, numbers], schema=_VERSIONS_SCHEMA)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, _VERSIONS_SCHEMA) as writer:
        writer.write_batch(batch)
    return (head + ',"versions":"arrow"}\n').encode() + bytes(sink.getvalue().to_pybytes())


def _version_items(versions: Mapping[bytes, int]) -> Iterable[tuple[bytes, int]]:
    keys = getattr(versions, "key_array", None)
    numbers = getattr(versions, "version_array", None)
    if isinstance(keys, pa.Array) and numbers is not None:
        return zip(keys.to_pylist(), numbers.tolist())
    return versions.items()


def _version_arrays(versions: Mapping[bytes, int]) -> tuple[pa.Array, pa.Array]:
    """Keys and versions as arrays; taken as they are when the engine already has them."""
    keys = getattr(versions, "key_array", None)
    numbers = getattr(versions, "version_array", None)
    if isinstance(keys, pa.Array) and numbers is not None:
        return keys.cast(pa.binary()), pa.array(numbers, pa.int64())
    items = list(versions.items())
    return (
        pa.array([key for key, _ in items], pa.binary()),
        pa.array([version for _, version in items], pa.int64()),
    )


def decode_append_result(raw: bytes) -> AppendResult:
    header, newline, rest = raw.partition(b"\n")
    return _append_result_of(load(header, "append result"), newline, rest)


def _append_result_of(document: Mapping[str, Any], newline: bytes, rest: bytes) -> AppendResult:
    versions: Mapping[bytes, int] = {}
    announced = document.get("versions")
    if isinstance(announced, dict):
        versions = {decode_key(key): _version(number) for key, number in announced.items()}
    elif announced == "arrow":
        if not newline:
            raise InvalidRequest("append result announces versions but carries none")
        try:
            batch = pa.ipc.open_stream(pa.py_buffer(rest)).read_next_batch()
        except (StopIteration, pa.ArrowInvalid) as exc:
            raise InvalidRequest(f"append result carries unreadable versions: {exc}") from None
        if batch.schema != _VERSIONS_SCHEMA:
            raise InvalidRequest(f"append result versions have schema {batch.schema}, not {_VERSIONS_SCHEMA}")
        versions = KeyVersions(batch.column(0), batch.column(1).to_numpy())
    elif announced is not None:
        raise InvalidRequest(f"append result versions must be an object or 'arrow', got {announced!r}")
    return AppendResult(
        int(_required(document, "base_offset", int)),
        int(_required(document, "count", int)),
        versions,
        duplicate=bool(document.get("duplicate", False)),
    )


def _version(number: object) -> int:
    if isinstance(number, bool) or not isinstance(number, int):
        raise InvalidRequest(f"a key version must be an int, got {number!r}")
    return number


# -- the append stream (DoExchange {"kind": "append"}) ------------------------------------
#
# One long-lived stream per client carries single appends from any number of its threads:
# each request is a record batch whose app_metadata names its ``id`` (the client's tag,
# unique among its requests in flight), its ``topic`` and its options; each answer is a
# metadata-only message with the same ``id`` and either the append's result or its
# ``error``. A refused request is answered in-band and the stream goes on.

KIND_APPEND = "append"


@dataclasses.dataclass(frozen=True)
class AppendRequest:
    """One request of an append stream. ``refused`` is set when its id was readable but
    the rest was not: the server answers that request with the error."""

    request_id: int
    topic: str
    options: AppendOptions = AppendOptions()
    refused: InvalidRequest | None = None
    rows: int = 0  # its records in the message's batch (all of them for a lone request)


def encode_append_stream_command(window: int, requests_max: int = 1) -> bytes:
    """The DoExchange descriptor command that opens an append stream; ``window``: how
    many of its requests the client keeps in flight at most; ``requests_max`` (above
    1): it may group that many requests in one message and reads grouped answers."""
    document: dict[str, Any] = {"kind": KIND_APPEND, "window": window}
    if requests_max > 1:
        document["requests_max"] = requests_max
    return dump(document)


def is_append_stream(raw: bytes) -> bool:
    """True if a DoExchange command opens an append stream (anything unreadable is not
    one: the consumer-group decoder then says what is wrong with it)."""
    if len(raw) > limits.flight_command_bytes_max:
        return False
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(document, dict) and document.get("kind") == KIND_APPEND


def decode_append_stream_command(raw: bytes) -> int:
    """The window an append stream's command asks for (the server's default if none)."""
    document = load(raw, "DoExchange command")
    window = _field(document, "window", int, limits.append_stream_window_default)
    if not 1 <= window <= limits.append_stream_window_max:
        raise InvalidRequest(
            f"window must be an int from 1 to {limits.append_stream_window_max}, got {window}"
        )
    return int(window)


def decode_append_stream_requests_max(raw: bytes) -> int:
    """How many requests the client may group in one message (1 if it does not say: an
    older client, which sends one request a message and reads one answer a message)."""
    document = load(raw, "DoExchange command")
    requests_max = _field(document, "requests_max", int, 1)
    if requests_max < 1:
        raise InvalidRequest(f"requests_max must be an int >= 1, got {requests_max}")
    return int(min(requests_max, limits.append_stream_requests_max))


def encode_append_stream_ready(window: int, requests_max: int = 1) -> bytes:
    """The server's first message on an append stream: it serves appends, keeps at
    most ``window`` of them in flight and, with ``requests_max`` above 1, reads up to
    that many requests grouped in one message (and groups their answers)."""
    document: dict[str, Any] = {"kind": KIND_APPEND, "window": window, "v": PROTOCOL_VERSION}
    if requests_max > 1:
        document["requests_max"] = requests_max
    return dump(document)


def decode_append_stream_ready(raw: bytes) -> int:
    """The window of an append stream's greeting."""
    return decode_append_stream_greeting(raw)[0]


def decode_append_stream_greeting(raw: bytes) -> tuple[int, int]:
    """(window, requests_max) of an append stream's greeting; requests_max is 1 from a
    server that does not read grouped requests."""
    document = load(raw, "append stream greeting")
    if document.get("kind") != KIND_APPEND:
        raise InvalidRequest(f"an append stream opens with {KIND_APPEND!r}, got {document.get('kind')!r}")
    window = _required(document, "window", int)
    if window < 1:
        raise InvalidRequest(f"an append stream's window must be at least 1, got {window}")
    requests_max = _field(document, "requests_max", int, 1)
    if requests_max < 1:
        raise InvalidRequest(f"an append stream's requests_max must be at least 1, got {requests_max}")
    return int(window), int(requests_max)


def encode_append_request(
    request_id: int,
    topic: str,
    expect: api.Expect | None = None,
    expect_offset: int | None = None,
    producer: api.Producer | None = None,
) -> bytes:
    """The app_metadata of one request of an append stream."""
    return tag_append_request(request_id, encode_append_options(expect, expect_offset, producer, topic=topic))


def tag_append_request(request_id: int, body: bytes) -> bytes:
    """``body`` (``encode_append_options`` with a topic) as the request ``request_id``:
    a client encodes (and checks) a request's options once, then tags it."""
    if not body.startswith(b"{") or body == b"{}":
        raise InvalidRequest("an append request names its topic")
    return b'{"id":%d,' % request_id + body[1:]


def decode_append_request(raw: bytes) -> AppendRequest:
    """A request's app_metadata. Raises InvalidRequest only if its ``id`` cannot be read
    (nobody could be answered); any other fault comes back in ``refused``."""
    return _append_request_of(load(raw, "append request"))


def _append_request_of(document: Mapping[str, Any], rows: int = 0) -> AppendRequest:
    request_id = document.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int):
        raise InvalidRequest(f'an append request must carry its "id" (an int), got {request_id!r}')
    try:
        topic = _required(document, "topic", str)
        return AppendRequest(request_id, topic, _options_of(document), rows=rows)
    except InvalidRequest as exc:
        return AppendRequest(request_id, "", AppendOptions(), exc, rows)


def encode_append_requests(tagged: Iterable[tuple[int, int, bytes]]) -> bytes:
    """The app_metadata of several requests grouped in one message, from (request id,
    its record count, ``encode_append_options`` with a topic): the message's batch holds
    their records in this order."""
    parts = []
    for request_id, rows, body in tagged:
        if not body.startswith(b"{") or body == b"{}":
            raise InvalidRequest("an append request names its topic")
        parts.append(b'{"id":%d,"rows":%d,' % (request_id, rows) + body[1:])
    return b'{"requests":[' + b",".join(parts) + b"]}"


def decode_append_requests(raw: bytes, rows: int) -> list[AppendRequest]:
    """The requests of one message of ``rows`` records: a single request, or several
    grouped (``{"requests": [...]}``, each with its ``rows``, in the batch's order).

    Raises InvalidRequest only if an ``id`` cannot be read (that request could not be
    answered). If the groups' rows do not add up to the batch, every request of the
    message is refused (none is written)."""
    document = load(raw, "append request")
    grouped = document.get("requests")
    if grouped is None:
        return [_append_request_of(document, rows)]
    if not isinstance(grouped, list) or not grouped:
        raise InvalidRequest('"requests" of an append stream message is a non-empty list of requests')
    if len(grouped) > limits.append_stream_requests_max:
        raise InvalidRequest(
            f"an append stream message groups at most {limits.append_stream_requests_max} requests, "
            f"got {len(grouped)}"
        )
    requests = []
    for item in grouped:
        if not isinstance(item, dict):
            raise InvalidRequest(f"a grouped append request is a JSON object, got {type(item).__name__}")
        count = item.get("rows")
        request = _append_request_of(item, count if type(count) is int else 0)
        if request.refused is None and (type(count) is not int or count < 1):
            refusal = InvalidRequest(f'a grouped append request carries its "rows" (>= 1), got {count!r}')
            request = dataclasses.replace(request, refused=refusal)
        requests.append(request)
    total = sum(request.rows for request in requests)
    if total != rows:
        mismatch = InvalidRequest(
            f"the grouped requests of an append stream message count {total} records, its batch has {rows}"
        )
        requests = [dataclasses.replace(request, refused=request.refused or mismatch) for request in requests]
    return requests


def encode_append_refusal(request_id: int, error: OdradekError) -> bytes:
    """The answer to a request that was refused: nothing of it is written."""
    return dump({"id": request_id, "error": to_wire(error)})


def encode_append_answers(answers: list[bytes]) -> bytes:
    """Several answers in one message (to a client that groups its requests): each is
    one line of JSON, without versions as Arrow IPC (those travel alone)."""
    if len(answers) == 1:
        return answers[0]
    return b'{"answers":[' + b",".join(answers) + b"]}"


def decode_append_answers(raw: bytes) -> list[tuple[int, AppendResult | OdradekError]]:
    """The answers one message carries: one, or several grouped (``{"answers": [...]}``)."""
    if not raw.startswith(b'{"answers":'):
        return [decode_append_answer(raw)]
    document = load(raw, "append answers")
    grouped = document.get("answers")
    if not isinstance(grouped, list) or not grouped:
        raise InvalidRequest('"answers" of an append stream message is a non-empty list of answers')
    answers = []
    for item in grouped:
        if not isinstance(item, dict):
            raise InvalidRequest(f"a grouped append answer is a JSON object, got {type(item).__name__}")
        answers.append(_append_answer_of(item, b"", b""))
    return answers


def decode_append_answer(raw: bytes) -> tuple[int, AppendResult | OdradekError]:
    """(request id, its result or the error that refused it)."""
    header, newline, rest = raw.partition(b"\n")
    return _append_answer_of(load(header, "append answer"), newline, rest)


def _append_answer_of(
    document: Mapping[str, Any], newline: bytes, rest: bytes
) -> tuple[int, AppendResult | OdradekError]:
    request_id = _required(document, "id", int)
    refusal = document.get("error")
    if refusal is not None:
        if not isinstance(refusal, dict):
            raise InvalidRequest(f"an append answer's error must be an object, got {refusal!r}")
        try:
            return request_id, from_wire(refusal)
        except (KeyError, TypeError, ValueError):
            return request_id, OdradekError(str(refusal.get("message", "unknown error")))
    return request_id, _append_result_of(document, newline, rest)


# -- tickets (DoGet) ----------------------------------------------------------------------


def encode_start(start: api.Start | None) -> str | int:
    """``start`` as it travels: a datetime becomes ISO-8601; the rest goes as given."""
    if isinstance(start, datetime.datetime):
        return start.isoformat()
    if start is None:
        return defaults.start
    if isinstance(start, (str, int)):
        return start
    raise InvalidRequest(
        "start must be 'earliest', 'latest', an offset (int >= 0), a datetime or an ISO-8601 timestamp"
    )


def encode_ticket(request: Ticket) -> bytes:
    if isinstance(request, ReadRequest):
        document: dict[str, Any] = {"kind": KIND_READ, **dataclasses.asdict(request)}
    elif isinstance(request, FetchRequest):
        document = {"kind": KIND_FETCH, **dataclasses.asdict(request)}
    else:
        document = {
            "kind": KIND_READ_KEY,
            "topic": request.topic,
            "key": encode_key(request.key),
            "from_version": request.from_version,
            "to_version": request.to_version,
            # Only when asked: a server that predates snapshots reads the ticket as before.
            "from_snapshot": True if request.from_snapshot else None,
        }
    return dump({key: value for key, value in document.items() if value is not None})


def decode_ticket(raw: bytes) -> Ticket:
    document = load(raw, "ticket")
    kind = document.get("kind", KIND_READ)
    decoder = _TICKET_DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise InvalidRequest(f"unknown ticket kind {kind!r}; known: {sorted(_TICKET_DECODERS)}")
    return decoder(document)


def _decode_read(document: dict[str, Any]) -> ReadRequest:
    start = document.get("start", defaults.start)
    if isinstance(start, bool) or not isinstance(start, (str, int)):
        raise InvalidRequest("start must be 'earliest', 'latest', an offset or an ISO-8601 timestamp")
    return ReadRequest(
        pattern=_required(document, "pattern", str),
        start=start,
        wait=_field(document, "wait", (int, float), defaults.read_wait_seconds),
        follow=_field(document, "follow", bool, False),
        max_records=_field(document, "max_records", int),
        max_bytes=_field(document, "max_bytes", int),
        cell=cell_field(document),
        starts=_starts_field(document),
    )


def _starts_field(document: Mapping[str, Any]) -> dict[str, tuple[int, str]] | None:
    """A read's ``starts`` (ReadRequest), checked: only with a wildcard pattern, at most
    ``read_starts_max`` topics, each ``[offset >= 0, incarnation]``."""
    starts = document.get("starts")
    if starts is None:
        return None
    if not isinstance(starts, dict):
        raise InvalidRequest(f"field 'starts' must be an object, got {type(starts).__name__}")
    if not is_pattern(str(document.get("pattern"))):
        raise InvalidRequest("field 'starts' is for a read of a wildcard pattern only")
    if len(starts) > limits.read_starts_max:
        raise InvalidRequest(
            f"field 'starts' names {len(starts)} topics, over the limit of {limits.read_starts_max}"
        )
    checked: dict[str, tuple[int, str]] = {}
    for topic, start in starts.items():
        if (
            not isinstance(start, list)
            or len(start) != 2
            or isinstance(start[0], bool)
            or not isinstance(start[0], int)
            or start[0] < 0
            or not isinstance(start[1], str)
        ):
            raise InvalidRequest(
                f"field 'starts' of topic {topic[:80]!r} must be [offset >= 0, incarnation], got {start!r}"[
                    :300
                ]
            )
        checked[topic] = (start[0], start[1])
    return checked


def cell_field(document: Mapping[str, Any]) -> str | None:
    """A request's ``cell`` (one cell's part of a call spanning cells), checked."""
    cell: str | None = _field(document, "cell", str)
    if cell is not None:
        from odradek.cluster.keys import validate_cell

        validate_cell(cell)
    return cell


def _decode_fetch(document: dict[str, Any]) -> FetchRequest:
    return FetchRequest(
        topic=_required(document, "topic", str),
        offset=_required(document, "offset", int),
        max_records=_field(document, "max_records", int, defaults.fetch_records_max),
        max_bytes=_field(document, "max_bytes", int, defaults.fetch_bytes_max),
        value_format=_field(document, "value_format", str),
    )


def _decode_read_key(document: dict[str, Any]) -> ReadKeyRequest:
    return ReadKeyRequest(
        topic=_required(document, "topic", str),
        key=decode_key(_required(document, "key", str), document.get("key_encoding", "hex")),
        from_version=_field(document, "from_version", int, defaults.from_version),
        to_version=_field(document, "to_version", int),
        from_snapshot=_field(document, "from_snapshot", bool, False),
    )


_TICKET_DECODERS: dict[str, Callable[[dict[str, Any]], Ticket]] = {
    KIND_READ: _decode_read,
    KIND_FETCH: _decode_fetch,
    KIND_READ_KEY: _decode_read_key,
}


# -- actions, topic info, errors -------------------------------------------------------------


def decode_action_body(action: str, raw: bytes) -> dict[str, Any]:
    if action not in ACTIONS:
        raise InvalidRequest(f"unknown action {action!r}; known: {sorted(ACTIONS)}")
    return load(raw, f"body of action {action!r}") if raw else {}


def encode_topic_info(info: TopicInfo) -> bytes:
    return dump(info.to_json())


def decode_topic_info(raw: bytes) -> TopicInfo:
    document = load(raw, "topic info")
    try:
        return TopicInfo.from_json(document)
    except TypeError as exc:
        raise InvalidRequest(f"topic info is malformed: {exc}") from None


def encode_schema_info(info: SchemaInfo | None) -> dict[str, Any] | None:
    return None if info is None else info.to_json()


def decode_schema_info(document: object) -> SchemaInfo | None:
    if document is None:
        return None
    if not isinstance(document, dict):
        raise InvalidRequest("schema info is malformed: not an object")
    try:
        return SchemaInfo.from_json(document)
    except (TypeError, KeyError, ValueError, pa.ArrowInvalid) as exc:
        raise InvalidRequest(f"schema info is malformed: {exc}") from None


def encode_schema(schema: object) -> object:
    """A topic schema as JSON: a JSON Schema or Avro dict as is, a ``pa.Schema`` as
    ``{"arrow_schema_b64": <Arrow IPC schema message>}``."""
    if isinstance(schema, pa.Schema):
        return {"arrow_schema_b64": base64.b64encode(schema.serialize().to_pybytes()).decode()}
    return schema


def decode_schema(document: object) -> object:
    if isinstance(document, dict) and set(document) == {"arrow_schema_b64"}:
        try:
            return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(document["arrow_schema_b64"])))
        except (ValueError, binascii.Error, pa.ArrowInvalid) as exc:
            raise InvalidRequest(f"schema is not a readable Arrow schema: {exc}") from None
    return document


def encode_error(error: OdradekError) -> bytes:
    return dump(to_wire(error))


def decode_error(raw: bytes | None) -> OdradekError | None:
    """The error a server sent in a Flight error's extra_info, or None if it sent none."""
    if not raw:
        return None
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict) or "code" not in document:
        return None
    try:
        return from_wire(document)
    except (KeyError, TypeError, ValueError):
        return OdradekError(str(document.get("message", "unknown error")))


def key_bytes(key: object) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    raise InvalidRequest(f"a key must be bytes or str, got {type(key).__name__}")
