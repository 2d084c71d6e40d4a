"""Records as JSON, both ways, without IO (docs/http-api.md, "Records as JSON").

A record is a JSON object. Bytes travel as UTF-8 text in ``key``, ``value`` and
``headers``, or, when they are not text, as base64 in ``key_b64``, ``value_b64`` and
``headers_b64`` (the rule of the command line's JSONL output, DESIGN §3). A schema'd
topic's ``value`` is a JSON object (the typed value, as the Flight door's JSON path
reads and writes it). What a client sends follows the same rule:

* ``value``: a string is stored as its UTF-8 bytes; an object is the typed value of a
  schema'd topic, or stored as its JSON text on a schemaless one; any other JSON
  (number, array, boolean) is stored as its JSON text; null is a null value (a
  tombstone on a compacted topic). ``value_b64``: the bytes, base64.
* ``key`` / ``key_b64``: likewise (text or base64; no key: a keyless record).
* ``headers`` / ``headers_b64``: objects of header name to text / to base64 bytes.
* ``timestamp``: microseconds since the epoch (an integer) or ISO-8601 text with an
  offset; the server sets it when absent.

What a read answers adds ``offset``, ``version`` (null for a keyless record),
``timestamp`` (ISO-8601 UTC, microseconds) and, for a read across topics, ``topic``.

Decoding a produce's body makes a Python object of every record (JSON's own cost);
they go to Arrow in one ``from_pylist`` (odradek/records.py). Reads and tails write
JSON with Arrow compute (:func:`json_documents`), and only a batch holding bytes that
are not text takes the per-record writer (:func:`output_records`), which writes the
same documents.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from odradek.errors import InvalidRequest

_RECORD_FIELDS = frozenset({"key", "key_b64", "value", "value_b64", "headers", "headers_b64", "timestamp"})
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def input_rows(records: object, records_max: int) -> list[dict[str, Any]]:
    """The records of a produce request as rows for ``Engine.append``; InvalidRequest
    (RequestTooLarge past ``records_max``) for anything else."""
    from odradek.errors import RequestTooLarge

    if not isinstance(records, list) or not records:
        raise InvalidRequest("records must be a non-empty array of record objects")
    if len(records) > records_max:
        raise RequestTooLarge(
            f"a produce request carries at most {records_max} records, got {len(records)}; "
            "split it into several requests"
        )
    return [_row(index, record) for index, record in enumerate(records)]


def _row(index: int, record: object) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise InvalidRequest(f"record {index} must be an object, got {type(record).__name__}")
    unknown = record.keys() - _RECORD_FIELDS
    if unknown:
        raise InvalidRequest(
            f"record {index} has unknown field(s) {sorted(unknown)}; a record has "
            f"{', '.join(sorted(_RECORD_FIELDS))}"
        )
    row: dict[str, Any] = {}
    key = _bytes_field(index, record, "key")
    if key is not None:
        row["key"] = key
    if "value_b64" in record:
        row["value"] = _base64(index, "value_b64", record["value_b64"])
        if "value" in record:
            raise InvalidRequest(f"record {index} has both value and value_b64: give one")
    else:
        row["value"] = _value(record.get("value"))
    headers = _headers(index, record)
    if headers:
        row["headers"] = headers
    if record.get("timestamp") is not None:
        row["timestamp"] = _timestamp(index, record["timestamp"])
    return row


def _value(value: object) -> object:
    if value is None or isinstance(value, (str, dict)):
        return value
    return json.dumps(value).encode()  # numbers, arrays, booleans: their JSON text


def _bytes_field(index: int, record: Mapping[str, Any], name: str) -> bytes | None:
    text, encoded = record.get(name), record.get(name + "_b64")
    if text is not None and encoded is not None:
        raise InvalidRequest(f"record {index} has both {name} and {name}_b64: give one")
    if encoded is not None:
        return _base64(index, name + "_b64", encoded)
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidRequest(f"record {index}: {name} must be a string, got {type(text).__name__}")
    return text.encode()


def _headers(index: int, record: Mapping[str, Any]) -> dict[str, bytes]:
    headers: dict[str, bytes] = {}
    for field, decode in (("headers", _text_bytes), ("headers_b64", _base64)):
        given = record.get(field)
        if given is None:
            continue
        if not isinstance(given, dict):
            raise InvalidRequest(f"record {index}: {field} must be an object of name to string")
        for name, value in given.items():
            headers[name] = decode(index, f"{field}.{name}", value)
    return headers


def _text_bytes(index: int, what: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise InvalidRequest(f"record {index}: {what} must be a string, got {type(value).__name__}")
    return value.encode()


def _base64(index: int, what: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise InvalidRequest(f"record {index}: {what} must be a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"record {index}: {what} is not valid base64") from None


def _timestamp(index: int, value: object) -> int:
    """Microseconds since the epoch (ISO text converted exactly, so that records of one
    request may mix both forms)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return (parsed - _EPOCH) // datetime.timedelta(microseconds=1)
    raise InvalidRequest(
        f"record {index}: timestamp is microseconds since the epoch (an integer) or ISO-8601 "
        f"text with an offset (2026-01-31T12:00:00Z), got {value!r}"
    )


