"""What ``odradek cluster status`` shows: a cluster's agents, owners and catalog as etcd
holds them, and the health of every etcd endpoint. Reads only: nothing is written.

Theory of operation, in three steps, each bounded:

1. **Probe every endpoint**, side by side, each within ``cluster_status_endpoint_seconds``:
   etcd's maintenance status (the answering member's id, the leader it follows, raft
   term and index, database size, version, errors), the alarms and the member list.
   aetcd's ``Client.status()`` drops the answering member's id (it is in the response
   header) and the errors, and asks for the member list once more, so the maintenance
   and cluster stubs are called directly, as ``etcd.py`` calls the KV stub for bounded
   listings. The member list names the endpoints that do not answer.
2. **Read agents and owners** through ``EtcdCluster`` over the endpoints that answered,
   the leader's first (a linearizable read, retried on the next member). No read is
   tried when no member that answered knows a leader: it could only time out.
3. **On one member that answered** (the leader if it did): count the catalog's topics
   (a count-only range: the records stay in etcd) and ask each listed agent's lease for
   its time to live, at most ``cluster_status_lease_requests_concurrent_max`` at once,
   all within one endpoint timeout; meanwhile ask the owner's Flight door how far its
   checkpoints lag its journal and how far compaction lags on its compacted topics (its
   ``cluster_status``), within the same timeout.

A secured etcd is reached as the agents reach it (``security``, cluster/etcd_client.py:
TLS, and the user's token on every call, the stubs' direct calls included).

etcd's trouble is what the report is for, so none of it is raised: an endpoint that
does not answer, an alarm, a read that fails, a cell nobody owns are ``problems`` (the
command exits 1 with them); a list cut at its cap or a lease not read in time are
``warnings``, and so are compacted topics whose round has been due for
``compaction_lag_warning_seconds`` without one finishing (as the owner counts them: its
rounds fail or cannot keep up). Only bad input (an endpoint URL, a cluster name) raises
``InvalidRequest``.
Member and lease ids are shown in hexadecimal, as etcdctl shows them (they are 64-bit:
JSON readers of JavaScript lose precision on such numbers).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

import aetcd.rpc
import grpc.aio

from odradek import limits
from odradek.cluster.agent import CELL  # the home cell: a one-cell cluster's owner owns every topic
from odradek.cluster.etcd import EtcdCluster, endpoints_tls, parse_endpoints
from odradek.cluster.etcd_client import EtcdClient, EtcdRefused, EtcdSecurity
from odradek.cluster.keys import AgentRecord, Layout, OwnerRecord, cell_names, prefix_end
from odradek.errors import InvalidRequest, OdradekError

_ALARMS = {0: "NONE", 1: "NOSPACE", 2: "CORRUPT"}  # etcdserverpb.AlarmType


@dataclasses.dataclass(frozen=True)
class EtcdMember:
    """A member of the etcd cluster, as its member list names it."""

    member_id: int
    name: str
    client_urls: tuple[str, ...]
    learner: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "member": _hex(self.member_id),
            "name": self.name,
            "client_urls": list(self.client_urls),
            "learner": self.learner,
        }


@dataclasses.dataclass(frozen=True)
class EndpointHealth:
    """One endpoint given with ``--etcd``: whether it answered, and what."""

    endpoint: str
    reachable: bool
    member_id: int | None = None  # from its answer, else from another member's list
    name: str | None = None
    leader_id: int | None = None  # the leader this member follows; 0: it knows none
    raft_term: int | None = None
    raft_index: int | None = None
    raft_applied_index: int | None = None
    revision: int | None = None
    db_size_bytes: int | None = None
    db_size_in_use_bytes: int | None = None
    version: str | None = None
    learner: bool = False
    errors: tuple[str, ...] = ()  # its own errors, or why it did not answer
    alarms: tuple[str, ...] = ()  # alarms raised on this member: NOSPACE, CORRUPT

    @property
    def leader(self) -> bool:
        return self.reachable and self.member_id is not None and self.member_id == self.leader_id

    @property
    def healthy(self) -> bool:
        return self.reachable and bool(self.leader_id) and not self.errors and not self.alarms

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "reachable": self.reachable,
            "healthy": self.healthy,
            "member": _hex(self.member_id),
            "name": self.name,
            "leader": self.leader,
            "leader_member": _hex(self.leader_id) if self.leader_id else None,
            "raft_term": self.raft_term,
            "raft_index": self.raft_index,
            "raft_applied_index": self.raft_applied_index,
            "revision": self.revision,
            "db_size_bytes": self.db_size_bytes,
            "db_size_in_use_bytes": self.db_size_in_use_bytes,
            "version": self.version,
            "learner": self.learner,
            "errors": list(self.errors),
            "alarms": list(self.alarms),
        }


@dataclasses.dataclass(frozen=True)
class AgentStatus:
    """A live agent (its key under ``agents/``) and what its lease has left."""

    record: AgentRecord
    owns: tuple[str, ...] = ()  # the keys under owners/ it holds (v1: the cell)
    lease_ttl_seconds: int | None = None  # remaining, as etcd counts it; None: not read
    lease_granted_seconds: int | None = None

    @property
    def role(self) -> str:
        return "owner" if self.owns else "standby"

    def to_json(self) -> dict[str, Any]:
        record = self.record
        return {
            "agent": record.agent_id,
            "role": self.role,
            "address": record.address,
            "url": f"grpc://{record.address}",
            "doors": dict(record.doors),
            "started_at": record.started_at,
            "lease": _hex(record.lease),
            "lease_ttl_seconds": self.lease_ttl_seconds,
            "lease_granted_seconds": self.lease_granted_seconds,
            "owns": list(self.owns),
        }


@dataclasses.dataclass(frozen=True)
class OwnerStatus:
    """A key under ``owners/``: who holds it, since which epoch."""

    record: OwnerRecord
    registered: bool  # whether its agent has a key under agents/

    def to_json(self) -> dict[str, Any]:
        record = self.record
        return {
            "topic": record.topic,
            "agent": record.agent_id,
            "epoch": record.epoch,
            "lease": _hex(record.lease),
            "agent_registered": self.registered,
        }


@dataclasses.dataclass(frozen=True)
class ClusterStatus:
    """Everything ``odradek cluster status`` reports (``to_json`` is its ``--json``)."""

    cluster: str
    checked_at: float
    endpoints: tuple[EndpointHealth, ...]
    members: tuple[EtcdMember, ...] = ()
    alarms: tuple[tuple[int, str], ...] = ()  # (member id, alarm) over the whole cluster
    agents: tuple[AgentStatus, ...] = ()
    agents_total: int | None = None  # None: not read
    owners: tuple[OwnerStatus, ...] = ()
    owners_total: int | None = None
    catalog_topics: int | None = None
    #: The cells the agents were started with (decision 0032; 1: the home cell alone).
    cells: int = 1
    #: How far the owner's checkpoints lag its journal, as it says (None: not read).
    store: dict[str, Any] | None = None
    #: How far compaction lags on the owner's compacted topics, as it says: totals and the
    #: worst topics by dirty ratio (engine/compaction.py ``lag_summary``; None: not read).
    compaction: dict[str, Any] | None = None
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def reachable(self) -> bool:
        """Whether any endpoint answered."""
        return any(endpoint.reachable for endpoint in self.endpoints)

    @property
    def etcd_healthy(self) -> bool:
        leaders = {endpoint.leader_id for endpoint in self.endpoints}
        return all(endpoint.healthy for endpoint in self.endpoints) and len(leaders) == 1 and not self.alarms

    @property
    def owner(self) -> OwnerStatus | None:
        """The cell's owner, if any agent holds it."""
        return next((owner for owner in self.owners if owner.record.topic == CELL), None)

    @property
    def healthy(self) -> bool:
        """etcd is healthy, the agents and owners were read and an agent owns the cell."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        owner = self.owner
        return {
            "cluster": self.cluster,
            "checked_at": self.checked_at,
            "healthy": self.healthy,
            "owner": owner.record.agent_id if owner else None,
            "epoch": owner.record.epoch if owner else None,
            "agents": [agent.to_json() for agent in self.agents],
            "agents_total": self.agents_total,
            "owners": [owner.to_json() for owner in self.owners],
            "owners_total": self.owners_total,
            "catalog_topics": self.catalog_topics,
            "cells": self.cells,
            "store": self.store,
            "compaction": self.compaction,
            "etcd": {
                "reachable": self.reachable,
                "healthy": self.etcd_healthy,
                "endpoints": [endpoint.to_json() for endpoint in self.endpoints],
                "members": [member.to_json() for member in self.members],
                "alarms": [{"member": _hex(member), "alarm": alarm} for member, alarm in self.alarms],
            },
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }


async def cluster_status(
    endpoints: str | Sequence[str],
    cluster: str = "default",
    *,
    timeout_seconds: float | None = None,
    agents_max: int | None = None,
    owners_max: int | None = None,
    security: EtcdSecurity | None = None,
) -> ClusterStatus:
    """The status of ``cluster`` in the etcd at ``endpoints`` (see the module docstring),
    reached with ``security`` (TLS files, a user) for a secured etcd. The bounds default
    to ``limits.cluster_status_*``."""
    timeout = limits.cluster_status_endpoint_seconds if timeout_seconds is None else timeout_seconds
    agents_cap = limits.cluster_status_agents_max if agents_max is None else agents_max
    owners_cap = limits.cluster_status_owners_max if owners_max is None else owners_max
    if not 0 < timeout <= limits.cluster_request_timeout_seconds * 12:
        raise InvalidRequest(f"timeout must be within 0..{limits.cluster_request_timeout_seconds * 12} s")
    if agents_cap < 1 or owners_cap < 1:
        raise InvalidRequest("the caps on agents and owners listed must be at least 1")
    pairs, tls = parse_endpoints(endpoints), endpoints_tls(endpoints)
    security = security or EtcdSecurity()
    security.check(tls)
    layout = Layout(cluster)
    report = _Report(layout, timeout, security)
    probes = [_Probe(host, port, timeout, tls, security) for host, port in pairs]
    try:
        await asyncio.gather(*(probe.run() for probe in probes))
        report.etcd(probes)
        answering = sorted((probe for probe in probes if probe.reachable), key=lambda probe: not probe.leader)
        if not answering:
            report.problems.append("etcd cannot be reached at any endpoint given")
        elif not any(probe.leader_id for probe in answering):
            report.problems.append(
                "no etcd member reached knows a leader (no quorum?): agents and owners cannot be read"
            )
        else:
            await report.read(answering, agents_cap, owners_cap)
    finally:
        await asyncio.gather(*(probe.close() for probe in probes))
    return report.result()


class _Probe:
    """One endpoint's client and what it answered."""

    def __init__(self, host: str, port: int, timeout: float, tls: bool, security: EtcdSecurity) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.tls, self.security = tls, security
        scheme = "https" if tls else "http"
        self.endpoint = f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
        self.client: Any = None
        self.status: Any = None
        self.alarms: list[tuple[int, str]] = []
        self.members: list[EtcdMember] = []
        self.error: str | None = None

    @property
    def reachable(self) -> bool:
        return self.status is not None

    @property
    def leader(self) -> bool:
        return self.status is not None and self.status.leader == self.status.header.member_id

    @property
    def leader_id(self) -> int:
        return int(self.status.leader) if self.status is not None else 0

    async def run(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                self.client = EtcdClient(
                    self.host, self.port, tls=self.tls, security=self.security, timeout=self.timeout
                )
                await self.client.connect()
                status = await self.client.maintenancestub.Status(
                    aetcd.rpc.StatusRequest(), timeout=self.timeout
                )
                alarms = await self.client.maintenancestub.Alarm(
                    aetcd.rpc.AlarmRequest(action=aetcd.rpc.AlarmRequest.GET), timeout=self.timeout
                )
                members = await self.client.clusterstub.MemberList(
                    aetcd.rpc.MemberListRequest(), timeout=self.timeout
                )
        except TimeoutError:
            self.error = f"no answer within {self.timeout:g} s"
            return
        except Exception as exc:  # noqa: BLE001 (whatever failed, it is this endpoint's report)
            self.error = _reason(exc)
            return
        self.status = status
        self.alarms = [
            (int(alarm.memberID), _ALARMS.get(alarm.alarm, str(alarm.alarm))) for alarm in alarms.alarms
        ]
        self.members = [
            EtcdMember(int(m.ID), m.name, tuple(m.clientURLs), bool(getattr(m, "isLearner", False)))
            for m in members.members
        ]

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken channel may fail in any way
                async with asyncio.timeout(self.timeout):
                    await client.close()


class _Report:
    """The report as it is put together (one per ``cluster_status`` call)."""

    def __init__(self, layout: Layout, timeout: float, security: EtcdSecurity) -> None:
        self.layout = layout
        self.timeout = timeout
        self.security = security
        self.checked_at = time.time()
        self.endpoints: list[EndpointHealth] = []
        self.members: list[EtcdMember] = []
        self.alarms: list[tuple[int, str]] = []
        self.agents: list[AgentStatus] = []
        self.agents_total: int | None = None
        self.owners: list[OwnerStatus] = []
        self.owners_total: int | None = None
        self.catalog_topics: int | None = None
        self.cells = 1
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.store: dict[str, Any] | None = None
        self.compaction: dict[str, Any] | None = None

    def result(self) -> ClusterStatus:
        return ClusterStatus(
            cluster=self.layout.cluster,
            checked_at=self.checked_at,
            endpoints=tuple(self.endpoints),
            members=tuple(self.members),
            alarms=tuple(self.alarms),
            agents=tuple(self.agents),
            agents_total=self.agents_total,
            owners=tuple(self.owners),
            owners_total=self.owners_total,
            catalog_topics=self.catalog_topics,
            cells=self.cells,
            store=self.store,
            compaction=self.compaction,
            problems=tuple(self.problems),
            warnings=tuple(self.warnings),
        )

    # --- etcd ------------------------------------------------------------------------

    def etcd(self, probes: list[_Probe]) -> None:
        answered = [probe for probe in probes if probe.reachable]
        lists = [probe.members for probe in answered]  # the longest: members may be joining
        longest: list[EtcdMember] = max(lists, key=len) if lists else []
        self.members = sorted(longest, key=lambda member: member.name)
        self.alarms = sorted({alarm for probe in answered for alarm in probe.alarms})
        by_address = {_address(url): member for member in self.members for url in member.client_urls}
        names = {member.member_id: member.name for member in self.members}
        for probe in probes:
            health = self._health(probe, by_address.get((probe.host.lower(), probe.port)), names)
            self.endpoints.append(health)
            if not probe.reachable:
                self.problems.append(f"etcd {_named(health)} cannot be reached: {probe.error}")
                continue
            for error in health.errors:
                self.problems.append(f"etcd {_named(health)} reports: {error}")
            if not health.leader_id:
                self.problems.append(f"etcd {_named(health)} knows no leader")
            if health.learner:
                self.warnings.append(f"etcd {_named(health)} is a learner: it does not vote")
        for member_id, alarm in self.alarms:
            self.problems.append(f"etcd alarm {alarm} on member {names.get(member_id, _hex(member_id))}")
        leaders = {health.leader_id for health in self.endpoints if health.reachable and health.leader_id}
        if len(leaders) > 1:
            named = ", ".join(sorted(names.get(leader, _hex(leader)) or "" for leader in leaders))
            self.problems.append(f"etcd members disagree on the leader ({named}): an election in progress?")
        probed = {health.member_id for health in self.endpoints}
        for member in self.members:
            if member.member_id not in probed:
                urls = ",".join(member.client_urls) or "no client URL"
                self.warnings.append(
                    f"etcd member {member.name or _hex(member.member_id)} ({urls}) is not among the "
                    "endpoints given: not checked"
                )

    def _health(self, probe: _Probe, member: EtcdMember | None, names: dict[int, str]) -> EndpointHealth:
        status = probe.status
        if status is None:
            return EndpointHealth(
                probe.endpoint,
                reachable=False,
                member_id=member.member_id if member else None,
                name=member.name if member else None,
                errors=(probe.error or "no answer",),
            )
        member_id = int(status.header.member_id)
        return EndpointHealth(
            probe.endpoint,
            reachable=True,
            member_id=member_id,
            name=names.get(member_id),
            leader_id=int(status.leader),
            raft_term=int(status.raftTerm),
            raft_index=int(status.raftIndex),
            raft_applied_index=int(status.raftAppliedIndex),
            revision=int(status.header.revision),
            db_size_bytes=int(status.dbSize),
            db_size_in_use_bytes=int(status.dbSizeInUse),
            version=str(status.version),
            learner=bool(status.isLearner),
            errors=tuple(str(error) for error in status.errors),
            alarms=tuple(alarm for owner, alarm in self.alarms if owner == member_id),
        )

    # --- the cluster's keys ----------------------------------------------------------

    async def read(self, answering: list[_Probe], agents_cap: int, owners_cap: int) -> None:
        async with EtcdCluster(
            [probe.endpoint for probe in answering],
            self.layout.cluster,
            security=self.security,
            request_timeout_seconds=self.timeout,
            retry_seconds=self.timeout * len(answering),
        ) as etcd:
            try:
                records = await etcd.agents()
                owners = await etcd.owners()
            except Exception as exc:  # noqa: BLE001 (etcd's trouble is reported, not raised)
                why = exc.message if isinstance(exc, OdradekError) else _reason(exc)
                self.problems.append(
                    f"the agents and owners of cluster {self.layout.cluster!r} cannot be read: {why}"
                )
                return
        registered = {record.agent_id for record in records}
        listed = sorted(owners.values(), key=lambda owner: (owner.topic != CELL, owner.topic))
        self.owners_total = len(listed)
        self.owners = [OwnerStatus(owner, owner.agent_id in registered) for owner in listed[:owners_cap]]
        if len(listed) > owners_cap:
            self.warnings.append(f"{len(listed)} owner keys, the first {owners_cap} shown")
        owns: dict[str, list[str]] = {}
        for owner in listed:
            owns.setdefault(owner.agent_id, []).append(owner.topic)
        self.agents_total = len(records)
        shown = sorted(records, key=lambda record: (record.agent_id not in owns, record.agent_id))[
            :agents_cap
        ]
        if len(records) > agents_cap:
            self.warnings.append(f"{len(records)} agents, the first {agents_cap} shown (owners first)")
        cell = next((owner for owner in listed if owner.topic == CELL), None)
        if cell is None:
            self.problems.append(
                f"no agent owns the cell (owners/{CELL}): no agent runs, or a failover is in progress"
            )
        counts = sorted({record.cells for record in records})
        self.cells = counts[-1] if counts else 1
        if len(counts) > 1:
            self.problems.append(
                f"the agents were started with different cell counts ({', '.join(map(str, counts))}): "
                "every agent of a cluster needs the same --cells"
            )
        for other in cell_names(self.cells)[1:]:
            if other not in owners:
                self.problems.append(
                    f"no agent owns cell {other} (owners/{other}): a failover is in progress, or too few "
                    "agents run"
                )
        for shown_owner in self.owners:
            if not shown_owner.registered:
                self.problems.append(
                    f"owners/{shown_owner.record.topic} names agent {shown_owner.record.agent_id!r}, "
                    "which has no key under agents/"
                )
        client = answering[0].client
        owner_record = next(
            (record for record in records if cell is not None and record.agent_id == cell.agent_id), None
        )
        leases, topics, owner_status = await asyncio.gather(
            self._leases(client, sorted({record.lease for record in shown})),
            self._count_topics(client),
            self._owner_status(owner_record),
        )
        self.catalog_topics = topics
        store, compaction = owner_status.get("store"), owner_status.get("compaction")
        self.store = dict(store) if isinstance(store, dict) else None
        self.compaction = dict(compaction) if isinstance(compaction, dict) else None
        if self.compaction is not None:
            self.warnings += compaction_warnings(self.compaction)
        unread = 0
        for record in shown:
            ttl = leases.get(record.lease)
            unread += ttl is None
            self.agents.append(
                AgentStatus(
                    record,
                    tuple(owns.get(record.agent_id, ())),
                    ttl[0] if ttl else None,
                    ttl[1] if ttl else None,
                )
            )
        if unread:
            self.warnings.append(
                f"the lease time to live of {unread} agent(s) was not read within {self.timeout:g} s"
            )

    async def _owner_status(self, owner: AgentRecord | None) -> dict[str, Any]:
        """The owner's ``cluster_status``, asked of its Flight door within the endpoint
        timeout: how far its checkpoints lag its journal (``store``) and compaction its
        compacted topics (``compaction``); empty, with a warning, when it does not answer."""
        if owner is None:
            return {}
        try:
            status = await asyncio.wait_for(
                asyncio.to_thread(_agent_status, _flight_url(owner), self.timeout), self.timeout + 1
            )
        except Exception as exc:  # noqa: BLE001 (an agent's trouble is reported, not raised)
            self.warnings.append(
                f"the owner {owner.agent_id} did not say how far its checkpoints lag, nor its compaction "
                f"({_flight_url(owner)}): {_reason(exc)}"
            )
            return {}
        return status

    async def _leases(self, client: Any, leases: list[int]) -> dict[int, tuple[int, int]]:
        """Each lease's (remaining, granted) TTL; leases not read in time are left out."""
        found: dict[int, tuple[int, int]] = {}
        gate = asyncio.Semaphore(limits.cluster_status_lease_requests_concurrent_max)

        async def one(lease: int) -> None:
            async with gate:
                try:
                    answer = await client.leasestub.LeaseTimeToLive(
                        aetcd.rpc.LeaseTimeToLiveRequest(ID=lease), timeout=self.timeout
                    )
                except Exception:  # noqa: BLE001 (a lease not read is counted as such)
                    return
            found[lease] = (max(0, int(answer.TTL)), int(answer.grantedTTL))

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timeout), asyncio.TaskGroup() as group:
                for lease in leases:
                    group.create_task(one(lease))
        return found

    async def _count_topics(self, client: Any) -> int | None:
        prefix = self.layout.topics_prefix
        request = aetcd.rpc.RangeRequest(key=prefix, range_end=prefix_end(prefix), count_only=True)
        try:
            async with asyncio.timeout(self.timeout):
                answer = await client.kvstub.Range(request, timeout=self.timeout)
        except (TimeoutError, grpc.aio.AioRpcError, EtcdRefused) as exc:
            self.warnings.append(f"the catalog's topics were not counted: {_reason(exc)}")
            return None
        return int(answer.count)


