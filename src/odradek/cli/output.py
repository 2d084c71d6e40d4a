"""Records as text: raw values one per line, or JSON Lines (DESIGN §3).

JSONL fields: ``topic, offset, key, value, version, timestamp, headers``. Bytes are
written as UTF-8 where valid, else base64 under the field name with a ``_b64`` suffix
(``"value_b64": "..."``); header values follow the same rule inside ``headers``. A
record with a header *name* that is not UTF-8 (stored before appends refused them)
gets ``headers_b64`` instead of ``headers``: every name and value in base64
(``{"/w==": "dg=="}``). Any record can therefore be written out: none stops a
``consume``.

A batch is formatted with Arrow string kernels, column by column: each column becomes
an array of JSON fragments and the fragments are joined element-wise. Batches that
need care the kernels cannot give (invalid UTF-8, control characters other than
``\\t \\n \\r``, headers) are formatted record by record instead; they are rare.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from odradek.cli.terminal import human_bytes
from odradek.errors import InvalidRequest
from odradek.lazy_import import lazy_module

if TYPE_CHECKING:
    import pyarrow.compute as pc
else:  # ~50 ms to import, and `topic list` and friends never use it
    pc = lazy_module("pyarrow.compute")

# JSON string escapes the kernels apply, in order (backslash first).
_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))
_OTHER_CONTROL = "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f]"
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # Arrow prints the microseconds with %S

__all__ = ["Template", "human_bytes", "jsonl", "rows", "values_text"]


def _typed_json(batch: pa.RecordBatch) -> pa.Array | None:
    """A schema'd topic's typed values as JSON text; None for opaque values."""
    values = batch.column("value")
    if not pa.types.is_struct(values.type):
        return None
    from odradek.schemas.json_values import encode_json

    return encode_json(values).cast(pa.binary())


def values_text(batch: pa.RecordBatch) -> bytes:
    """The batch's values, one per line: as appended, or as JSON for typed values."""
    typed = _typed_json(batch)
    values = typed if typed is not None else batch.column("value")
    if values.null_count:  # only then: fill_null's scalar makes pyarrow import pandas
        values = values.fill_null(b"")
    return b"\n".join(values.to_pylist()) + b"\n"


def jsonl(batch: pa.RecordBatch, topic: str | None = None) -> bytes:
    """The batch as JSON Lines; ``topic`` names the topic when the batch has no column for it."""
    if batch.num_rows == 0:
        return b""
    fast = _jsonl_columnar(batch, topic)
    if fast is not None:
        return fast
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows(batch, topic)).encode()


def rows(batch: pa.RecordBatch, topic: str | None = None) -> list[dict[str, Any]]:
    """The batch's records as JSON-able dicts (the slow, exact path)."""
    # Timestamps are formatted by Arrow below (any year); header names are read as
    # bytes, so a name that is not UTF-8 cannot fail the conversion.
    columns = {
        name: batch.column(name).to_pylist()
        for name in batch.schema.names
        if name not in ("timestamp", "headers")
    }
    headers_column = batch.column("headers")
    if pa.types.is_map(headers_column.type):
        headers_column = headers_column.cast(_BYTES_HEADERS)
    all_headers = headers_column.to_pylist()
    typed = _typed_json(batch)
    typed_values = None if typed is None else [json.loads(v) for v in typed.to_pylist()]
    timestamps = pc.strftime(batch.column("timestamp"), format=_TIMESTAMP_FORMAT).to_pylist()
    result = []
    for index in range(batch.num_rows):
        row: dict[str, Any] = {"topic": columns["topic"][index] if "topic" in columns else topic}
        row["offset"] = columns["offset"][index]
        _put_bytes(row, "key", columns["key"][index])
        if typed_values is not None:
            row["value"] = typed_values[index]
        else:
            _put_bytes(row, "value", columns["value"][index])
        row["version"] = columns["version"][index]
        row["timestamp"] = timestamps[index]
        row.update(_headers_field(all_headers[index] or []))
        result.append(row)
    return result


