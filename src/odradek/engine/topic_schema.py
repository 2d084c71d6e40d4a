"""A topic's schema: its versions, the offsets from which each applies, and the
conversion of appended values into the typed ``value`` column.

Rules
-----
* A topic either never has a schema or has one from its creation (or from a moment
  when it held no records): a log never mixes opaque and typed values.
* Versions are append-only and numbered from 1. Version *n* applies to the frames at
  offsets >= its ``from_offset`` (and below the next version's), so a frame is decoded
  with the stored schema of the version it was written under. ``from_offset`` is the
  log's next offset when the version was set, under the topic's writer lock.
* Reads return values in the type of the newest version (older frames are evolved:
  added fields take their default or null, promoted types are cast).
* Appended values may be typed (a struct column, or dicts turned into one), JSON text,
  or the Schema Registry wire format naming one of this topic's versions by id.
  Whatever the form, nothing is written unless every value conforms.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from odradek.errors import SchemaViolation
from odradek.records import STORED_SCHEMA
from odradek.schemas import compile_schema, wire
from odradek.schemas.model import CompiledSchema

_VALUE_INDEX = STORED_SCHEMA.get_field_index("value")


@dataclass(frozen=True)
class SchemaVersion:
    version: int
    schema_id: int
    kind: str
    text: str
    from_offset: int

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "id": self.schema_id,
            "kind": self.kind,
            "text": self.text,
            "from_offset": self.from_offset,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SchemaVersion:
        return cls(
            int(data["version"]),
            int(data["id"]),
            str(data["kind"]),
            str(data["text"]),
            int(data["from_offset"]),
        )


def stored_schema_for(value_type: pa.DataType) -> pa.Schema:
    """STORED_SCHEMA with ``value`` of the given type."""
    return STORED_SCHEMA.set(_VALUE_INDEX, pa.field("value", value_type))


class TopicSchema:
    """The versions of one topic's schema; immutable (a change makes a new object)."""

    def __init__(self, versions: list[SchemaVersion], compatibility: str) -> None:
        if not versions:
            raise ValueError("a topic schema has at least one version")
        self.versions = versions
        self.compatibility = compatibility
        self._starts = [v.from_offset for v in versions]
        self._compiled: dict[int, CompiledSchema] = {}
        self._stored: dict[int, pa.Schema] = {}
        self.latest = versions[-1]
        self.compiled_latest = self.compiled(self.latest.version)
        self.value_type: pa.StructType = self.compiled_latest.value_type
        self.stored_schema = self.stored(self.latest.version)

    # -- persistence ------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"compatibility": self.compatibility, "versions": [v.to_json() for v in self.versions]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TopicSchema:
        return cls([SchemaVersion.from_json(v) for v in data["versions"]], str(data["compatibility"]))

    def with_version(self, compiled: CompiledSchema, schema_id: int, from_offset: int) -> TopicSchema:
        version = SchemaVersion(self.latest.version + 1, schema_id, compiled.kind, compiled.text, from_offset)
        result = TopicSchema([*self.versions, version], self.compatibility)
        result._compiled.update(self._compiled)
        result._compiled[version.version] = compiled
        return result

    def with_compatibility(self, mode: str) -> TopicSchema:
        result = TopicSchema(self.versions, mode)
        result._compiled.update(self._compiled)
        return result

    def clamped_to(self, next_offset: int) -> TopicSchema:
        """After a crash cut the log's tail: no version may start past the log's end."""
        if all(v.from_offset <= next_offset for v in self.versions):
            return self
        versions = [
            SchemaVersion(v.version, v.schema_id, v.kind, v.text, min(v.from_offset, next_offset))
            for v in self.versions
        ]
        return TopicSchema(versions, self.compatibility)

    # -- lookups ----------------------------------------------------------------------

    def compiled(self, version: int) -> CompiledSchema:
        known = self._compiled.get(version)
        if known is None:
            entry = self.versions[version - 1]
            known = self._compiled[version] = compile_schema(entry.text, entry.kind)
        return known

    def stored(self, version: int) -> pa.Schema:
        known = self._stored.get(version)
        if known is None:
            known = self._stored[version] = stored_schema_for(self.compiled(version).value_type)
        return known

    def version_at(self, offset: int) -> int:
        """The version the frame starting at ``offset`` was written under."""
        # The last version whose from_offset <= offset; several versions set while the
        # topic took no appends share a from_offset, and the newest of them applies.
        position = bisect.bisect_right(self._starts, offset)
        return self.versions[max(position - 1, 0)].version

    def stored_at(self, offset: int) -> pa.Schema:
        return self.stored(self.version_at(offset))

    def by_id(self, schema_id: int) -> SchemaVersion | None:
        for version in reversed(self.versions):
            if version.schema_id == schema_id:
                return version
        return None

    def history(self) -> list[pa.StructType]:
        return [self.compiled(v.version).value_type for v in self.versions]

    # -- values in ----------------------------------------------------------------------

    def conform(self, values: pa.Array, topic: str) -> pa.Array:
        """Appended values → the newest version's typed struct column, all or nothing."""
        if values.null_count:
            index = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
            raise SchemaViolation(
                f"record {index} has no value; topic {topic} has a schema and every record needs a value",
                index,
                "",
            )
        if pa.types.is_struct(values.type):
            from odradek.schemas.conform import conform_struct

            conformed = conform_struct(values, self.value_type)
            self.compiled_latest.codec.check(conformed)
            return conformed
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        ids = wire.schema_ids_of(values)
        framed = ids >= 0
        if not framed.any():
            return self._from_json(values)
        groups: list[tuple[np.ndarray, pa.Array]] = []
        if not framed.all():
            plain = np.flatnonzero(~framed)
            groups.append((plain, _located(plain, lambda: self._from_json(values.take(pa.array(plain))))))
        for schema_id in np.unique(ids[framed]).tolist():
            where = np.flatnonzero(ids == schema_id)
            version = self.by_id(int(schema_id))
            if version is None:
                raise SchemaViolation(
                    f"record {int(where[0])} names schema id {schema_id}, which is not a version of "
                    f"topic {topic}'s schema (its ids are {[v.schema_id for v in self.versions]})",
                    int(where[0]),
                    "",
                )
            payloads = wire.strip_header(values.take(pa.array(where)))
            groups.append((where, _located(where, functools.partial(self._from_version, version, payloads))))
        if len(groups) == 1:
            return groups[0][1]
        order = np.concatenate([where for where, _ in groups])
        combined = pa.concat_arrays([array for _, array in groups])
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return combined.take(pa.array(inverse))

    def _from_json(self, values: pa.Array) -> pa.Array:
        from odradek.schemas.json_values import decode_json

        decoded = decode_json(values, self.value_type)
        self.compiled_latest.codec.check(decoded)
        return decoded

    def _from_version(self, version: SchemaVersion, payloads: pa.Array) -> pa.Array:
        compiled = self.compiled(version.version)
        decoded = compiled.codec.decode(payloads)
        if version.version != self.latest.version:
            decoded = self.evolve(decoded)
            self.compiled_latest.codec.check(decoded)
        return decoded

    # -- values out ---------------------------------------------------------------------

    def evolve(self, values: pa.Array) -> pa.Array:
        """Values of an older version in the newest version's type."""
        if values.type == self.value_type:
            return values
        from odradek.schemas.conform import evolve

        return evolve(values, self.value_type)

    def encode(self, values: pa.Array, value_format: str) -> pa.Array:
        """Typed values of the newest version as bytes: ``json`` text, or ``wire`` (the
        registry format with the newest version's id; JSON text for Arrow schemas)."""
        if value_format == "json" or self.latest.kind == "ARROW":
            from odradek.schemas.json_values import encode_json

            return encode_json(values).cast(pa.binary())
        return wire.add_header(self.compiled_latest.codec.encode(values), self.latest.schema_id)


def _located(where: np.ndarray, convert: Callable[[], pa.Array]) -> pa.Array:
    """Run a conversion of a subset of the values; a violation names the original index."""
    try:
        return convert()
    except SchemaViolation as violation:
        if violation.index is None or not 0 <= violation.index < len(where):
            raise
        index = int(where[violation.index])
        message = violation.message.replace(f"record {violation.index}", f"record {index}", 1)
        raise SchemaViolation(message, index, violation.path) from violation