def compaction_warnings(compaction: dict[str, Any]) -> list[str]:
    """The warnings of the owner's compaction summary: topics whose round has been due
    for its ``warning_seconds`` or more without one finishing."""
    behind = int(compaction.get("topics_behind") or 0)
    if not behind:
        return []
    return [
        f"compaction is behind on {behind} compacted topic(s): a round has been due for up to "
        f"{float(compaction.get('behind_seconds_max') or 0):.0f} s without one finishing "
        f"(a warning past {float(compaction.get('warning_seconds') or 0):g} s): its rounds fail "
        "(see the owner's log) or cannot keep up with the appends"
    ]


def _flight_url(agent: AgentRecord) -> str:
    return f"{'grpc+tls' if agent.tls else 'grpc'}://{agent.address}"


def _agent_status(url: str, timeout: float) -> dict[str, Any]:
    """An agent's ``cluster_status``, asked of its Flight door; over TLS with the
    client files of ``ODRADEK_TLS_CA`` and ``ODRADEK_TLS_CLIENT_CERT``/``_KEY`` (the
    CLI's) when the agent serves TLS."""
    import json

    import pyarrow.flight as flight

    from odradek.protocols.tls import client_tls

    tls = client_tls(url)
    client = flight.FlightClient(url, **(tls.flight_arguments() if tls is not None else {}))
    try:
        options = flight.FlightCallOptions(timeout=timeout)
        results = list(client.do_action(flight.Action("cluster_status", b"{}"), options))
    finally:
        client.close()
    answer = json.loads(results[0].body.to_pybytes()) if results else {}
    return answer if isinstance(answer, dict) else {}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__


def _address(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    try:
        return ((parts.hostname or "").lower(), parts.port or 2379)
    except ValueError:
        return ("", 0)


def _named(health: EndpointHealth) -> str:
    return f"{health.endpoint} ({health.name})" if health.name else health.endpoint


def _hex(value: int | None) -> str | None:
    return None if value is None else f"{value:x}"
