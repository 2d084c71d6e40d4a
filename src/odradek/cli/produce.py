"""``odradek produce``: the lines of stdin appended to a topic, in batches.

Blocks of stdin are split into lines by an Arrow kernel and appended ``--batch`` lines
at a time, never one by one. A line is a value, or KEY SEP VALUE with ``-K SEP``
(``--keyed``: a TAB); ``-H NAME=VALUE`` headers and ``--timestamp`` go on every record.
Columns are built from buffers (NumPy offsets, repeated bytes), never from Python lists
of records. Arrays are never built with ``pa.array(list)`` or ``pa.scalar``: both import
pandas (pyarrow looks for a Series), which costs the command 0.15 s.
"""

from __future__ import annotations

import argparse
import io
import os
import select
import stat
import sys
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from odradek import limits
from odradek.cli import terminal
from odradek.cli.progress import Bar, count_line
from odradek.client.remote import connect
from odradek.errors import InvalidRequest, OdradekError, TopicNotFound
from odradek.records import HEADERS_TYPE, TIMESTAMP_TYPE

# stdin is read in blocks of this size; lines are split out of each block by Arrow.
stdin_block_bytes = limits.produce_stdin_block_bytes
# A partial batch waits at most this long for more lines before it is sent, so that
# typing or a slow pipe still produces records promptly.
produce_linger_seconds = 0.2
# One append carries at most this many bytes of values, well under the append limit.
produce_batch_bytes_max = limits.produce_batch_bytes_max

# `-K` takes these escapes, so that a TAB or a NUL can be typed in a shell.
_ESCAPES = {"\\t": "\t", "\\0": "\0", "\\\\": "\\", "\\r": "\r"}


def produce(args: argparse.Namespace) -> int:
    options = _Options.from_args(args)
    written = 0
    with connect(args.server) as client:
        if args.create:
            client.create_topic(args.topic, exist_ok=True)
        else:
            try:
                client.describe_topic(args.topic)  # a clear refusal before reading stdin
            except TopicNotFound as exc:
                exc.message += f"; add --create to create it (or: odradek topic create {args.topic})"
                exc.args = (exc.message,)
                raise
        expected = args.expect_version
        size = _input_bytes(sys.stdin.buffer)
        progress = Bar(args.topic, total=size, unit="bytes" if size is not None else "records")
        try:
            for lines in batched(read_lines(sys.stdin.buffer), args.batch):
                batch = options.batch(lines)
                key = options.key
                expect = {key: expected} if key is not None and expected is not None else None
                result = client.append(args.topic, batch, expect=expect)
                written += result.count
                if expected is not None and key is not None:
                    expected = result.versions[key]  # the next batch continues the chain
                described = f"{args.topic}: {terminal.plural(written, 'record')}"
                if size is None:
                    progress.advance(result.count, description=args.topic)
                else:  # the bar counts the bytes of stdin read
                    progress.advance(_line_bytes(lines), description=described)
        except OdradekError as exc:
            if written:
                exc.message += f" ({terminal.plural(written, 'record')} appended before this failure)"
                exc.args = (exc.message,)
            raise
        finally:
            progress.finish(count_line(args.topic, written, "record", progress.elapsed()))
    return 0


def _input_bytes(stream: BinaryIO) -> int | None:
    """What is left to read of ``stream`` when it is a regular file (a progress bar's
    total), else None (a pipe, a terminal)."""
    try:
        status = os.fstat(stream.fileno())
        if not stat.S_ISREG(status.st_mode):
            return None
        return max(status.st_size - stream.tell(), 0)
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


def _line_bytes(lines: pa.Array) -> int:
    """The bytes ``lines`` took in the input: their own and a newline each."""
    if not len(lines):
        return 0
    total = pc.sum(pc.binary_length(lines)).as_py()
    return int(total or 0) + len(lines)


