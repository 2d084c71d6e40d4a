"""The storage engine: topics, append (OCC, idempotence), read, key index, retention."""

from odradek.engine.engine import Engine

__all__ = ["Engine"]
