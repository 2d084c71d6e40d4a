"""The Schema Registry door: Confluent's serializers and tools work against Odradek.

``routes.py`` answers the REST API without IO (a topic's value subject is the topic's
schema; other subjects are kept by ``subjects.py``); ``server.py`` is the HTTP shell.
See docs/schema-registry.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from odradek.budget import ByteBudget
from odradek.protocols.connections import DoorLimits
from odradek.protocols.registry.routes import Registry, RegistryBackend, Request, Response
from odradek.protocols.registry.server import RegistryListener
from odradek.protocols.registry.subjects import SubjectStore
from odradek.storage.disk import LOCAL


def start_registry_listener(
    backend: RegistryBackend,
    data_directory: str,
    host: str,
    port: int,
    *,
    bounds: DoorLimits | None = None,
    budget: ByteBudget | None = None,
    http_api: bool = True,
    cluster_status: Callable[[], dict[str, Any]] | None = None,
) -> RegistryListener:
    """Serve the registry API for ``backend`` (an Engine) on ``host:port`` (0: any free port),
    within ``bounds`` (the registry's defaults when None) and the in-flight ``budget``;
    with ``http_api`` and an Engine, the HTTP API too (decision 0022) and the web console
    (decision 0025), whose cluster page shows ``cluster_status()`` on a cluster agent.

    Raises OSError when the address cannot be bound.
    """
    from odradek.engine import Engine

    disk = getattr(backend, "disk", LOCAL)
    fsync = bool(getattr(backend, "fsync", True))
    registry = Registry(backend, SubjectStore(data_directory, disk, fsync=fsync))
    api = None
    if http_api and isinstance(backend, Engine):
        from odradek.node import Node
        from odradek.protocols.http_api import HttpApi

        api = HttpApi(Node.of(backend))
    return RegistryListener(
        registry, host, port, bounds=bounds, budget=budget, api=api, cluster_status=cluster_status
    )


__all__ = [
    "Registry",
    "RegistryBackend",
    "RegistryListener",
    "Request",
    "Response",
    "SubjectStore",
    "start_registry_listener",
]