def decode_key(text: str, encoding: str) -> bytes:
    """A key from a path segment or an ``expect`` object: ``text`` (UTF-8) or ``base64``."""
    if encoding == "text":
        return text.encode()
    if encoding == "base64":
        try:
            return base64.b64decode(
                text, altchars=b"-_" if "-" in text or "_" in text else None, validate=True
            )
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"key {text!r} is not valid base64") from None
    raise InvalidRequest(f"key_encoding is 'text' or 'base64', got {encoding!r}")


# -- reading ---------------------------------------------------------------------------------


def output_records(batch: pa.RecordBatch, *, json_values: bool, base64_values: bool) -> list[dict[str, Any]]:
    """The records of a read batch (STORED_SCHEMA, plus ``topic`` across topics, a
    delivery's ``attempt``, a key read from its snapshot's ``snapshot`` and ``state``)
    as JSON objects. ``json_values``: the values are JSON text (a schema'd topic read with
    ``value_format="json"``) and are given as JSON; ``base64_values``: every value (and
    state) is given as ``value_b64`` (``state_b64``)."""
    count = batch.num_rows
    if count == 0:
        return []
    names = batch.schema.names
    offsets = batch.column("offset").to_pylist()
    stamps = batch.column("timestamp").cast(pa.int64()).to_pylist()
    keys = batch.column("key").to_pylist()
    values = batch.column("value").to_pylist()
    headers = batch.column("headers").to_pylist()
    versions = batch.column("version").to_pylist()
    topics = batch.column("topic").to_pylist() if "topic" in names else None
    extra = {name: batch.column(name).to_pylist() for name in ("attempt", "snapshot") if name in names}
    states = batch.column("state").to_pylist() if "state" in names else None
    out = []
    for row in range(count):
        document: dict[str, Any] = {}
        if topics is not None:
            document["topic"] = topics[row]
        document["offset"] = offsets[row]
        document["timestamp"] = iso_micros(stamps[row])
        put_bytes(document, "key", keys[row])
        value = values[row]
        if json_values and value is not None and not base64_values:
            document["value"] = json.loads(value)
        elif base64_values and value is not None:
            document["value_b64"] = base64.b64encode(value).decode()
        else:
            put_bytes(document, "value", value)
        if headers[row]:
            _put_headers(document, headers[row])
        document["version"] = versions[row]
        for name, column in extra.items():
            document[name] = column[row]
        if states is not None:
            state = states[row]
            if base64_values and state is not None:
                document["state_b64"] = base64.b64encode(state).decode()
            else:
                put_bytes(document, "state", state)
        out.append(document)
    return out


def put_bytes(document: dict[str, Any], name: str, value: bytes | None) -> None:
    """``name`` as UTF-8 text, or ``name_b64`` when the bytes are not text; null stays."""
    if value is None:
        document[name] = None
        return
    try:
        document[name] = value.decode()
    except UnicodeDecodeError:
        document[name + "_b64"] = base64.b64encode(value).decode()


def _put_headers(document: dict[str, Any], pairs: list[tuple[str, bytes]]) -> None:
    text: dict[str, str] = {}
    encoded: dict[str, str] = {}
    for name, value in pairs:
        try:
            text[name] = value.decode()
        except UnicodeDecodeError:
            encoded[name] = base64.b64encode(value).decode()
    if text:
        document["headers"] = text
    if encoded:
        document["headers_b64"] = encoded


def iso_micros(micros: int) -> str:
    """ISO-8601 UTC with microseconds (``2026-01-31T12:00:00.000001Z``)."""
    stamp = _EPOCH + datetime.timedelta(microseconds=micros)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- reading, vectorized ------------------------------------------------------------------
# The common batch (keys, values and headers that are UTF-8 text without control
# characters other than \n, \r and \t) is written as JSON by Arrow compute, one pass per
# column; any other batch takes output_records (the per-record path). Both write the
# same documents (tests/protocols/http_api/test_http_api_json.py).

_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"
_YEAR_1000_MICROS = -30_610_224_000_000_000
_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))


