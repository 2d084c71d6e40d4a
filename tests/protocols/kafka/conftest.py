"""Shared fixtures of the Kafka door tests.

``kafka_door`` starts a Kafka listener in-process (its own asyncio loop on a thread)
on a free loopback port, over an Engine in a fresh data directory with fsync off: the
tests check protocol behaviour, not durability. ``reopen`` closes the listener and the
engine and starts both again on the same directory, for what must survive a restart.
Each real client's settings shorten its timers (heartbeats, metadata refreshes) so that
group rebalances take tenths of seconds instead of the defaults' many seconds.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator

import pytest

from odradek.engine import Engine
from odradek.protocols.kafka import KafkaListenerHandle, start_kafka_listener


@dataclasses.dataclass
class KafkaDoor:
    data_dir: str
    engine: Engine
    listener: KafkaListenerHandle

    @property
    def bootstrap(self) -> str:
        return self.listener.bootstrap

    def close(self) -> None:
        self.listener.close()
        self.engine.close()

    def reopen(self) -> None:
        self.close()
        self.engine = Engine(self.data_dir, fsync=False)
        self.listener = start_kafka_listener(self.engine, "127.0.0.1", 0)


@pytest.fixture
def kafka_door(tmp_path: os.PathLike[str]) -> Iterator[KafkaDoor]:
    data_dir = os.path.join(os.fspath(tmp_path), "data")
    engine = Engine(data_dir, fsync=False)
    door = KafkaDoor(data_dir, engine, start_kafka_listener(engine, "127.0.0.1", 0))
    try:
        yield door
    finally:
        door.close()


@pytest.fixture
def topic_name() -> str:
    """A fresh dotted topic name, as Odradek's hierarchies use."""
    return f"orders.eu.t{uuid.uuid4().hex[:8]}"
