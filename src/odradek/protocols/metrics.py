"""Prometheus metrics of a server: what the doors did, and how large the topics are.

The doors report each append to :class:`Metrics` (it implements the Flight server's
``AppendObserver``); topic sizes and consumer groups' progress are read from the
engine and the node's group directory when Prometheus scrapes, so they cost nothing
between scrapes. Groups of both kinds (``odradek`` and the Kafka door's ``kafka``
groups) have the same gauges; ``odradek_group_info`` says which kind each is. Every metric
lives in the object's own registry, so several servers in one process (tests) do not
collide.

The endpoint also answers probes: ``/healthz`` (200 while the process answers HTTP) and
``/readyz`` (200 when the server can take clients: a server with its data open, a
cluster agent that joined with a live lease, owner or standby; 503 with the reason
otherwise), for Kubernetes' liveness and readiness probes.

A tenant's principal (decision 0028) is served a view of its own tenant
(:class:`TenantView`): the series of its topics and groups, named as the tenant names
them (without ``_t.<tenant>.``), its tenant's metering and its own users'; nothing of the
process, the cluster or another tenant. An untenanted principal that is not an admin is
served the default namespace's view (:class:`DefaultNamespaceView`): the process's and the
cluster's series and those of the untenanted topics, groups and users, nothing that names
a tenant. An admin sees it all. With ``--authorize`` either view leaves out the series
of a topic or group the principal may not describe (as Metadata and the listings do).

The endpoint is a bounded HTTP server (protocols/bounded_http.py): a thread per
connection, at most ``metrics_connections_max`` of them (and per peer address), idle
and half-sent requests closed in time; connections over a cap are answered 503.
"""

from __future__ import annotations

import gzip
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

from odradek.engine import Engine
from odradek.errors import OdradekError
from odradek.groups.directory import GroupDirectory
from odradek.names import TENANT_ROOT, tenant_of, tenant_prefix
from odradek.node import Node
from odradek.protocols import connections, observe
from odradek.protocols.bounded_http import BoundedHTTPListener, BoundedHTTPServer, BoundedRequestHandler
from odradek.protocols.flight.append_stream import CALL as APPEND_STREAM_CALL
from odradek.security.authorizer import authorizer_of
from odradek.security.quotas import Metering

if TYPE_CHECKING:
    from odradek.cluster.agent import ClusterAgent

log = logging.getLogger(__name__)