class _Options:
    """What every record of a run shares: the key or the separator, headers, timestamp."""

    def __init__(
        self,
        key: bytes | None,
        separator: bytes | None,
        headers: list[tuple[bytes, bytes]],
        timestamp: int | None,
    ) -> None:
        self.key = key
        self.separator = separator
        self.headers = headers
        self.timestamp = timestamp

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> _Options:
        if args.expect_version is not None and args.key is None:
            raise InvalidRequest("--expect-version needs --key: it is the version that key must be at")
        if args.batch < 1 or args.batch > limits.append_records_max:
            raise InvalidRequest(f"--batch must be between 1 and {limits.append_records_max}")
        separator = parse_separator(args.key_separator) if args.key_separator is not None else None
        if args.keyed:
            separator = b"\t"
        timestamp = terminal.parse_moment(args.timestamp, "--timestamp") if args.timestamp else None
        key = args.key.encode() if args.key is not None else None
        return cls(key, separator, parse_headers(args.header or []), timestamp)

    def batch(self, lines: pa.Array) -> pa.RecordBatch:
        return to_batch(
            lines, self.key, separator=self.separator, headers=self.headers, timestamp=self.timestamp
        )


def parse_separator(text: str) -> bytes:
    """``-K SEP``: the bytes between key and value; ``\\t``, ``\\0``, ``\\r`` and ``\\\\`` escapes."""
    for escape, character in _ESCAPES.items():
        text = text.replace(escape, character)
    if not text:
        raise InvalidRequest("-K needs a separator of at least one character, e.g. -K : or -K '\\t'")
    if "\n" in text:
        raise InvalidRequest("-K: the separator cannot hold a newline (each line is one record)")
    return text.encode()


def parse_headers(pairs: list[str]) -> list[tuple[bytes, bytes]]:
    """``-H NAME=VALUE`` (repeatable): every record's headers, in order."""
    if len(pairs) > limits.header_count_max:
        raise InvalidRequest(f"at most {limits.header_count_max} headers per record; got {len(pairs)}")
    headers = []
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise InvalidRequest(f"-H takes NAME=VALUE, e.g. -H source=cli; got {pair!r}")
        headers.append((name.encode(), value.encode()))
    return headers


def read_lines(stream: BinaryIO) -> Iterator[pa.Array]:
    """Lines of ``stream`` (without their newline) as binary arrays, a block at a time.

    When the input pauses for ``produce_linger_seconds`` an empty array is yielded, to
    tell :func:`batched` to send what it holds: typed or trickling input is not held
    back waiting for a full batch.
    """
    tail = b""
    descriptor = _fileno(stream)
    while True:
        if descriptor is not None and not _readable(descriptor, produce_linger_seconds):
            yield _NO_LINES
            continue
        block = _read_block(stream)
        if not block:
            break
        data = tail + block
        cut = data.rfind(b"\n")
        if cut < 0:
            tail = data
            continue
        tail = data[cut + 1 :]
        yield _split_lines(data[:cut])
    if tail:
        yield _split_lines(tail)


_NO_LINES = pa.nulls(0, pa.binary())


def binary_array(data: bytes, offsets: np.ndarray, kind: pa.DataType | None = None) -> pa.Array:
    """A binary (or utf8) array over ``data`` cut at ``offsets`` (int32, one more than rows)."""
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)]
    return pa.Array.from_buffers(kind or pa.binary(), len(offsets) - 1, buffers)


def repeated(value: bytes, count: int, kind: pa.DataType | None = None) -> pa.Array:
    """``value`` ``count`` times, as one array sharing no Python objects."""
    offsets = np.arange(count + 1, dtype=np.int64) * len(value)
    if offsets[-1] > np.iinfo(np.int32).max:
        raise InvalidRequest(f"{count} copies of a {len(value)}-byte value do not fit one batch")
    return binary_array(value * count, offsets, kind)


def _split_lines(data: bytes) -> pa.Array:
    whole = binary_array(data, np.array([0, len(data)], np.int64))
    return pc.split_pattern(whole, pattern=b"\n").flatten()


def _read_block(stream: BinaryIO) -> bytes:
    read1 = getattr(stream, "read1", None)
    return bytes(read1(stdin_block_bytes) if read1 is not None else stream.read(stdin_block_bytes))


def _fileno(stream: BinaryIO) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None


def _readable(descriptor: int, timeout: float) -> bool:
    try:
        ready, _, _ = select.select([descriptor], [], [], timeout)
    except (OSError, ValueError):
        return True
    return bool(ready)