def json_documents(batch: pa.RecordBatch, *, json_values: bool, base64_values: bool) -> pa.Array | None:
    """Each record of ``batch`` as the text of its JSON object (the documents of
    :func:`output_records`), or None when a batch needs the per-record path."""
    if batch.num_rows == 0 or base64_values or "attempt" in batch.schema.names:
        return None
    earliest = pc.min(batch.column("timestamp").cast(pa.int64())).as_py()
    if earliest is None or earliest < _YEAR_1000_MICROS:  # strftime pads years differently
        return None
    pieces: list[pa.Array | str] = []
    if "topic" in batch.schema.names:
        topic = _json_string(batch.column("topic"))
        if topic is None:
            return None
        pieces += ['{"topic": ', topic, ', "offset": ']
    else:
        pieces.append('{"offset": ')
    pieces += [pc.cast(batch.column("offset"), pa.string()), ', "timestamp": "']
    pieces += [pc.strftime(batch.column("timestamp"), format="%Y-%m-%dT%H:%M:%SZ"), '", "key": ']
    key = _json_string(batch.column("key"))
    if key is None:
        return None
    pieces += [key, ', "value": ']
    values = batch.column("value")
    if json_values:
        value: pa.Array | None = pc.fill_null(pc.cast(values, pa.string()), "null")
    else:
        value = _json_string(values)
    if value is None:
        return None
    pieces.append(value)
    headers = _json_headers(batch.column("headers"))
    if headers is None:
        return None
    pieces += [headers, ', "version": ']
    version = pc.fill_null(pc.cast(batch.column("version"), pa.string()), "null")
    pieces += [version, "}"]
    return pc.binary_join_element_wise(*pieces, "")


def _json_string(column: pa.Array) -> pa.Array | None:
    """``"text"`` (escaped) per row, ``null`` for a null; None if a row is not UTF-8
    text or holds a control character JSON would write as \\u00XX."""
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        try:
            column = column.cast(pa.string())  # checks the UTF-8 of every row
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
    if not pa.types.is_string(column.type):
        return None
    if pc.any(pc.match_substring_regex(column, _CONTROL)).as_py():
        return None
    for raw, escaped in _ESCAPES:
        column = pc.replace_substring(column, raw, escaped)
    quoted = pc.binary_join_element_wise('"', column, '"', "")
    return pc.fill_null(quoted, "null")


def _json_headers(headers: pa.Array) -> pa.Array | str | None:
    """``, "headers": {...}`` per row with headers, nothing for the others (as
    output_records leaves the field out); None if a header needs the per-record path."""
    if headers.null_count == len(headers):
        return ""
    if not isinstance(headers, pa.MapArray):
        return None
    # keys and items are the whole children (a slice's offsets point into them).
    names = _json_string(headers.keys)
    values = _json_string(headers.items)
    if names is None or values is None:
        return None
    pairs = pc.binary_join_element_wise(names, ": ", values, "")
    offsets = headers.offsets
    per_row = pa.ListArray.from_arrays(offsets, pairs)
    joined = pc.binary_join(per_row, ", ")
    wrapped = pc.binary_join_element_wise(', "headers": {', joined, "}", "")
    empty = pc.or_(pc.is_null(headers), pc.equal(pc.list_value_length(per_row), 0))
    return pc.if_else(empty, "", wrapped)


def combined(batches: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
    """A fetch's batches (one per stored frame, often small) as one, so that the JSON
    writer's fixed cost per batch is paid once; as they are if their schemas differ."""
    if len(batches) < 2:
        return batches
    try:
        return pa.Table.from_batches(batches).combine_chunks().to_batches() or batches
    except pa.ArrowInvalid:
        return batches


def records_json(batch: pa.RecordBatch, *, json_values: bool, base64_values: bool) -> str:
    """The records of ``batch`` as JSON objects joined by ``", "`` (the inside of a JSON
    array): by Arrow compute when it can, else record by record."""
    documents = json_documents(batch, json_values=json_values, base64_values=base64_values)
    if documents is not None:
        return concatenate(documents, separator=", ")
    records = output_records(batch, json_values=json_values, base64_values=base64_values)
    return ", ".join(json.dumps(record) for record in records)


def events(batch: pa.RecordBatch, *, json_values: bool, base64_values: bool) -> str:
    """The records of ``batch`` as Server-Sent Events (``id`` = offset, ``record``)."""
    documents = json_documents(batch, json_values=json_values, base64_values=base64_values)
    if documents is not None:
        offsets = pc.cast(batch.column("offset"), pa.string())
        framed = pc.binary_join_element_wise(
            "id: ", offsets, "\nevent: record\ndata: ", documents, "\n\n", ""
        )
        return concatenate(framed)
    records = output_records(batch, json_values=json_values, base64_values=base64_values)
    return "".join(
        f"id: {record['offset']}\nevent: record\ndata: {json.dumps(record)}\n\n" for record in records
    )


def concatenate(documents: pa.Array, *, before: str = "", after: str = "", separator: str = "") -> str:
    """``before + document + after`` for each, joined by ``separator``, as one string
    (Arrow's joins: no Python work per record)."""
    if before or after:
        documents = pc.binary_join_element_wise(before, documents, after, "")
    whole = pa.ListArray.from_arrays(pa.array([0, len(documents)], pa.int32()), documents)
    return str(pc.binary_join(whole, separator)[0].as_py())
