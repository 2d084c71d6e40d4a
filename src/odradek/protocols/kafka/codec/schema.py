"""Declarative message schemas: one frozen dataclass per message, fields tagged with
the versions they exist in, compiled once per (class, version) into a reader and a
writer.

Theory of operation
-------------------
Kafka describes each message as a tree of fields, each present in a range of versions,
nullable in a range of versions, and, in flexible versions (KIP-482), optionally a
*tagged* field that is written only when it differs from its default. We declare the
same tree as dataclasses::

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class MetadataRequestTopic:
        topic_id: uuid.UUID = f(UUID, "10+")
        name: str | None = f(STRING, "0+", nullable="10+")

A class holds the union of the fields of all versions, so the server builds one
response object whatever version the client speaks; fields absent from that version
are skipped when writing and take their defaults when reading.

:func:`compile_struct` turns (class, version, flexible) into a tuple of per-field
closures; both directions then run without looking at the metadata again. Compiled
codecs are cached per (class, version).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from odradek.protocols.kafka.codec.primitives import ZERO_UUID, DecodeError, Reader, Writer

T = TypeVar("T")

ReadFn = Callable[[Reader], Any]
WriteFn = Callable[[Writer, Any], None]

_META = "kafka"


# -- kinds ----------------------------------------------------------------------------


class Kind:
    """How one field's value is encoded. ``nullable`` and ``flexible`` are per version."""

    zero: Any = None

    def reader(self, flexible: bool, nullable: bool, version: int) -> ReadFn:
        raise NotImplementedError

    def writer(self, flexible: bool, nullable: bool, version: int) -> WriteFn:
        raise NotImplementedError


class _Fixed(Kind):
    def __init__(self, name: str, zero: Any) -> None:
        self.name = name
        self.zero = zero

    def reader(self, flexible: bool, nullable: bool, version: int) -> ReadFn:
        method: ReadFn = getattr(Reader, self.name)
        return method

    def writer(self, flexible: bool, nullable: bool, version: int) -> WriteFn:
        method: WriteFn = getattr(Writer, self.name)
        return method

    def __repr__(self) -> str:
        return self.name.upper()


INT8 = _Fixed("int8", 0)
INT16 = _Fixed("int16", 0)
INT32 = _Fixed("int32", 0)
INT64 = _Fixed("int64", 0)
UINT16 = _Fixed("uint16", 0)
FLOAT64 = _Fixed("float64", 0.0)
BOOL = _Fixed("boolean", False)
UUID = _Fixed("uuid", ZERO_UUID)


class _String(Kind):
    zero = ""

    def reader(self, flexible: bool, nullable: bool, version: int) -> ReadFn:
        def read(reader: Reader) -> str | None:
            size = reader.length(flexible, wide=False)
            if size < 0:
                if not nullable:
                    raise DecodeError("null string in a field that is not nullable")
                return None
            try:
                return reader.raw(size).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DecodeError(f"string is not UTF-8: {exc}") from None

        return read

    def writer(self, flexible: bool, nullable: bool, version: int) -> WriteFn:
        def write(writer: Writer, value: str | None) -> None:
            if value is None:
                writer.length(-1 if nullable else 0, flexible, wide=False)
                return
            data = value.encode("utf-8")
            writer.length(len(data), flexible, wide=False)
            writer.raw(data)

        return write

    def __repr__(self) -> str:
        return "STRING"


class _Bytes(Kind):
    zero = b""

    def reader(self, flexible: bool, nullable: bool, version: int) -> ReadFn:
        def read(reader: Reader) -> bytes | None:
            size = reader.length(flexible, wide=True)
            if size < 0:
                if not nullable:
                    raise DecodeError("null bytes in a field that is not nullable")
                return None
            return reader.raw(size)

        return read

    def writer(self, flexible: bool, nullable: bool, version: int) -> WriteFn:
        def write(writer: Writer, value: bytes | None) -> None:
            if value is None:
                writer.length(-1 if nullable else 0, flexible, wide=True)
                return
            writer.length(len(value), flexible, wide=True)
            writer.raw(value)

        return write

    def __repr__(self) -> str:
        return "BYTES"


STRING = _String()
BYTES = _Bytes()
RECORDS = _Bytes()  # record batches travel as opaque bytes; see codec/records.py


class Array(Kind):
    """An array of a primitive kind or of a message class."""

    zero = ()

    def __init__(self, element: Kind | type) -> None:
        self.element = element

    def _element_codec(self, flexible: bool, version: int) -> tuple[ReadFn, WriteFn]:
        if isinstance(self.element, Kind):
            return (
                self.element.reader(flexible, False, version),
                self.element.writer(flexible, False, version),
            )
        codec = compile_struct(self.element, version, flexible)
        return codec.read, codec.write

    def reader(self, flexible: bool, nullable: bool, version: int) -> ReadFn:
        read_element = self._element_codec(flexible, version)[0]

        def read(reader: Reader) -> tuple[Any, ...] | None:
            count = reader.count(flexible)
            if count < 0:
                if not nullable:
                    raise DecodeError("null array in a field that is not nullable")
                return None
            return tuple([read_element(reader) for _ in range(count)])

        return read

    def writer(self, flexible: bool, nullable: bool, version: int) -> WriteFn:
        write_element = self._element_codec(flexible, version)[1]

        def write(writer: Writer, value: tuple[Any, ...] | None) -> None:
            if value is None:
                writer.length(-1 if nullable else 0, flexible, wide=True)
                return
            writer.length(len(value), flexible, wide=True)
            for element in value:
                write_element(writer, element)

        return write

    def __repr__(self) -> str:
        name = self.element if isinstance(self.element, Kind) else self.element.__name__
        return f"Array({name})"


