"""Odradek: a durable event log with key streams, hierarchical topics and OCC.

Example::

    import odradek
    client = odradek.open("./odradek-data")        # embedded, no server
    client.create_topic("orders.eu.created")
    client.append("orders.eu.created", [{"key": b"order-1", "value": b"{}"}], expect={b"order-1": 0})
"""

from __future__ import annotations

import os
from typing import Any

from odradek.client.aio import AsyncClient, connect_async
from odradek.client.embedded import EmbeddedClient
from odradek.client.remote import RemoteClient, connect
from odradek.errors import (
    ClosedError,
    ConflictError,
    DataDamaged,
    IncompatibleSchema,
    InvalidRequest,
    InvalidSchema,
    OdradekError,
    OffsetOutOfRange,
    RequestTooLarge,
    SchemaViolation,
    SequenceError,
    StorageError,
    TopicExists,
    TopicNotFound,
    Unavailable,
)
from odradek.types import AppendResult, SchemaInfo, TopicInfo

__version__ = "0.1.0"


def open(path: str | os.PathLike[str] = "./odradek-data", **options: Any) -> EmbeddedClient:  # noqa: A001
    """Open (creating if needed) a data directory in-process: the full API, no server."""
    return EmbeddedClient(path, **options)


__all__ = [
    "AppendResult",
    "AsyncClient",
    "ClosedError",
    "ConflictError",
    "DataDamaged",
    "EmbeddedClient",
    "IncompatibleSchema",
    "InvalidRequest",
    "InvalidSchema",
    "OdradekError",
    "OffsetOutOfRange",
    "RemoteClient",
    "RequestTooLarge",
    "SchemaInfo",
    "SchemaViolation",
    "SequenceError",
    "StorageError",
    "TopicExists",
    "TopicInfo",
    "TopicNotFound",
    "Unavailable",
    "connect",
    "connect_async",
    "open",
]
