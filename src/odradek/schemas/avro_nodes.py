"""The compiled form of an Avro schema that the binary codec walks.

Parsing (``avro.py``) resolves names, references and logical types once; the codec
(``avro_binary.py``, ``avro_encode.py``) and the constraint check then dispatch on a
small closed set of node kinds instead of re-reading the JSON document per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

NodeKind = Literal[
    "boolean",
    "int",
    "long",
    "float",
    "double",
    "bytes",
    "string",
    "fixed",
    "enum",
    "record",
    "array",
    "map",
    "optional",
]

# Logical types the codec converts; any other logicalType is ignored (Avro spec: an
# unknown or invalid logical type is read as its underlying type).
LogicalKind = Literal[
    "timestamp-millis",
    "timestamp-micros",
    "local-timestamp-millis",
    "local-timestamp-micros",
    "date",
    "time-millis",
    "time-micros",
    "decimal",
    "uuid",
]


@dataclass(frozen=True)
class AvroField:
    """One field of a record: its name, its type and its declared default (JSON)."""

    name: str
    node: AvroNode
    has_default: bool = False
    default: Any = None

    @property
    def nullable(self) -> bool:
        return self.node.kind == "optional"


@dataclass(frozen=True)
class AvroNode:
    """One Avro type as the codec sees it.

    ``optional`` is a union of null with one other type: ``child`` is that type and
    ``null_branch`` the position of null in the union (0 or 1), which the binary form
    carries as the branch index. ``array`` and ``map`` keep their items/values in
    ``child``; a ``record`` its ``fields``.
    """

    kind: NodeKind
    arrow_type: pa.DataType
    logical: LogicalKind | None = None
    size: int = 0
    precision: int = 0
    scale: int = 0
    symbols: tuple[str, ...] = ()
    fields: tuple[AvroField, ...] = ()
    child: AvroNode | None = None
    null_branch: int = 0
    # The Avro full name of a named type (record, enum, fixed), for messages.
    name: str = ""
    # The fewest bytes a value of this type takes in Avro binary, so a declared item
    # count can be checked against the bytes left in a payload before decoding.
    encoded_bytes_min: int = 1

    @property
    def inner(self) -> AvroNode:
        """The child node, which array, map and optional nodes always have."""
        if self.child is None:  # pragma: no cover - the compiler always sets it
            raise ValueError(f"an Avro {self.kind} node without a child")
        return self.child
