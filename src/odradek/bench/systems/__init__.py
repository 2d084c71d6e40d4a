"""The benchmarked systems, by the names ``--systems`` takes."""

from __future__ import annotations

from collections.abc import Callable

from odradek.bench.systems.base import System
from odradek.bench.systems.kafka_door import OdradekKafka
from odradek.bench.systems.nats_jetstream import NatsJetStream
from odradek.bench.systems.odradek import OdradekEmbedded, OdradekRemote
from odradek.bench.systems.redis_streams import RedisStreams

FACTORIES: dict[str, Callable[[], System]] = {
    "odradek": OdradekEmbedded,
    "odradek-remote": OdradekRemote,
    "odradek-kafka": OdradekKafka,
    "redis-always": lambda: RedisStreams("always"),
    "redis-everysec": lambda: RedisStreams("everysec"),
    "nats": lambda: NatsJetStream(sync_always=False),
    "nats-sync": lambda: NatsJetStream(sync_always=True),
}


def build(names: tuple[str, ...]) -> list[System]:
    return [FACTORIES[name]() for name in names]