class Struct(Kind):
    """A nested message that is not in an array (e.g. a tagged ``CurrentLeader``)."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.zero = None  # the field's default is built from the class

    def reader(self, flexible: bool, nullable: bool, version: int) -> ReadFn:
        return compile_struct(self.cls, version, flexible).read

    def writer(self, flexible: bool, nullable: bool, version: int) -> WriteFn:
        return compile_struct(self.cls, version, flexible).write

    def __repr__(self) -> str:
        return f"Struct({self.cls.__name__})"


# -- declarations ---------------------------------------------------------------------


def _parse_range(text: str) -> tuple[int, int]:
    """Kafka's version ranges: ``"3+"``, ``"0-7"``, ``"5"``."""
    if text.endswith("+"):
        return int(text[:-1]), 1 << 15
    if "-" in text:
        low, high = text.split("-")
        return int(low), int(high)
    return int(text), int(text)


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    kind: Kind
    versions: tuple[int, int]
    nullable: tuple[int, int] | None
    tag: int | None


def f(
    kind: Kind,
    versions: str = "0+",
    *,
    nullable: str | None = None,
    tag: int | None = None,
    default: Any = dataclasses.MISSING,
) -> Any:
    """Declare a field: its kind, the versions it exists in, the versions it may be
    null in, and for tagged fields its tag (tagged in every flexible version it has)."""
    spec = FieldSpec(kind, _parse_range(versions), _parse_range(nullable) if nullable else None, tag)
    metadata = {_META: spec}
    if default is not dataclasses.MISSING:
        return dataclasses.field(default=default, metadata=metadata)
    if isinstance(kind, Struct):
        return dataclasses.field(default_factory=kind.cls, metadata=metadata)
    return dataclasses.field(default=kind.zero, metadata=metadata)


# -- compilation ----------------------------------------------------------------------


def _within(version: int, bounds: tuple[int, int] | None) -> bool:
    return bounds is not None and bounds[0] <= version <= bounds[1]


@dataclasses.dataclass(frozen=True)
class StructCodec:
    """The compiled reader and writer of one message class at one version."""

    cls: type
    version: int
    flexible: bool
    read: ReadFn
    write: WriteFn


_CACHE: dict[tuple[type, int, bool], StructCodec] = {}


def compile_struct(cls: type, version: int, flexible: bool) -> StructCodec:
    key = (cls, version, flexible)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    plain: list[tuple[str, ReadFn, WriteFn]] = []
    tagged: dict[int, tuple[str, ReadFn, WriteFn, Any]] = {}
    for field in dataclasses.fields(cls):
        spec: FieldSpec | None = field.metadata.get(_META)
        if spec is None or not _within(version, spec.versions):
            continue
        nullable = _within(version, spec.nullable)
        read = spec.kind.reader(flexible, nullable, version)
        write = spec.kind.writer(flexible, nullable, version)
        if spec.tag is not None:
            if flexible:
                tagged[spec.tag] = (field.name, read, write, _default_of(field))
            continue
        plain.append((field.name, read, write))
    tags = tuple(sorted(tagged.items()))

    def read_struct(reader: Reader) -> Any:
        values = {name: read(reader) for name, read, _ in plain}
        if flexible:
            for _ in range(reader.uvarint()):
                tag = reader.uvarint()
                size = reader.uvarint()
                start = reader._take(size)
                known = tagged.get(tag)
                if known is not None:
                    sub = Reader(reader.data, start, start + size)
                    values[known[0]] = known[1](sub)
        return cls(**values)

    def write_struct(writer: Writer, value: Any) -> None:
        for name, _, write in plain:
            write(writer, getattr(value, name))
        if flexible:
            present = [(tag, entry) for tag, entry in tags if getattr(value, entry[0]) != entry[3]]
            writer.uvarint(len(present))
            for tag, (name, _, write, _) in present:
                sub = Writer()
                write(sub, getattr(value, name))
                body = sub.getvalue()
                writer.uvarint(tag)
                writer.uvarint(len(body))
                writer.raw(body)

    codec = StructCodec(cls, version, flexible, read_struct, write_struct)
    _CACHE[key] = codec
    return codec


def _default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def field_specs(cls: type) -> list[tuple[str, FieldSpec]]:
    """The declared fields of a message class, for tests and documentation."""
    return [
        (field.name, field.metadata[_META]) for field in dataclasses.fields(cls) if _META in field.metadata
    ]


def uuid_or_zero(value: uuid.UUID | None) -> uuid.UUID:
    return ZERO_UUID if value is None else value
