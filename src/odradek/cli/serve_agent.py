"""``odradek serve --etcd``: the server as one agent of a cluster (docs/cluster.md).

Lifecycle: bind the Flight door (serving nothing yet) and the metrics endpoint, join the
cluster in etcd (cluster/agent.py), print one line containing ``ready``, then stand by or
own the data as etcd decides. On SIGTERM or SIGINT: hand the data over if owned (its
journal commits, the owner key is deleted so that a standby takes over at once), leave
the cluster, stop the doors, exit 0. A second signal exits at once.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from odradek import limits
from odradek.budget import ByteBudget
from odradek.cli.serve import (
    Settings,
    authenticator_of,
    check_exposure,
    grpc_location,
    install_signal_handlers,
    jwt_validator,
    listen_addresses,
    server_tls,
    setup_logging,
    split_address,
)
from odradek.cluster.agent import AgentSettings, ClusterAgent
from odradek.cluster.documents import EtcdDocuments
from odradek.cluster.etcd import endpoints_tls
from odradek.cluster.etcd_client import EtcdSecurity, load_security
from odradek.cluster.keys import (
    HOME_CELL,
    cell_cache_directory,
    cell_index,
    schema_id_base,
)
from odradek.cluster.serving import AgentDoors, AgentGate, AgentRole
from odradek.cluster.stores import cell_store
from odradek.engine.replica import Replicas
from odradek.errors import InvalidRequest, OdradekError, Unavailable
from odradek.node import Node
from odradek.protocols import connections
from odradek.protocols.bounded_http import serving_authentication, serving_quotas, serving_tls
from odradek.protocols.flight.server import FlightService
from odradek.storage.agent import REPLICAS_DIRECTORY
from odradek.storage.objects import ObjectStore, open_store

if TYPE_CHECKING:
    from odradek.protocols.metrics import Metrics
    from odradek.protocols.tls import ServerTls
    from odradek.security import Authenticator
    from odradek.security.quotas import QuotaManager

log = logging.getLogger("odradek.serve")


def run_agent(settings: Settings) -> int:
    setup_logging(settings)
    if settings.store is None or settings.etcd is None:
        raise InvalidRequest("a cluster agent needs --store and --etcd")
    security = _etcd_security(settings.etcd, settings)  # bad TLS files: refused before any door opens
    tls = server_tls(settings)  # the doors' TLS files too
    tls_context = tls.context if tls is not None else None
    (host, port), metrics_address, kafka_address, registry_address = listen_addresses(settings)
    check_exposure(settings)
    if settings.cells > 1:
        last = kafka_address[1] + settings.cells - 1 if kafka_address is not None else 0
        if last > 65535:
            raise InvalidRequest(
                f"--kafka-listen port {last - settings.cells + 1}: with --cells {settings.cells} each "
                f"cell's Kafka door listens on the port plus its index, up to {last}"
            )
    if settings.advertise is None and host in _EVERY_INTERFACE:  # (before etcd is asked anything)
        raise InvalidRequest(
            f"--listen {settings.listen} is every interface: say with --advertise HOST:PORT where "
            "other agents and clients reach this agent"
        )
    validator = jwt_validator(settings)  # a bad JWKS: refused before any door opens
    for what, address in (("--kafka-listen", kafka_address), ("--registry-listen", registry_address)):
        if address is not None and address[1] == 0:
            raise InvalidRequest(f"{what} needs a fixed port in a cluster (other agents advertise it)")
    store: str | ObjectStore = settings.store
    if settings.store_options:
        store = open_store(settings.store, options=settings.store_options)
    # Users, tokens and tenants, the access control bindings and the quotas live in the
    # cluster's etcd (decision 0029, cluster/documents.py): each agent watches them and
    # reads them again as soon as one changes (and every few seconds, as a backstop).
    documents = _security_documents(settings, security, store)
    from odradek.security import CredentialStore
    from odradek.security.credentials import DOCUMENT as CREDENTIALS
    from odradek.security.quotas import DOCUMENT as QUOTAS
    from odradek.security.quotas import QuotaManager, QuotaSettings

    try:
        credentials = CredentialStore(documents.persistence(CREDENTIALS))
        authenticator = authenticator_of(settings, credentials, validator)
        quota_settings = QuotaSettings(documents.persistence(QUOTAS))
    except BaseException:
        documents.close()
        raise
    documents.watch()
    stop_refreshing = credentials.refresh_every()
    stop_refreshing_quotas = quota_settings.refresh_every()
    quotas = QuotaManager(quota_settings)
    budget = ByteBudget(settings.inflight_bytes)
    metrics = None
    metrics_listener = None
    if metrics_address is not None:
        from odradek.protocols.metrics import Metrics  # only servers need prometheus

        metrics = Metrics(None)
        with serving_tls(tls_context), serving_authentication(authenticator), serving_quotas(quotas):
            metrics_listener = metrics.serve(*metrics_address, settings.door_bounds(connections.METRICS))
    location = grpc_location(host, port, tls is not None)
    gate = AgentGate()  # the agent is made once the door's port is known
    try:
        server = FlightService(
            None,
            location,
            observer=metrics,
            bounds=settings.door_bounds(connections.FLIGHT),
            budget=budget,
            cluster=gate,
            tls=tls,
            authenticator=authenticator,
            credentials=credentials,
            quotas=quotas,
        )
    except (pa.ArrowException, OSError) as exc:
        if metrics_listener is not None:
            metrics_listener.close()
        raise OdradekError(f"cannot listen on {settings.listen}: {exc}") from exc

    def replica_store(cell: str) -> ObjectStore:  # a cell's store, read by a non-owner
        return cell_store(store if isinstance(store, ObjectStore) else open_store(store), cell)

    # The cells this agent does not serve answer fetches from the store (decision 0042).
    server.replicas = Replicas(replica_store, os.path.join(settings.data_dir, REPLICAS_DIRECTORY))
    advertised = settings.advertise or _address(host, server.port)
    advertised_host = split_address(advertised, "--advertise")[0]

    def reachable(address: tuple[str, int]) -> str:  # a door on every interface: the advertised host
        door_host, door_port = address
        return _address(advertised_host if door_host in _EVERY_INTERFACE else door_host, door_port)

    doors: dict[str, str] = {}
    if kafka_address is not None:
        doors["kafka"] = settings.kafka_advertised or reachable(kafka_address)
    # Every agent's registry listener, for its whole life (decisions 0034 and 0036): each
    # cell it serves answers there, the others' requests are forwarded to their agents
    # (with one cell: a standby forwards every request to the owner).
    registry_cells = None
    if registry_address is not None:
        registry_cells = _start_cells_registry(
            settings,
            registry_address,
            gate,
            tls,
            authenticator,
            quotas,
            metrics,
            budget,
            server.cluster_status,
        )
        if registry_cells is None:  # the default address was not free: the door is off
            registry_address = None
        else:  # the HTTP API reads other cells' history from the store too (decision 0042)
            registry_cells[1].replicas = server.replicas
    if registry_address is not None:
        doors["registry"] = reachable(registry_address)
    if metrics_address is not None:
        doors["metrics"] = reachable(metrics_address)

    def open_node() -> Node:
        node = Node.open(
            os.path.join(settings.data_dir, cell_cache_directory(HOME_CELL, settings.cells)),
            fsync=True,
            topics_max=settings.topics_max,
            store=store,
            # Checkpoints often: a new owner replays the journal since the last one.
            store_settings=dataclasses.replace(
                settings.store_settings(), checkpoint_seconds=limits.cluster_checkpoint_seconds
            ),
        )
        node.engine.tenant_storage.quota = quota_settings.storage_quota  # tenants' storage_bytes
        return node

    def open_cell(cell: str) -> Node:  # a cell beside the home cell (decision 0032)
        base = store if isinstance(store, ObjectStore) else open_store(store)
        return Node.open(
            os.path.join(settings.data_dir, cell_cache_directory(cell, settings.cells)),
            fsync=True,
            topics_max=settings.topics_max,
            store=cell_store(base, cell),
            store_settings=dataclasses.replace(
                settings.store_settings(), checkpoint_seconds=limits.cluster_checkpoint_seconds
            ),
            schema_id_base=schema_id_base(cell),  # ids unique in the cluster (decision 0034)
        )

    def start_kafka(node: Node, cell: str = HOME_CELL) -> Any:
        """The Kafka door of ``cell``: with several cells each has its own, on the Kafka
        port plus the cell's index (decision 0033)."""
        if kafka_address is None:
            return None
        from odradek.cluster.kafka_seat import KafkaSeat
        from odradek.protocols.kafka import start_kafka_listener

        host, port = kafka_address[0], kafka_address[1] + cell_index(cell)
        advertised_host, advertised_port = split_address(doors["kafka"], "--kafka-advertised")
        seat = KafkaSeat(gate.agent, cell) if settings.cells > 1 and gate.agent is not None else None
        try:
            return start_kafka_listener(
                node,
                host,
                port,
                # What Metadata names: reachable, never 0.0.0.0.
                (advertised_host, advertised_port + cell_index(cell)),
                auto_create_topics=settings.kafka_auto_create,
                default_partitions=settings.kafka_partitions,
                bounds=settings.door_bounds(connections.KAFKA),
                budget=budget,
                tls=tls_context,
                serving=lambda: gate.agent is not None and gate.agent.is_owner(cell),
                authenticator=authenticator,
                quotas=quotas,
                metering=metrics.metering if metrics is not None else None,
                cells=seat,
            )
        except OSError as exc:  # the cell is given up for another agent to serve, saying why
            message = f"cannot listen on {host}:{port} for the Kafka door of cell {cell}: {exc}"
            raise OdradekError(message) from exc

    def start_registry(node: Node, cell: str = HOME_CELL) -> Any:
        """``cell``'s registry, HTTP API and console on the agent's listener (decisions
        0034 and 0036); what stops them."""
        if registry_cells is None:
            return None
        from odradek.protocols.registry import cell_api, cell_registry

        agent = gate.agent
        assert agent is not None
        claim = functools.partial(agent.claim, cell=cell)
        release = functools.partial(agent.forget, cell=cell)
        registry = cell_registry(node.engine, claim, release)
        return _Closer(registry_cells[1].serve(cell, registry, cell_api(node, claim, release)))

    def start_kafka_relay() -> Any:
        if kafka_address is None:
            return None
        from odradek.protocols.kafka.relay import start_kafka_relay

        def owner() -> tuple[str, int] | None:
            return gate.agent.owner_door("kafka") if gate.agent is not None else None

        return start_kafka_relay(
            *kafka_address,
            owner,
            settings.door_bounds(connections.KAFKA),
            tls=tls_context,
            upstream_tls=tls.agent_client_context if tls is not None else None,
        )

    role = AgentRole(
        AgentDoors(
            open_node,
            [start_kafka, start_registry],
            [start_kafka_relay],
            open_cell,
            [start_kafka, start_registry],
        ),
        server,
        metrics,
    )
    agent = ClusterAgent(
        AgentSettings(
            endpoints=settings.etcd,
            cluster=settings.cluster,
            agent_id=settings.agent_id or advertised,
            address=advertised,
            doors=doors,
            lease_ttl=settings.lease_ttl,
            cells=settings.cells,
            security=security,
            scheme="grpc+tls" if tls is not None else "grpc",
        ),
        role,
    )
    gate.agent = agent
    if authenticator is not None:  # other agents' own credentials (decision 0040)
        authenticator.agents = agent.token_hash_of
    if metrics is not None:
        from odradek.protocols.metrics import cluster_collector

        metrics.add(cluster_collector(agent))
        metrics.readiness = agent.readiness
    role.start_standby()
    try:
        agent.start()
    except BaseException:
        role.close()
        server.drain(1.0)
        if metrics_listener is not None:
            metrics_listener.close()
        if registry_cells is not None:
            registry_cells[0].close()
        raise
    url = f"grpc+tls://{advertised}" if tls is not None else f"grpc://{advertised}"
    stop = threading.Event()
    stopping = install_signal_handlers(stop, reload=tls.reload if tls is not None else None)
    gc.freeze()  # as serve does: what start made lives as long as the server
    log.info(
        "ready",
        extra={
            "fields": {
                "url": url,
                "agent": agent.settings.agent_id,
                "cluster": settings.cluster,
                "etcd": settings.etcd,
                "data_dir": os.path.abspath(settings.data_dir),
                "pid": os.getpid(),
                **(tls.describe() if tls is not None else {"tls": "off"}),
                **{f"{door}": address for door, address in doors.items()},
            }
        },
    )
    print(
        f"odradek ready url={url} agent={agent.settings.agent_id} cluster={settings.cluster} "
        f"data_dir={os.path.abspath(settings.data_dir)}"
        + ("" if settings.authenticates else " authentication=none (no authentication)"),
        flush=True,
    )
    while not stopping.wait(1.0):
        if not agent.running:
            log.error("the cluster agent stopped; exiting")
            break
    log.info("shutting down: handing the data over if owned, then leaving the cluster")
    stop_refreshing.set()
    stop_refreshing_quotas.set()
    agent.stop()
    documents.close()
    drained = server.drain(limits.shutdown_drain_seconds_max)
    if metrics_listener is not None:
        metrics_listener.close()
    role.close()  # (the owner's doors: nothing left if the agent handed over)
    if registry_cells is not None:
        registry_cells[0].close()
    log.info("stopped")
    if not drained:
        logging.shutdown()
        os._exit(0)
    return 0


