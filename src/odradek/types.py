"""Result types shared by the engine, the doors and the clients."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa


class KeyVersions(Mapping[bytes, int]):
    """``{key: version}`` of an append, built from arrays only when first looked at.

    An append of 10,000 keys should not pay for a 10,000-entry dict nobody reads;
    ``key_array``/``version_array`` are the arrays themselves (for a door to send as Arrow).
    """

    def __init__(self, key_array: pa.Array, version_array: np.ndarray) -> None:
        self.key_array = key_array
        self.version_array = version_array
        self._dict: dict[bytes, int] | None = None

    def _materialized(self) -> dict[bytes, int]:
        if self._dict is None:
            self._dict = dict(zip(self.key_array.to_pylist(), self.version_array.tolist()))
        return self._dict

    def __getitem__(self, key: bytes) -> int:
        return self._materialized()[key]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._materialized())

    def __len__(self) -> int:
        return len(self.key_array)

    def __repr__(self) -> str:
        return repr(self._materialized())


@dataclasses.dataclass(frozen=True)
class AppendResult:
    """What an append assigned: offsets ``base_offset .. base_offset + count - 1`` and,
    for each key in the append, its version after the append."""

    base_offset: int
    count: int
    versions: Mapping[bytes, int]
    duplicate: bool = False  # True when an idempotent retry was answered from memory

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.count


@dataclasses.dataclass(frozen=True)
class TopicInfo:
    name: str
    first_offset: int
    next_offset: int
    records: int
    bytes: int
    keys: int
    segments: int
    config: dict[str, Any]
    created_at: float
    # The topic's identity: 32 hex digits, new each time the name is created again.
    incarnation: str = ""
    schema: Any = None
    # Damaged offset ranges, each {first_offset, end_offset, segment, position,
    # end_position, reason, accepted}: records lost or unreadable (see reliability docs).
    damaged: tuple[dict[str, Any], ...] = ()
    # "ok"; "damaged" (some offsets are damaged, the rest serves); "read-only" (damage
    # in what key versions were rebuilt from: appends wait for `odradek topic repair`).
    status: str = "ok"
    # Key snapshots (engine/snapshots.py), None if the topic has none and no reducer:
    # {keys, written, reducer, snapshot_every} and with a reducer {reducer_position,
    # reducer_snapshots, reducer_failures, reducer_last_error}.
    snapshots: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["damaged"] = list(self.damaged)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TopicInfo:
        known = {field.name for field in dataclasses.fields(cls)}
        values = {name: value for name, value in data.items() if name in known}
        values["damaged"] = tuple(values.get("damaged") or ())
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class SchemaInfo:
    """One version of a topic's schema."""

    topic: str
    version: int  # 1, 2, ...
    id: int  # global schema id (the Schema Registry's)
    kind: str  # "AVRO" | "JSON" | "ARROW"
    text: str  # the schema, canonical: JSON text (Avro, JSON Schema) or base64 Arrow IPC
    compatibility: str  # the topic's mode: "backward", "full_transitive", "none", ...
    value_type: pa.StructType  # the type of the topic's typed ``value`` column

    @property
    def schema(self) -> Any:
        """The schema document: a dict for Avro and JSON Schema, a pa.Schema for Arrow."""
        if self.kind == "ARROW":
            return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.text)))
        return json.loads(self.text)

    def to_json(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "value_type"}
        value_schema = pa.schema(list(self.value_type))
        fields["value_type"] = base64.b64encode(value_schema.serialize().to_pybytes()).decode()
        return fields

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SchemaInfo:
        value_schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(data["value_type"])))
        return cls(**{**data, "value_type": pa.struct(list(value_schema))})
