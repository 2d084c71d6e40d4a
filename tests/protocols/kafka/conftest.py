"""Shared fixtures of the Kafka door tests.

``kafka_door`` starts a Kafka listener in-process (its own asyncio loop on a thread)
on a free loopback port, over a node (node.py: an engine and its consumer groups) in a
fresh data directory with fsync off: the tests check protocol behaviour, not
durability. ``reopen`` closes the listener and the node and starts both again on the
same directory, for what must survive a restart.
Each real client's settings shorten its timers (heartbeats, metadata refreshes) so that
group rebalances take tenths of seconds instead of the defaults' many seconds.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import strategies as st

from odradek.engine import Engine
from odradek.node import Node
from odradek.protocols.kafka import KafkaListenerHandle, start_kafka_listener
from odradek.protocols.kafka.codec import schema

# The helpers beside the tests (wire.py) are imported by name under any --import-mode.
sys.path.insert(0, os.path.dirname(__file__))


@dataclasses.dataclass
class KafkaDoor:
    data_dir: str
    node: Node
    listener: KafkaListenerHandle

    @property
    def engine(self) -> Engine:
        return self.node.engine

    @property
    def bootstrap(self) -> str:
        return self.listener.bootstrap

    def close(self) -> None:
        self.listener.close()
        self.node.close()

    def reopen(self) -> None:
        self.close()
        self.node = Node.open(self.data_dir, fsync=False)
        self.listener = start_kafka_listener(self.node, "127.0.0.1", 0)


@pytest.fixture
def kafka_door(tmp_path: os.PathLike[str]) -> Iterator[KafkaDoor]:
    data_dir = os.path.join(os.fspath(tmp_path), "data")
    node = Node.open(data_dir, fsync=False)
    door = KafkaDoor(data_dir, node, start_kafka_listener(node, "127.0.0.1", 0))
    try:
        yield door
    finally:
        door.close()


@pytest.fixture
def topic_name() -> str:
    """A fresh dotted topic name, as Odradek's hierarchies use."""
    return f"orders.eu.t{uuid.uuid4().hex[:8]}"


# -- random Kafka messages, generated from the codec's own field declarations ----------

_FIXED = {
    "int8": st.integers(-(2**7), 2**7 - 1),
    "int16": st.integers(-(2**15), 2**15 - 1),
    "int32": st.integers(-(2**31), 2**31 - 1),
    "int64": st.integers(-(2**63), 2**63 - 1),
    "uint16": st.integers(0, 2**16 - 1),
    "float64": st.floats(allow_nan=False),
    "boolean": st.booleans(),
    "uuid": st.uuids(),
}


def _kind_values(
    kind: schema.Kind, version: int, flexible: bool, nullable: bool, plain: bool
) -> st.SearchStrategy[Any]:
    if isinstance(kind, schema.Array):
        element = kind.element
        inner = (
            _kind_values(element, version, flexible, False, plain)
            if isinstance(element, schema.Kind)
            else _instances(element, version, flexible, plain)
        )
        values: st.SearchStrategy[Any] = st.lists(inner, max_size=3).map(tuple)
    elif isinstance(kind, schema.Struct):
        values = _instances(kind.cls, version, flexible, plain)
    elif kind is schema.STRING:
        values = st.text(max_size=12)
    elif kind in (schema.BYTES, schema.RECORDS):
        values = st.binary(max_size=24)
    elif plain and kind.name not in ("boolean", "uuid"):  # type: ignore[attr-defined]
        values = st.sampled_from([kind.zero, kind.zero + 1])
    else:
        values = _FIXED[kind.name]  # type: ignore[attr-defined]
    return st.none() | values if nullable else values


def _instances(cls: type, version: int, flexible: bool, plain: bool = False) -> st.SearchStrategy[Any]:
    """Values of a message class with every field that exists in ``version`` random.

    ``plain`` keeps numbers at 0 or 1: the reference implementation checks what numbers
    mean (error codes, timestamps), while the layout check needs only their presence."""
    fields = {}
    for name, spec in schema.field_specs(cls):
        if not spec.versions[0] <= version <= spec.versions[1]:
            continue
        if spec.tag is not None and not flexible:
            continue
        nullable = spec.nullable is not None and spec.nullable[0] <= version <= spec.nullable[1]
        fields[name] = _kind_values(spec.kind, version, flexible, nullable, plain)
    return st.builds(cls, **fields)


@pytest.fixture
def message_values() -> Callable[..., st.SearchStrategy[Any]]:
    """``message_values(cls, version, flexible, plain=False)``: a strategy of values of a
    message class with every field that exists in that version random."""
    return _instances
