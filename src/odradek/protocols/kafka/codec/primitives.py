"""The primitive types of the Kafka protocol, read from and written to byte buffers.

Fixed-size big-endian integers, booleans, UUIDs, unsigned varints (used by the compact
encodings of KIP-482) and zigzag varints (used inside record batches). Strings, byte
arrays and arrays come in a classic form (int16/int32 length, -1 for null) and a
compact form (unsigned varint length + 1, 0 for null) used by flexible versions.

Rules
-----
* A :class:`Reader` never reads past its end: every read that would raises
  :class:`DecodeError`, and a declared length is checked against the bytes that are
  actually there before anything is allocated. A 4-byte frame that claims a 2 GiB
  string therefore costs nothing.
* A :class:`Writer` collects output as a list of chunks so that large payloads (record
  batches) are appended by reference instead of copied into one growing buffer.
"""

from __future__ import annotations

import struct
import uuid

from odradek import limits

_INT8 = struct.Struct(">b")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")
_UINT16 = struct.Struct(">H")
_UINT32 = struct.Struct(">I")
_FLOAT64 = struct.Struct(">d")

ZERO_UUID = uuid.UUID(int=0)

# Payloads at least this large are kept as separate chunks by the Writer.
_CHUNK_BYTES_MIN = 4096


class DecodeError(ValueError):
    """The bytes are not a valid encoding of what was expected."""


class Reader:
    """A cursor over a bytes object; every method reads one value and advances."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def _take(self, size: int) -> int:
        start = self.pos
        if size < 0 or start + size > self.end:
            raise DecodeError(f"need {size} bytes at position {start}, only {self.end - start} left")
        self.pos = start + size
        return start

    def int8(self) -> int:
        value: int = _INT8.unpack_from(self.data, self._take(1))[0]
        return value

    def int16(self) -> int:
        value: int = _INT16.unpack_from(self.data, self._take(2))[0]
        return value

    def int32(self) -> int:
        value: int = _INT32.unpack_from(self.data, self._take(4))[0]
        return value

    def int64(self) -> int:
        value: int = _INT64.unpack_from(self.data, self._take(8))[0]
        return value

    def uint16(self) -> int:
        value: int = _UINT16.unpack_from(self.data, self._take(2))[0]
        return value

    def uint32(self) -> int:
        value: int = _UINT32.unpack_from(self.data, self._take(4))[0]
        return value

    def float64(self) -> float:
        value: float = _FLOAT64.unpack_from(self.data, self._take(8))[0]
        return value

    def boolean(self) -> bool:
        return self.data[self._take(1)] != 0

    def uuid(self) -> uuid.UUID:
        start = self._take(16)
        return uuid.UUID(bytes=bytes(self.data[start : start + 16]))

    def raw(self, size: int) -> bytes:
        start = self._take(size)
        return bytes(self.data[start : start + size])

    def uvarint(self) -> int:
        """An unsigned LEB128 varint of at most 5 bytes (32 bits)."""
        result = 0
        shift = 0
        data = self.data
        while True:
            if self.pos >= self.end:
                raise DecodeError("truncated varint")
            byte = data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7
            if shift > 28:
                raise DecodeError("varint longer than 5 bytes")

    def uvarlong(self) -> int:
        """An unsigned LEB128 varint of at most 10 bytes (64 bits)."""
        result = 0
        shift = 0
        data = self.data
        while True:
            if self.pos >= self.end:
                raise DecodeError("truncated varlong")
            byte = data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7
            if shift > 63:
                raise DecodeError("varlong longer than 10 bytes")

    def varint(self) -> int:
        """A zigzag-encoded signed varint."""
        value = self.uvarint()
        return (value >> 1) ^ -(value & 1)

    def varlong(self) -> int:
        value = self.uvarlong()
        return (value >> 1) ^ -(value & 1)

    # -- lengths ----------------------------------------------------------------------

    def length(self, compact: bool, wide: bool) -> int:
        """A length prefix: -1 means null. ``wide`` selects int32 over int16 (classic)."""
        if compact:
            return self.uvarint() - 1
        return self.int32() if wide else self.int16()

    def count(self, compact: bool) -> int:
        """An array's element count, -1 for null, checked to be plausible."""
        count = self.uvarint() - 1 if compact else self.int32()
        if count > self.remaining() or count > limits.kafka_array_length_max:
            # Every element occupies at least one byte, so this frame cannot hold them.
            raise DecodeError(f"array of {count} elements does not fit in {self.remaining()} bytes")
        return count


class Writer:
    """Output as a list of chunks; small writes are coalesced into a bytearray."""

    __slots__ = ("_chunks", "_current")

    def __init__(self) -> None:
        self._chunks: list[bytes | bytearray] = []
        self._current = bytearray()

    def int8(self, value: int) -> None:
        self._current += _INT8.pack(value)

    def int16(self, value: int) -> None:
        self._current += _INT16.pack(value)

    def int32(self, value: int) -> None:
        self._current += _INT32.pack(value)

    def int64(self, value: int) -> None:
        self._current += _INT64.pack(value)

    def uint16(self, value: int) -> None:
        self._current += _UINT16.pack(value)

    def uint32(self, value: int) -> None:
        self._current += _UINT32.pack(value)

    def float64(self, value: float) -> None:
        self._current += _FLOAT64.pack(value)

    def boolean(self, value: bool) -> None:
        self._current.append(1 if value else 0)

    def uuid(self, value: uuid.UUID) -> None:
        self._current += value.bytes

    def uvarint(self, value: int) -> None:
        current = self._current
        while value >= 0x80:
            current.append((value & 0x7F) | 0x80)
            value >>= 7
        current.append(value)

    def varint(self, value: int) -> None:
        self.uvarint((value << 1) ^ (value >> 31))

    def varlong(self, value: int) -> None:
        self.uvarint((value << 1) ^ (value >> 63))

    def raw(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) >= _CHUNK_BYTES_MIN:
            if self._current:
                self._chunks.append(self._current)
                self._current = bytearray()
            self._chunks.append(bytes(data) if isinstance(data, memoryview) else data)
        else:
            self._current += data

    def length(self, value: int, compact: bool, wide: bool) -> None:
        if compact:
            self.uvarint(value + 1)
        elif wide:
            self.int32(value)
        else:
            self.int16(value)

    def chunks(self) -> list[bytes | bytearray]:
        """Everything written so far, as chunks to send in order."""
        if self._current:
            self._chunks.append(self._current)
            self._current = bytearray()
        return self._chunks

    def size(self) -> int:
        return sum(len(chunk) for chunk in self._chunks) + len(self._current)

    def getvalue(self) -> bytes:
        return b"".join(self.chunks())


def uvarint_bytes(value: int) -> bytes:
    writer = Writer()
    writer.uvarint(value)
    return writer.getvalue()
