"""The Kafka door: existing Kafka clients produce to and consume from Odradek.

``codec/`` turns bytes into typed requests and responses into bytes (no IO);
``server.py`` is the asyncio listener; the handlers (``data``, ``admin``,
``group_api``) call the engine. See docs/kafka-compatibility.md.
"""

from odradek.protocols.kafka.server import KafkaListener, KafkaListenerHandle, start_kafka_listener

__all__ = ["KafkaListener", "KafkaListenerHandle", "start_kafka_listener"]