# Append latency buckets, seconds: the target is p50 <= 2 ms and p99 <= 10 ms (DESIGN
# §5), so the buckets are dense between 0.5 ms and 25 ms.
APPEND_SECONDS_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class Metrics:
    def __init__(self, engine: Engine | Node | None) -> None:
        """Metrics of ``engine``'s node (node.py; a node may be given). None: the
        per-topic and per-group metrics come with :meth:`attach` (a cluster agent
        serves them while it owns the data)."""
        self.registry = CollectorRegistry()
        self._attached: list[Collector] = []
        #: What ``/readyz`` answers (None: ready while a node is attached); a cluster
        #: agent sets its own (ClusterAgent.readiness).
        self.readiness: Callable[[], tuple[bool, str]] | None = None
        # Each topic's children of the three append counters (appended).
        self._topic_children: dict[str, tuple[Any, Any, Any]] = {}
        self.appends = Counter(
            "odradek_appends", "Appends acknowledged, per topic.", ["topic"], registry=self.registry
        )
        self.records = Counter(
            "odradek_appended_records", "Records appended, per topic.", ["topic"], registry=self.registry
        )
        self.bytes = Counter(
            "odradek_appended_bytes",
            "Bytes of Arrow record batches appended, per topic.",
            ["topic"],
            registry=self.registry,
        )
        self.append_seconds = Histogram(
            "odradek_append_seconds",
            "Time from receiving an append to its acknowledgement (includes the fsync).",
            buckets=APPEND_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "odradek_request_errors",
            "Refused or failed requests, per call and error code.",
            ["call", "code"],
            registry=self.registry,
        )
        #: What each principal produced, fetched and was throttled (the doors add to it).
        self.metering = Metering()
        self.registry.register(MeteringCollector(self.metering))
        # Every door's requests, connections and the engine's fsyncs (observe.py).
        self.registry.register(observe.COLLECTOR)
        observe.observe_engine()
        if engine is not None:
            self.attach(Node.of(engine))

    def attach(self, node: Node) -> None:
        """Export ``node``'s topics and groups (instead of the node attached before)."""
        self.detach()
        self._attached = [TopicCollector(node.engine), GroupCollector(node.directory, node.engine)]
        for collector in self._attached:
            self.registry.register(collector)

    def detach(self) -> None:
        """Stop exporting the attached node's topics and groups."""
        for collector in self._attached:
            self.registry.unregister(collector)
        self._attached = []

    def ready(self) -> tuple[bool, str]:
        """Whether the server can take clients, and why (``/readyz``)."""
        if self.readiness is not None:
            return self.readiness()
        if self._attached:
            return True, "serving"
        return False, "no data open"

    def add(self, collector: Collector) -> None:
        """Export ``collector``'s metrics too (e.g. a cluster agent's)."""
        self.registry.register(collector)

    # -- AppendObserver ------------------------------------------------------------------

    def appended(self, topic: str, records: int, size_bytes: int, seconds: float) -> None:
        children = self._topic_children.get(topic)
        if children is None:  # looked up once per topic (the families keep them anyway)
            children = (self.appends.labels(topic), self.records.labels(topic), self.bytes.labels(topic))
            self._topic_children[topic] = children
        children[0].inc()
        children[1].inc(records)
        children[2].inc(size_bytes)
        self.append_seconds.observe(seconds)
        observe.request("flight", "append", "ok", seconds, records_in=records, bytes_in=size_bytes)

    def failed(self, call: str, code: str) -> None:
        self.errors.labels(call, code).inc()
        if call == APPEND_STREAM_CALL:  # one append of a stream (the stream's call goes on)
            observe.refused("flight", "append", code)

    def serve(
        self, host: str, port: int, bounds: connections.DoorLimits | None = None
    ) -> BoundedHTTPListener:
        """Expose ``/metrics`` over HTTP on ``host:port`` (a daemon thread) within
        ``bounds`` (the metrics door's defaults when None); ``close()`` the result to stop."""
        server = _MetricsHTTPServer(self, host, port, bounds or connections.METRICS)
        return BoundedHTTPListener(server)


class _MetricsHTTPServer(BoundedHTTPServer):
    def __init__(self, metrics: Metrics, host: str, port: int, bounds: connections.DoorLimits) -> None:
        self.metrics = metrics
        self.registry = metrics.registry
        super().__init__("metrics", host, port, _MetricsHandler, bounds)


