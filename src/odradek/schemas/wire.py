"""The Schema Registry wire format: byte 0x00, a 4-byte big-endian schema id, then the
payload in the schema's own encoding (Avro binary or JSON text).

A JSON text never starts with byte 0x00, so a value is in the wire format exactly when
it is at least 5 bytes long and its first byte is 0x00: the split below needs no hint
from the producer. Everything here works on whole arrays with NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from odradek.schemas.arrays import offsets_and_data

MAGIC_BYTE = 0
HEADER_BYTES = 5


@dataclass(frozen=True)
class WireSplit:
    """Where each value's payload is, and which schema id (or -1: none) it names."""

    schema_ids: np.ndarray  # int64 per value; -1 for values without the header


def schema_ids_of(values: pa.Array) -> np.ndarray:
    """The schema id each value's header names, or -1 where it has no header."""
    count = len(values)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    offsets, data = offsets_and_data(values)
    starts = offsets[:-1]
    lengths = offsets[1:] - starts
    ids = np.full(count, -1, dtype=np.int64)
    long_enough = lengths >= HEADER_BYTES
    if not long_enough.any():
        return ids
    candidates = np.flatnonzero(long_enough)
    first = data[starts[candidates]]
    framed = candidates[first == MAGIC_BYTE]
    if len(framed):
        at = starts[framed]
        ids[framed] = (
            (data[at + 1].astype(np.int64) << 24)
            | (data[at + 2].astype(np.int64) << 16)
            | (data[at + 3].astype(np.int64) << 8)
            | data[at + 4].astype(np.int64)
        )
    return ids


def strip_header(values: pa.Array) -> pa.Array:
    """The payloads of values that all carry the header (binary, without the 5 bytes)."""
    values = values.cast(pa.binary())
    if values.null_count:
        raise ValueError("strip_header needs values without nulls")
    offsets, data = offsets_and_data(values)
    low, high = int(offsets[0]), int(offsets[-1])
    keep = np.ones(high - low, dtype=bool)
    headers = (offsets[:-1] - low)[:, None] + np.arange(HEADER_BYTES)
    keep[headers.ravel()] = False
    payload_offsets = (offsets - low) - HEADER_BYTES * np.arange(len(offsets), dtype=np.int64)
    return pa.Array.from_buffers(
        pa.binary(),
        len(values),
        [None, pa.py_buffer(payload_offsets.astype(np.int32)), pa.py_buffer(data[low:high][keep])],
    )


def add_header(payloads: pa.Array, schema_id: int) -> pa.Array:
    """Prefix every payload with the header naming ``schema_id``."""
    header = bytes([MAGIC_BYTE]) + int(schema_id).to_bytes(4, "big")
    return pc.binary_join_element_wise(
        pa.scalar(header, pa.binary()), payloads.cast(pa.binary()), pa.scalar(b"", pa.binary())
    )
