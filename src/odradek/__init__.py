"""Odradek: a durable event log with key streams, hierarchical topics and OCC.

The API is defined once, in :mod:`odradek.api` (docs/api.md); its defaults are in
:mod:`odradek.defaults`.

Example::

    import odradek
    client = odradek.open("./odradek-data")        # embedded, no server
    client.create_topic("orders.eu.created")
    client.append("orders.eu.created", [{"key": b"order-1", "value": b"{}"}], expect={b"order-1": 0})
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from odradek import defaults
from odradek.errors import (
    ClosedError,
    ConflictError,
    DataDamaged,
    Fenced,
    IncompatibleSchema,
    InvalidRequest,
    InvalidSchema,
    NotOwner,
    OdradekError,
    OffsetOutOfRange,
    RequestTooLarge,
    SchemaViolation,
    SequenceError,
    StorageError,
    TopicExists,
    TopicNotFound,
    Unauthenticated,
    Unauthorized,
    Unavailable,
)

if TYPE_CHECKING:
    from odradek import api
    from odradek.client.aio import AsyncClient, connect_async
    from odradek.client.embedded import EmbeddedClient
    from odradek.client.remote import RemoteClient, connect
    from odradek.types import AppendResult, SchemaInfo, TopicInfo

# The clients, the engine and Arrow are imported on first use (PEP 562), not with the
# package: `import odradek` stays cheap, so `odradek --help` does not pay for pyarrow,
# NumPy or the Flight client (docs/cli.md, start time).
_LAZY = {
    "api": ("odradek.api", None),
    "AsyncClient": ("odradek.client.aio", "AsyncClient"),
    "connect_async": ("odradek.client.aio", "connect_async"),
    "EmbeddedClient": ("odradek.client.embedded", "EmbeddedClient"),
    "RemoteClient": ("odradek.client.remote", "RemoteClient"),
    "connect": ("odradek.client.remote", "connect"),
    "AppendResult": ("odradek.types", "AppendResult"),
    "SchemaInfo": ("odradek.types", "SchemaInfo"),
    "TopicInfo": ("odradek.types", "TopicInfo"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'odradek' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__version__ = "0.1.0"


def open(path: str | os.PathLike[str] = defaults.data_dir, **options: Any) -> EmbeddedClient:  # noqa: A001
    """Open (creating if needed) a data directory in-process: the whole API
    (:class:`odradek.api.Client`), no server.

    Args:
        path: the data directory; one process at a time may open it.
        options: the engine's settings: ``fsync`` (default True: an append returns once
            durable), ``append_bytes_max`` (64 MiB), ``topics_max`` (100,000),
            ``retention_check_seconds`` (60); ``store`` (an object store's URL such as
            ``s3://bucket/prefix`` or ``file:///dir``, or an ObjectStore: the data lives
            there and ``path`` is only its cache, see docs/object-storage.md) and
            ``store_settings`` (``odradek.storage.agent.StoreSettings``).

    Raises:
        StorageError: the directory cannot be used, or another process has it open, or
            the store cannot be reached.
        InvalidRequest: a wrong option or store URL, or ``path`` holds the data of an
            engine without a store (it would be replaced by the store's).

    Example::

        with odradek.open("./odradek-data") as client:
            client.create_topic("orders", exist_ok=True)
    """
    from odradek.client.embedded import EmbeddedClient

    return EmbeddedClient(path, **options)


__all__ = [
    "AppendResult",
    "AsyncClient",
    "ClosedError",
    "ConflictError",
    "DataDamaged",
    "EmbeddedClient",
    "Fenced",
    "IncompatibleSchema",
    "InvalidRequest",
    "InvalidSchema",
    "NotOwner",
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
    "Unauthenticated",
    "Unauthorized",
    "Unavailable",
    "api",
    "connect",
    "connect_async",
    "defaults",
    "open",
]