_BYTES_HEADERS = pa.map_(pa.binary(), pa.binary())
# The column `odradek consume` adds for ``%p``: each record's Kafka partition (consume.py).
PARTITION_COLUMN = "kafka_partition"


def _headers_field(pairs: list[tuple[bytes, bytes | None]]) -> dict[str, Any]:
    """``{"headers": ...}``, or ``{"headers_b64": ...}`` if a name is not UTF-8."""
    try:
        named = [(name.decode(), value) for name, value in pairs]
    except UnicodeDecodeError:
        return {
            "headers_b64": {_base64(name): None if value is None else _base64(value) for name, value in pairs}
        }
    headers: dict[str, Any] = {}
    for name, value in named:
        _put_bytes(headers, name, value)
    return {"headers": headers}


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _put_bytes(target: dict[str, Any], name: str, value: bytes | None) -> None:
    if value is None:
        target[name] = None
        return
    try:
        target[name] = value.decode()
    except UnicodeDecodeError:
        target[name + "_b64"] = base64.b64encode(value).decode()


def _jsonl_columnar(batch: pa.RecordBatch, topic: str | None) -> bytes | None:
    if batch.column("headers").null_count != batch.num_rows:
        return None
    key = _json_string(batch.column("key"))
    typed = _typed_json(batch)
    value = typed.cast(pa.utf8()) if typed is not None else _json_string(batch.column("value"))
    if key is None or value is None:
        return None
    if "topic" in batch.schema.names:
        topic_json = _json_string(batch.column("topic"))
        if topic_json is None:
            return None
    else:
        topic_json = pa.repeat(pa.scalar(json.dumps(topic), pa.utf8()), batch.num_rows)
    version = pc.fill_null(pc.cast(batch.column("version"), pa.utf8()), "null")
    timestamp = pc.strftime(batch.column("timestamp"), format=_TIMESTAMP_FORMAT)
    lines = pc.binary_join_element_wise(
        '{"topic":', topic_json,
        ',"offset":', pc.cast(batch.column("offset"), pa.utf8()),
        ',"key":', key,
        ',"value":', value,
        ',"version":', version,
        ',"timestamp":"', timestamp,
        '","headers":{}}\n',
        "",
    )  # fmt: skip
    return _concatenate(lines)


def _json_string(column: pa.Array) -> pa.Array | None:
    """Each value as a JSON string literal (null as ``null``), or None if any value is
    not valid UTF-8 or holds a control character the kernels do not escape."""
    try:
        text = column.cast(pa.utf8()) if not pa.types.is_string(column.type) else column
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if pc.any(pc.match_substring_regex(text, _OTHER_CONTROL)).as_py():
        return None
    for plain, escaped in _ESCAPES:
        text = pc.replace_substring(text, plain, escaped)
    quoted = pc.binary_join_element_wise('"', text, '"', "")
    return pc.fill_null(quoted, "null")


def _concatenate(lines: pa.Array) -> bytes:
    """The strings of ``lines`` back to back, joined by Arrow rather than per element."""
    as_list = pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines.cast(pa.binary()))
    joined = pc.binary_join(as_list, b"")[0]
    buffer = joined.as_buffer()
    return buffer.to_pybytes() if buffer is not None else b""


