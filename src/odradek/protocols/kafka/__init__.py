"""The Kafka door: existing Kafka clients produce to and consume from Odradek.

``codec/`` turns bytes into typed requests and responses into bytes (no IO);
``server.py`` is the asyncio listener; the handlers (``data``, ``admin``,
``group_api``) call the engine. See docs/kafka-compatibility.md.

The listener is imported on first use: a node reads the door's consumer groups
(``catalog``, ``store``) without loading the codec and the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from odradek.protocols.kafka.server import KafkaListener, KafkaListenerHandle, start_kafka_listener

__all__ = ["KafkaListener", "KafkaListenerHandle", "start_kafka_listener"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from odradek.protocols.kafka import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