_EVERY_INTERFACE = ("0.0.0.0", "::", "")


class _Closer:
    """What stops a cell's registry (a door's ``close``)."""

    def __init__(self, stop: Callable[[], None]) -> None:
        self.close = stop


def _start_cells_registry(
    settings: Settings,
    address: tuple[str, int],
    gate: AgentGate,
    tls: ServerTls | None,
    authenticator: Authenticator | None,
    quotas: QuotaManager,
    metrics: Metrics | None,
    budget: ByteBudget,
    cluster_status: Callable[[], dict[str, Any]],
) -> tuple[Any, Any] | None:
    """The registry door of a cluster agent (decision 0034),
    with the HTTP API and the web console (decision 0036, whose cluster page shows
    ``cluster_status()``): listening for the agent's whole life, each cell it serves
    added as it opens it.
    Returns the listener and the cells' registries; None when the default address is
    not free (as serve does: the door is off, said in a warning)."""
    from odradek.cluster.registry_seat import RegistrySeat
    from odradek.protocols.registry import start_cells_registry_listener

    def agent() -> Any:
        if gate.agent is None:
            raise Unavailable("the agent is joining its cluster; retry")
        return gate.agent

    metering = metrics.metering if metrics is not None else None
    with (
        serving_tls(tls.context if tls is not None else None),
        serving_authentication(authenticator),
        serving_quotas(quotas, metering),
    ):
        try:
            return start_cells_registry_listener(
                RegistrySeat(agent),
                *address,
                bounds=settings.door_bounds(connections.REGISTRY),
                budget=budget,
                forward_tls=tls.agent_client_context if tls is not None else None,
                cluster_status=cluster_status,
            )
        except OSError as exc:
            if settings.registry_listen_given:
                raise OdradekError(f"cannot listen on {settings.registry_listen}: {exc}") from exc
            log.warning(
                "Schema Registry listener off: the default address is not free",
                extra={"fields": {"address": settings.registry_listen, "error": str(exc)}},
            )
            return None


def _security_documents(
    settings: Settings, security: EtcdSecurity | None, store: str | ObjectStore
) -> EtcdDocuments:
    """The cluster's security documents in etcd; each the store still holds as an object
    and etcd does not yet (a cluster of the previous version) imported into etcd once."""
    from odradek.cluster.documents import EtcdDocuments, import_from_store
    from odradek.security import acl_store, credentials, quotas

    assert settings.etcd is not None
    documents = EtcdDocuments(settings.etcd, settings.cluster, security=security)
    try:
        shared = store if isinstance(store, ObjectStore) else open_store(store)
        for name in (credentials.DOCUMENT, acl_store.DOCUMENT, quotas.DOCUMENT):
            import_from_store(documents.persistence(name), shared)
    except BaseException:
        documents.close()
        raise
    return documents


def _etcd_security(etcd: str, settings: Settings) -> EtcdSecurity | None:
    """The TLS files and the credentials of ``--etcd``, read now (None: plain etcd)."""
    return load_security(
        endpoints_tls(etcd),
        ca=settings.etcd_ca,
        cert=settings.etcd_cert,
        key=settings.etcd_key,
        user=settings.etcd_user,
        password=settings.etcd_password,
        password_file=settings.etcd_password_file,
    )


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
