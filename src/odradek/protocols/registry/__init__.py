"""The Schema Registry door: Confluent's serializers and tools work against Odradek.

``routes.py`` answers the REST API without IO (a topic's value subject is the topic's
schema; other subjects are kept by ``subjects.py``); ``server.py`` is the HTTP shell.
See docs/schema-registry.md.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from odradek.budget import ByteBudget
from odradek.protocols.connections import DoorLimits
from odradek.protocols.registry.cells import CellRegistries, CellSubjects, RegistryCells
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


def start_cells_registry_listener(
    cluster: RegistryCells,
    host: str,
    port: int,
    *,
    bounds: DoorLimits | None = None,
    budget: ByteBudget | None = None,
    forward_tls: Callable[[], ssl.SSLContext] | None = None,
    cluster_status: Callable[[], dict[str, Any]] | None = None,
) -> tuple[RegistryListener, CellRegistries]:
    """Serve the registry API of a cluster agent whose cluster has several cells
    (decision 0034) on ``host:port``: each cell the agent serves is added to the
    returned registries with :func:`cell_registry` (and its HTTP API, decision 0036,
    with :func:`cell_api`) as the agent opens it; what concerns another cell is
    forwarded to the agent serving it (over TLS with the context ``forward_tls()``
    makes, each time: certificates may be reloaded). The web console's cluster page
    shows ``cluster_status()``.

    Raises OSError when the address cannot be bound.
    """
    cells = CellRegistries(cluster, cluster_status)
    listener = RegistryListener(
        None, host, port, bounds=bounds, budget=budget, cells=cells, forward_tls=forward_tls
    )
    return listener, cells


def cell_registry(engine: Any, claim: Callable[[str], bool], release: Callable[[str], None]) -> Registry:
    """The registry of one cell of a cluster: over the cell's engine (a topic it creates
    is placed in the cell first with ``claim``, its placement dropped with ``release``
    when the engine refuses it) and a subject store in the cell's storage."""
    disk = getattr(engine, "disk", LOCAL)
    fsync = bool(getattr(engine, "fsync", True))
    return Registry(CellSubjects(engine, claim, release), SubjectStore(engine.path, disk, fsync=fsync))


def cell_api(node: Any, claim: Callable[[str], bool], release: Callable[[str], None]) -> Any:
    """The HTTP API of one cell of a cluster (decision 0036), over the cell's node (a
    :class:`~odradek.node.Node`): a topic it creates is placed in the cell first with
    ``claim``, its placement dropped with ``release`` when the engine refuses it."""
    from odradek.protocols.http_api import HttpApi

    return HttpApi(node, create_topic=CellSubjects(node.engine, claim, release).create_topic)


__all__ = [
    "CellRegistries",
    "Registry",
    "RegistryBackend",
    "RegistryListener",
    "Request",
    "Response",
    "SubjectStore",
    "cell_api",
    "cell_registry",
    "start_cells_registry_listener",
    "start_registry_listener",
]
