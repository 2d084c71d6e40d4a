"""Record batch compression: gzip, snappy, lz4 and zstd through ``cramjam``.

Kafka compresses the records of a batch as one block, named by the low three bits of
the batch attributes. Snappy comes in two shapes: raw snappy (librdkafka, aiokafka) and
the "xerial" framing of the Java client (a 16-byte header, then length-prefixed raw
blocks); both are read. LZ4 is the LZ4 frame format.

Decompression writes into a buffer of ``limits.kafka_decompressed_bytes_max`` bytes
(allocated lazily by the OS, so only what is written costs memory); output that would
not fit is refused, so a small "zip bomb" cannot inflate without bound.
"""

from __future__ import annotations

import enum
import struct
from typing import Any

import cramjam
import numpy as np

from odradek import limits
from odradek.protocols.kafka.codec.primitives import DecodeError

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER_BYTES = 16
_BLOCK_SIZE = struct.Struct(">i")


class Compression(enum.IntEnum):
    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


def compress(codec: Compression, data: bytes) -> bytes:
    if codec == Compression.NONE:
        return data
    if codec == Compression.GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec == Compression.SNAPPY:
        return bytes(cramjam.snappy.compress_raw(data))
    if codec == Compression.LZ4:
        return bytes(cramjam.lz4.compress(data))
    if codec == Compression.ZSTD:
        return bytes(cramjam.zstd.compress(data))
    raise DecodeError(f"unknown compression codec {codec}")


def decompress(codec: int, data: bytes | memoryview) -> memoryview:
    """The decompressed bytes of a batch's records, at most the configured limit."""
    if codec == Compression.NONE:
        return memoryview(data)
    limit = limits.kafka_decompressed_bytes_max
    # np.empty leaves the pages unmapped until written (the buffer protocol is untyped
    # in numpy's stubs, hence Any).
    output: Any = np.empty(limit, dtype=np.uint8)
    try:
        if codec == Compression.GZIP:
            size = cramjam.gzip.decompress_into(data, output)
        elif codec == Compression.SNAPPY:
            size = _snappy_into(bytes(data), output)
        elif codec == Compression.LZ4:
            size = cramjam.lz4.decompress_into(data, output)
        elif codec == Compression.ZSTD:
            size = cramjam.zstd.decompress_into(data, output)
        else:
            raise DecodeError(f"unknown compression codec {codec} in the batch attributes")
    except cramjam.DecompressionError as exc:
        raise DecodeError(
            f"could not decompress the batch ({Compression(codec).name.lower()}): it is corrupt "
            f"or inflates beyond {limit} bytes ({exc})"
        ) from None
    return memoryview(output)[:size]


def _snappy_into(data: bytes, output: Any) -> int:
    if not data.startswith(_XERIAL_MAGIC):
        return int(cramjam.snappy.decompress_raw_into(data, output))
    position = _XERIAL_HEADER_BYTES
    written = 0
    view = memoryview(output)
    while position < len(data):
        if position + 4 > len(data):
            raise DecodeError("truncated xerial snappy block header")
        (size,) = _BLOCK_SIZE.unpack_from(data, position)
        position += 4
        if size < 0 or position + size > len(data):
            raise DecodeError("xerial snappy block runs past the end of the batch")
        written += int(cramjam.snappy.decompress_raw_into(data[position : position + size], view[written:]))
        position += size
    return written
