"""The benchmarked systems, by the names ``--systems`` takes."""

from __future__ import annotations

from collections.abc import Callable

from odradek.bench.systems.base import System
from odradek.bench.systems.kafka_door import OdradekKafka
from odradek.bench.systems.nats_jetstream import NatsJetStream
from odradek.bench.systems.odradek import OdradekEmbedded, OdradekRemote
from odradek.bench.systems.odradek_store import OdradekStore, express_like, standard_like
from odradek.bench.systems.redis_streams import RedisStreams

FACTORIES: dict[str, Callable[[], System]] = {
    "odradek": OdradekEmbedded,
    "odradek-remote": OdradekRemote,
    "odradek-kafka": OdradekKafka,
    "redis-always": lambda: RedisStreams("always"),
    "redis-everysec": lambda: RedisStreams("everysec"),
    "nats": lambda: NatsJetStream(sync_always=False),
    "nats-sync": lambda: NatsJetStream(sync_always=True),
    "odradek-store": OdradekStore,
    "odradek-store-10ms": express_like,
    "odradek-store-60ms": standard_like,
}


def build(names: tuple[str, ...]) -> list[System]:
    return [FACTORIES[name]() for name in names]