class _MetricsHandler(BoundedRequestHandler):
    """``/healthz`` and ``/readyz`` answer the probes (see the module docstring); every
    other path but /favicon.ico serves the metrics, as prometheus_client's own server
    does: the text format (or OpenMetrics, as the Accept header asks), gzipped when
    accepted, restricted to the ``name[]`` query parameters when given."""

    server_version = "odradek-metrics"
    server: _MetricsHTTPServer

    def do_GET(self) -> None:
        target = urllib.parse.urlsplit(self.path)
        if target.path == "/favicon.ico":
            self._answer(404, "text/plain; charset=utf-8", b"not found\n")
            return
        if target.path == "/healthz":
            self._answer(200, "text/plain; charset=utf-8", b"ok\n")
            return
        if target.path == "/readyz":
            ready, why = self.server.metrics.ready()
            status = 200 if ready else 503
            self._answer(
                status, "text/plain; charset=utf-8", f"{'ready' if ready else 'not ready'}: {why}\n".encode()
            )
            return
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        registry = self.server.registry
        names = urllib.parse.parse_qs(target.query).get("name[]")
        source: Collector = registry.restricted_registry(names) if names else registry
        tenant = self.principal.tenant
        metering = self.server.metrics.metering
        describes = self._describes()
        if tenant is not None:  # decision 0028: its own tenant's series only
            source = TenantView(source, tenant, metering.principals_of(tenant), describes)
        elif not self.principal.admin:  # decision 0028: never the tenants' space
            source = DefaultNamespaceView(source, metering.untenanted_principals(), describes)
        output = encoder(source)
        gzipped = gzip_accepted(self.headers.get("Accept-Encoding", ""))
        self._answer(200, content_type, gzip.compress(output) if gzipped else output, gzipped)

    def serves_tenants(self) -> bool:
        return True  # a tenant's principal gets its tenant's view (TenantView)

    def _describes(self) -> Describes | None:
        """With ``--authorize``, whether this request's principal may describe a topic or a
        group (engine names), each asked once a scrape; None: it may describe them all
        (no authorization, or an admin)."""
        authorizer = authorizer_of(self.server.authenticator)
        if authorizer is None or self.principal.admin:
            return None
        principal = self.principal
        decided: dict[tuple[str, str], bool] = {}

        def describes(resource_type: str, name: str) -> bool:
            allowed = decided.get((resource_type, name))
            if allowed is None:
                allowed = decided[(resource_type, name)] = authorizer.allowed(
                    principal, "describe", resource_type, name
                )
            return allowed

        return describes

    def _answer(self, status: int, content_type: str, body: bytes, gzipped: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        self.wfile.write(body)


# The labels that say whose a series is: a series is a tenant's when at least one of them
# names the tenant (or one of its principals) and none names anything else.
_NAMED_LABELS = ("topic", "group")  # engine names: the tenant's carry its prefix
#: Whether a scraping principal may describe a resource (its type, ``topic`` or ``group``,
#: and its engine name): with ``--authorize`` a view leaves out the series of the others.
Describes = Callable[[str, str], bool]
_TENANT_SPACE = TENANT_ROOT + "."  # every tenant's names start so (``_t.<tenant>.``)


class _ScopedView(Collector):
    """A view of ``source``'s samples: each kept with the labels :meth:`_labels` gives it,
    or left out (None); families left empty are left out."""

    source: Collector

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                labels = self._labels(sample.labels)
                if labels is not None:
                    kept.samples.append(sample if labels is sample.labels else sample._replace(labels=labels))
            if kept.samples:
                yield kept

    def _labels(self, labels: dict[str, str]) -> dict[str, str] | None:
        raise NotImplementedError


class TenantView(_ScopedView):
    """What tenant ``tenant``'s principals may scrape of ``source`` (decision 0028): the
    samples whose ``topic`` and ``group`` labels are the tenant's (shown without
    ``_t.<tenant>.``, as every other door names them), whose ``tenant`` label is it and
    whose ``principal`` label is one of ``principals``; a sample must carry at least one of
    these labels, so the process's and the cluster's series (door counts, fsyncs, agents)
    and every other tenant's stay out. With ``describes`` (``--authorize``) a ``topic`` or
    ``group`` the principal may not describe leaves its series out too. Families left empty
    are left out."""

    def __init__(
        self, source: Collector, tenant: str, principals: set[str], describes: Describes | None = None
    ) -> None:
        self.source = source
        self.tenant = tenant
        self.prefix = tenant_prefix(tenant)
        self.principals = principals
        self.describes = describes

    def _labels(self, labels: dict[str, str]) -> dict[str, str] | None:
        """``labels`` as the tenant sees them; None: not the tenant's series."""
        mine = False
        shown = dict(labels)
        for label in _NAMED_LABELS:
            value = labels.get(label)
            if value is None:
                continue
            if not value.startswith(self.prefix) or tenant_of(value) != self.tenant:
                return None
            if self.describes is not None and not self.describes(label, value):
                return None
            shown[label] = value[len(self.prefix) :]
            mine = True
        if "tenant" in labels:
            if labels["tenant"] != self.tenant:
                return None
            mine = True
        if "principal" in labels:
            if labels["principal"] not in self.principals:
                return None
            mine = True
        return shown if mine else None


class DefaultNamespaceView(_ScopedView):
    """What an untenanted principal that is not an admin may scrape of ``source``
    (decision 0028: it never reaches the tenants' space): every sample but those whose
    ``topic`` or ``group`` label is a tenant's (``_t.<tenant>.``), that carry a ``tenant``
    label (the tenants' metering, ``other`` included) or whose ``principal`` label is not
    one of ``principals`` (the untenanted users' labels: a tenant's user and ``other``,
    which may sum tenants' users, stay out), and with ``describes`` (``--authorize``) those
    of a topic or group the principal may not describe. The process's and the cluster's
    series, which name no one, are kept. Families left empty are left out."""

    def __init__(self, source: Collector, principals: set[str], describes: Describes | None = None) -> None:
        self.source = source
        self.principals = principals
        self.describes = describes

    def _labels(self, labels: dict[str, str]) -> dict[str, str] | None:
        return labels if self._shown(labels) else None

    def _shown(self, labels: dict[str, str]) -> bool:
        for label in _NAMED_LABELS:
            value = labels.get(label)
            if value is None:
                continue
            if value.startswith(_TENANT_SPACE):
                return False
            if self.describes is not None and not self.describes(label, value):
                return False
        if "tenant" in labels:
            return False
        principal = labels.get("principal")
        return principal is None or principal in self.principals


class TopicCollector(Collector):
    """Per-topic sizes, read from the engine at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        records = GaugeMetricFamily("odradek_topic_records", "Records held by a topic.", labels=["topic"])
        size = GaugeMetricFamily("odradek_topic_bytes", "Bytes of a topic's segments.", labels=["topic"])
        next_offset = GaugeMetricFamily(
            "odradek_topic_next_offset", "Offset the next append to a topic gets.", labels=["topic"]
        )
        keys = GaugeMetricFamily("odradek_topic_keys", "Distinct keys of a topic.", labels=["topic"])
        damaged = GaugeMetricFamily(
            "odradek_topic_damaged_records",
            "Offsets of a topic whose records are damaged (lost or failing their checksum); "
            "see odradek topic verify.",
            labels=["topic", "accepted"],
        )
        read_only = GaugeMetricFamily(
            "odradek_topic_read_only",
            "1 while a topic refuses appends because of damage (odradek topic repair decides).",
            labels=["topic"],
        )
        unavailable = GaugeMetricFamily(
            "odradek_topics_unavailable", "Topics whose files exist but cannot be opened (damaged metadata)."
        )
        tenant_bytes = GaugeMetricFamily(
            "odradek_tenant_storage_bytes",
            "Bytes of the segments of a tenant's topics (decision 0028).",
            labels=["tenant"],
        )
        storage: dict[str, int] = {}
        if not self.engine.closed:
            for name in self.engine.list_topics():
                try:
                    info = self.engine.describe_topic(name)
                except OdradekError:  # deleted since it was listed
                    continue
                records.add_metric([name], info.records)
                size.add_metric([name], info.bytes)
                tenant = tenant_of(name)
                if tenant is not None:
                    storage[tenant] = storage.get(tenant, 0) + info.bytes
                next_offset.add_metric([name], info.next_offset)
                keys.add_metric([name], info.keys)
                lost = {True: 0, False: 0}
                for damage in info.damaged:
                    lost[bool(damage["accepted"])] += damage["end_offset"] - damage["first_offset"]
                damaged.add_metric([name, "false"], lost[False])
                damaged.add_metric([name, "true"], lost[True])
                read_only.add_metric([name], 1 if info.status == "read-only" else 0)
            unavailable.add_metric([], len(self.engine.unavailable_topics()))
        for tenant, stored in sorted(storage.items()):
            tenant_bytes.add_metric([tenant], stored)
        yield from (records, size, next_offset, keys, damaged, read_only, unavailable, tenant_bytes)
        yield from self._compaction()

    def _compaction(self) -> Iterator[Metric]:
        """How far compaction lags on each compacted topic (cleanup compact or snapshot):
        sizes the engine holds in memory (engine/compaction.py ``CompactionLag``)."""
        dirty = GaugeMetricFamily(
            "odradek_topic_compaction_dirty_bytes",
            "Bytes of a compacted topic's sealed segments written since its clean point (not yet compacted).",
            labels=["topic"],
        )
        ratio = GaugeMetricFamily(
            "odradek_topic_compaction_dirty_ratio",
            "A compacted topic's dirty bytes over its sealed bytes.",
            labels=["topic"],
        )
        trigger = GaugeMetricFamily(
            "odradek_topic_compaction_trigger_ratio",
            "The dirty ratio at which a compaction round of the topic starts "
            "(min_cleanable_dirty_ratio; 0 for cleanup=snapshot).",
            labels=["topic"],
        )
        behind = GaugeMetricFamily(
            "odradek_topic_compaction_behind_seconds",
            "How long a compaction round of the topic has been due without one finishing (0: none due).",
            labels=["topic"],
        )
        last_round = GaugeMetricFamily(
            "odradek_topic_compaction_last_round_timestamp_seconds",
            "When the topic's latest compaction round finished (absent before its first since the open).",
            labels=["topic"],
        )
        rounds = CounterMetricFamily(
            "odradek_topic_compaction_rounds",
            "Compaction rounds of the topic finished since the server opened it.",
            labels=["topic"],
        )
        if not self.engine.closed:
            now = time.time()
            for lag in self.engine.compaction_lags():
                labels = [lag.topic]
                dirty.add_metric(labels, lag.dirty_bytes)
                ratio.add_metric(labels, lag.dirty_ratio)
                trigger.add_metric(labels, lag.trigger_ratio)
                behind.add_metric(labels, lag.behind_seconds(now))
                if lag.last_round_at is not None:
                    last_round.add_metric(labels, lag.last_round_at)
                rounds.add_metric(labels, lag.rounds)
        yield from (dirty, ratio, trigger, behind, last_round, rounds)


class GroupCollector(Collector):
    """Per consumer group of either kind: its kind and state, members, and per topic
    its committed offset, lag and deliveries in flight; a Kafka group's lag per virtual
    partition; an odradek group's event counters (since the server loaded the group).
    Read from the node's group directory at scrape time, like the topic sizes."""

    def __init__(self, directory: GroupDirectory, engine: Engine) -> None:
        self.directory = directory
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        kinds = GaugeMetricFamily(
            "odradek_group_info",
            "1 for each consumer group, labelled with its kind (odradek; share: an odradek group "
            "Kafka share consumers are in; or kafka: joined through the Kafka door) and state "
            "(Stable, Empty, or a Kafka rebalance state).",
            labels=["group", "kind", "state"],
        )
        members = GaugeMetricFamily("odradek_group_members", "Members of a consumer group.", labels=["group"])
        lag = GaugeMetricFamily(
            "odradek_group_lag",
            "Records of a topic at or above a group's committed offset not yet settled.",
            labels=["group", "topic"],
        )
        in_flight = GaugeMetricFamily(
            "odradek_group_in_flight",
            "Records of a topic delivered to a group and not yet settled.",
            labels=["group", "topic"],
        )
        committed = GaugeMetricFamily(
            "odradek_group_committed_offset",
            "Every offset of the topic below this is settled by the group.",
            labels=["group", "topic"],
        )
        partition_lag = GaugeMetricFamily(
            "odradek_group_partition_lag",
            "A Kafka group's lag on a virtual partition: the partition's high watermark minus "
            "its committed offset (Kafka's definition).",
            labels=["group", "topic", "partition"],
        )
        events = CounterMetricFamily(
            "odradek_group_events",
            "Group events since the server loaded the group (delivered, acked, timed_out, "
            "dead_lettered, ...).",
            labels=["group", "event"],
        )
        if not self.engine.closed:
            for group in self.directory.list_groups():
                try:
                    info = self.directory.describe_group(group)
                except OdradekError:  # deleted since it was listed (or its door did not answer)
                    continue
                kinds.add_metric([group, info.kind, info.state], 1)
                members.add_metric([group], len(info.members))
                for topic in info.topics:
                    lag.add_metric([group, topic.topic], topic.lag)
                    in_flight.add_metric([group, topic.topic], topic.in_flight)
                    committed.add_metric([group, topic.topic], topic.committed)
                    for partition in topic.partitions or ():
                        labels = [group, topic.topic, str(partition.partition)]
                        partition_lag.add_metric(labels, partition.lag)
                for event, count in sorted(info.counters.items()):
                    events.add_metric([group, event], count)
        yield from (kinds, members, lag, in_flight, committed, partition_lag, events)


class MeteringCollector(Collector):
    """Per principal (``principal`` label; past ``limits.metering_principals_max`` of them
    the rest add up as ``other``): bytes and records in and out, and time throttled by
    quotas (security/quotas.py)."""

    _FAMILIES = (
        ("bytes_in", "odradek_principal_bytes_in", "Bytes a principal produced (request bytes)."),
        ("bytes_out", "odradek_principal_bytes_out", "Record bytes a principal fetched."),
        ("records_in", "odradek_principal_records_in", "Records a principal produced."),
        ("records_out", "odradek_principal_records_out", "Records a principal fetched."),
        ("throttle_seconds", "odradek_principal_throttle_seconds", "Time throttled by quotas."),
    )

    def __init__(self, metering: Metering) -> None:
        self.metering = metering

    _TENANT_FAMILIES = (
        ("bytes_in", "odradek_tenant_bytes_in", "Bytes a tenant's principals produced (request bytes)."),
        ("bytes_out", "odradek_tenant_bytes_out", "Record bytes a tenant's principals fetched."),
        ("records_in", "odradek_tenant_records_in", "Records a tenant's principals produced."),
        ("records_out", "odradek_tenant_records_out", "Records a tenant's principals fetched."),
        ("throttle_seconds", "odradek_tenant_throttle_seconds", "Time a tenant's principals were throttled."),
    )

    def collect(self) -> Iterator[Metric]:
        snapshot = self.metering.snapshot()
        for meter, name, text in self._FAMILIES:
            family = CounterMetricFamily(name, text, labels=["principal"])
            for principal, counts in sorted(snapshot.items()):
                family.add_metric([principal], counts[meter])
            yield family
        tenants = self.metering.tenants()  # decision 0028
        for meter, name, text in self._TENANT_FAMILIES:
            family = CounterMetricFamily(name, text, labels=["tenant"])
            for tenant, counts in sorted(tenants.items()):
                family.add_metric([tenant], counts[meter])
            yield family


class _ClusterCollector(Collector):
    """A cluster agent's role, epoch and ownership changes (cluster/agent.py)."""

    def __init__(self, agent: ClusterAgent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        status = self.agent.status()
        counters = status["counters"]
        owner = GaugeMetricFamily(
            "odradek_cluster_owner", "1 while this agent owns the cluster's data, else 0.", labels=["agent"]
        )
        owner.add_metric([status["agent"]], 1.0 if status["role"] == "owner" else 0.0)
        yield owner
        yield GaugeMetricFamily(
            "odradek_cluster_epoch",
            "The owner's epoch (etcd revision of its owner key); 0: no owner.",
            value=float(status["epoch"]),
        )
        yield GaugeMetricFamily(
            "odradek_cluster_agents",
            "Live agents of the cluster, as this agent sees them.",
            value=float(len(status["agents"])),
        )
        for name, text in (
            ("joins", "Times this agent joined the cluster (a lost lease joins again)."),
            ("takeovers", "Times this agent became the owner."),
            ("losses", "Times this agent stopped owning because its lease or owner key was lost."),
            ("handovers", "Times this agent handed ownership over (SIGTERM)."),
        ):
            yield CounterMetricFamily(f"odradek_cluster_{name}", text, value=float(counters[name]))
        yield GaugeMetricFamily(
            "odradek_cluster_takeover_seconds",
            "Seconds the last takeover took, from acquiring the owner key to serving.",
            value=float(counters["last_takeover_seconds"]),
        )


def cluster_collector(agent: ClusterAgent) -> Collector:
    """The metrics of a cluster agent (added to an agent's Metrics)."""
    return _ClusterCollector(agent)