def batched(chunks: Iterator[pa.Array], size: int) -> Iterator[pa.Array]:
    """Arrays of ``size`` lines (and at most ``produce_batch_bytes_max`` bytes) out of
    arrays of any length; an empty array (input paused) or the end sends a partial one."""
    pending: list[pa.Array] = []
    count = 0
    for chunk in chunks:
        if len(chunk) == 0:
            if count:
                yield from _by_bytes(pa.concat_arrays(pending))
                pending, count = [], 0
            continue
        pending.append(chunk)
        count += len(chunk)
        if count < size:
            continue
        lines = pa.concat_arrays(pending)
        whole = (len(lines) // size) * size
        for start in range(0, whole, size):
            yield from _by_bytes(lines.slice(start, size))
        pending = [lines.slice(whole)] if whole < len(lines) else []
        count = len(lines) - whole
    if count:
        yield from _by_bytes(pa.concat_arrays(pending))


def _by_bytes(lines: pa.Array) -> Iterator[pa.Array]:
    if lines.nbytes <= produce_batch_bytes_max:
        yield lines
        return
    ends = np.cumsum(pc.binary_length(lines).to_numpy(zero_copy_only=False) + 8)
    start = 0
    while start < len(lines):
        base = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, base + produce_batch_bytes_max, side="right"))
        stop = max(stop, start + 1)
        yield lines.slice(start, stop - start)
        start = stop


def to_batch(
    lines: pa.Array,
    key: bytes | None = None,
    *,
    separator: bytes | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    timestamp: int | None = None,
) -> pa.RecordBatch:
    """Records from lines: the line is the value, with ``key`` for all; or, with a
    ``separator``, KEY SEP VALUE (split at the first SEP). ``headers`` and
    ``timestamp`` (microseconds since the epoch, UTC) go on every record."""
    count = len(lines)
    if separator is not None:
        parts = pc.split_pattern(lines, pattern=separator, max_splits=1)
        lengths = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
        missing = np.flatnonzero(lengths < 2)
        if len(missing):
            shown = "TAB" if separator == b"\t" else repr(separator.decode(errors="replace"))
            raise InvalidRequest(
                f"a line has no {shown} between key and value: {lines[int(missing[0])].as_py()!r}"
            )
        keys = pc.list_element(parts, 0)
        values = pc.list_element(parts, 1)
    else:
        values = lines
        keys = repeated(key, count) if key is not None else pa.nulls(count, pa.binary())
    columns = [keys, values]
    names = ["key", "value"]
    if headers:
        columns.append(_headers_column(headers, count))
        names.append("headers")
    if timestamp is not None:
        stamps = pa.py_buffer(np.full(count, timestamp, np.int64))
        columns.append(pa.Array.from_buffers(TIMESTAMP_TYPE, count, [None, stamps]))
        names.append("timestamp")
    return pa.RecordBatch.from_arrays(columns, names=names)


def _headers_column(headers: list[tuple[bytes, bytes]], count: int) -> pa.Array:
    """The same headers on ``count`` records, as a map column built from buffers."""
    names = b"".join(name for name, _ in headers)
    values = b"".join(value for _, value in headers)
    name_offsets = np.cumsum([0, *(len(name) for name, _ in headers)])
    value_offsets = np.cumsum([0, *(len(value) for _, value in headers)])
    per_record = len(headers)
    # One copy of the pairs per record: offsets and bytes tiled by NumPy.
    total_names = np.concatenate([[0], (name_offsets[1:] + len(names) * np.arange(count)[:, None]).ravel()])
    total_values = np.concatenate(
        [[0], (value_offsets[1:] + len(values) * np.arange(count)[:, None]).ravel()]
    )
    if total_names[-1] > np.iinfo(np.int32).max or total_values[-1] > np.iinfo(np.int32).max:
        raise InvalidRequest("the headers of one batch are too large: lower --batch")
    keys = binary_array(names * count, total_names, pa.utf8())
    items = binary_array(values * count, total_values)
    offsets = (np.arange(count + 1) * per_record).astype(np.int32)
    offsets_array = pa.Array.from_buffers(pa.int32(), count + 1, [None, pa.py_buffer(offsets)])
    return pa.MapArray.from_arrays(offsets_array, keys, items, type=HEADERS_TYPE)