class Template:
    """A kcat-style output template (``--format '%k=%v\\n'``), compiled once.

    ``%t`` topic, ``%p`` Kafka partition (consume only), ``%o`` offset, ``%k`` key, ``%v``
    (or ``%s``) value, ``%h`` headers as ``name=value`` joined by ``,``, ``%T`` timestamp
    in epoch milliseconds, ``%V`` the key's version, ``%K`` / ``%S`` key / value length
    in bytes, ``%%`` a ``%``;
    ``\\n``, ``\\r``, ``\\t``, ``\\0`` and ``\\\\`` escapes. Nothing is added at the end of
    a record (as in kcat): end the template with ``\\n`` for one record a line. A null key
    or value prints as nothing. Records are formatted a batch at a time by Arrow kernels.
    """

    FIELDS = "tpokvshTVKS"
    _ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\"}

    def __init__(self, text: str) -> None:
        self.text = text
        self.parts: list[tuple[bool, str]] = []  # (is a field, literal text or field letter)
        literal: list[str] = []
        index = 0
        while index < len(text):
            character = text[index]
            following = text[index + 1] if index + 1 < len(text) else ""
            if character == "%" and following == "%":
                literal.append("%")
            elif character == "%":
                if following not in self.FIELDS:
                    raise InvalidRequest(
                        f"--format: %{following} is not a field; the fields are %t topic, %p Kafka "
                        "partition, %o offset, "
                        "%k key, %v value, %h headers, %T timestamp (ms), %V version, %K and %S "
                        "key and value length, %% a percent sign"
                    )
                if literal:
                    self.parts.append((False, "".join(literal)))
                    literal = []
                self.parts.append((True, following))
            elif character == "\\" and following in self._ESCAPES:
                literal.append(self._ESCAPES[following])
            else:
                literal.append(character)
                index += 1
                continue
            index += 2
        if literal:
            self.parts.append((False, "".join(literal)))

    def format(self, batch: pa.RecordBatch, topic: str | None) -> bytes:
        if batch.num_rows == 0:
            return b""
        pieces = [self._column(batch, topic, part) if field else part.encode() for field, part in self.parts]
        if not any(isinstance(piece, pa.Array) for piece in pieces):
            constant: bytes = b"".join(piece for piece in pieces if isinstance(piece, bytes))
            return constant * int(batch.num_rows)
        lines: pa.Array = pc.binary_join_element_wise(*pieces, b"")
        return _concatenate(lines)

    def _column(self, batch: pa.RecordBatch, topic: str | None, field: str) -> pa.Array:
        count = batch.num_rows
        if field == "t":
            if "topic" in batch.schema.names:
                return batch.column("topic").cast(pa.binary())
            return pa.repeat(pa.scalar((topic or "").encode(), pa.binary()), count)
        if field == "o":
            return pc.cast(batch.column("offset"), pa.utf8()).cast(pa.binary())
        if field == "p":
            if PARTITION_COLUMN not in batch.schema.names:
                raise InvalidRequest("--format: %p (the Kafka partition) is known to odradek consume only")
            return pc.cast(batch.column(PARTITION_COLUMN), pa.utf8()).cast(pa.binary())
        if field == "V":
            return pc.fill_null(pc.cast(batch.column("version"), pa.utf8()), "").cast(pa.binary())
        if field == "T":
            milliseconds = pc.divide(batch.column("timestamp").cast(pa.int64()), 1000)
            return pc.cast(milliseconds, pa.utf8()).cast(pa.binary())
        if field == "h":
            return _headers_text(batch.column("headers"))
        if field in "kK":
            column = batch.column("key")
        else:
            typed = _typed_json(batch)
            column = typed if typed is not None else batch.column("value")
        column = column.cast(pa.binary())
        if field in "KS":
            lengths = pc.fill_null(pc.binary_length(column), 0)
            return pc.cast(lengths, pa.utf8()).cast(pa.binary())
        return pc.fill_null(column, b"") if column.null_count else column


def _headers_text(headers: pa.Array) -> pa.Array:
    """Each record's headers as ``name=value,name=value`` (none: empty), by Arrow kernels."""
    if pa.types.is_map(headers.type):
        headers = headers.cast(_BYTES_HEADERS)
    entries = headers.values  # every entry of the whole array: the offsets below are absolute
    names, values = entries.field(0), entries.field(1)
    if values.null_count:
        values = pc.fill_null(values, b"")
    pairs = pc.binary_join_element_wise(names, values, b"=")
    as_lists = pa.ListArray.from_arrays(headers.offsets, pairs)
    return pc.fill_null(pc.binary_join(as_lists, b","), b"")
