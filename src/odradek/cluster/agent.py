"""A cluster agent: joins the cluster in etcd, owns the data or stands by (no IO of its own
beyond etcd; what owning means is the caller's, through :class:`Role`).

Theory of operation (decision record 0013). A cluster has one *cell*: all its topics,
groups and door state, journaled in the object store by one engine (decision 0011).
Exactly one agent, the *owner*, holds ``owners/_cell`` in etcd, bound to its lease; the
others are *standbys*. The agent runs an asyncio loop on a thread of its own:

1. join: a lease and ``agents/<id>`` (its doors' addresses), kept alive every TTL / 3;
2. watch ``owners/_cell``. While another agent owns it, stand by (the Flight door
   answers NotOwner naming the owner). When nobody does, acquire it (one transaction:
   exactly one of the racing standbys wins; the key's revision is the epoch);
3. the winner opens the engine on the store (``Role.become_owner``, blocking, on a
   worker thread): attaching claims the store's next epoch and fences the previous
   owner's journal before reading it, so a zombie owner can no longer make a write
   visible (decision 0011). Only then does it serve;
4. it serves until (a) its lease's safe window closes (no renewal got through, e.g. a
   pause or a partition): it stops serving at once, closes the engine and joins again
   as a standby; (b) the owner key changes under it (an operator deleted it): the same;
   (c) it is asked to stop (SIGTERM): it stops serving, closes the engine (its journal
   commits, a checkpoint is written), deletes the owner key, revokes its lease: a
   standby's watch sees the delete and takes over at once.

``check_owner`` (what the doors call before serving anything) answers from memory: the
role and the lease's local clock (cluster/lease.py), no request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any, Protocol

import aetcd.exceptions
import grpc.aio

from odradek import limits
from odradek.cluster.etcd import (
    AgentIdInUse,
    EtcdCluster,
    EtcdUnavailable,
    OwnedByAnother,
    Ownership,
    OwnershipLost,
)
from odradek.cluster.etcd_client import EtcdSecurity
from odradek.cluster.keys import AgentRecord, OwnerRecord
from odradek.errors import InvalidRequest, NotOwner, OdradekError

log = logging.getLogger(__name__)

CELL = "_cell"  # the owner key of the cluster's one cell (decision record 0013)
OWNER = "owner"
STANDBY = "standby"
JOINING = "joining"
STOPPED = "stopped"
_RETRY_FIRST_SECONDS = 0.2  # after a failed join or takeover, doubled up to:
_RETRY_MAX_SECONDS = 2.0


class Role(Protocol):
    """What becoming and ceasing to be the owner does (cluster/serving.py)."""

    def become_owner(self, epoch: int) -> None:
        """Open the data and serve it (blocking; on a worker thread). Raises if it
        cannot: the agent gives ownership up and tries again later."""

    def stop_owning(self, graceful: bool) -> None:
        """Stop serving and close the data (blocking). ``graceful``: a handover, let
        what is in flight finish; else the lease is lost, stop at once."""


@dataclasses.dataclass(frozen=True)
class AgentSettings:
    endpoints: str  # etcd: http://HOST:PORT[,http://HOST:PORT...]
    cluster: str
    agent_id: str
    address: str  # where clients reach this agent's Flight door (HOST:PORT)
    doors: dict[str, str] = dataclasses.field(default_factory=dict)  # keys.DOORS
    lease_ttl: int = limits.cluster_lease_ttl_seconds_default
    security: EtcdSecurity | None = None  # TLS files and the user, for a secured etcd
    # How clients reach the agents' Flight doors: "grpc" or "grpc+tls" (every agent of a
    # cluster serves TLS alike; the records hold HOST:PORT).
    scheme: str = "grpc"


@dataclasses.dataclass
class Counters:
    """What the agent did, for metrics and tests."""

    joins: int = 0
    takeovers: int = 0  # times it became the owner
    losses: int = 0  # times it stopped owning because its lease or key was lost
    handovers: int = 0  # times it gave ownership up on request
    last_takeover_seconds: float = 0.0  # from acquiring the key to serving


class ClusterAgent:
    """One agent of a cluster (see the module docstring)."""

    def __init__(self, settings: AgentSettings, role: Role) -> None:
        self.settings = settings
        self.role_hooks = role
        self.counters = Counters()
        self._role = JOINING
        self._owner: OwnerRecord | None = None
        self._epoch = 0
        self._agents: dict[str, AgentRecord] = {}
        self._cluster: EtcdCluster | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._future: Future[None] | None = None
        self._stopping = False
        self._handover: asyncio.Event | None = None
        self._handover_to: str | None = None
        self._joined = threading.Event()
        self._start_error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = limits.cluster_retry_seconds_max) -> None:
        """Run the agent; return once it joined (raises if it could not within ``timeout``)."""
        if self._future is not None:
            raise InvalidRequest("the agent runs already")
        loop = _shared_loop()
        self._loop = loop
        self._future = asyncio.run_coroutine_threadsafe(self._run(), loop)
        if not self._joined.wait(timeout):
            self.stop(timeout=1.0)
            raise EtcdUnavailable(
                f"could not join cluster {self.settings.cluster!r} through etcd {self.settings.endpoints} "
                f"within {timeout:g} s"
            )
        if self._start_error is not None:
            raise self._start_error

    def stop(self, timeout: float = limits.shutdown_drain_seconds_max + 10) -> None:
        """Hand ownership over (if owned) and leave the cluster; wait for it."""
        loop, future = self._loop, self._future
        if loop is None or future is None:
            return
        loop.call_soon_threadsafe(self._request_stop)
        with contextlib.suppress(Exception):
            future.result(timeout)

    def _request_stop(self) -> None:
        self._stopping = True
        if self._stop_requested is not None:
            self._stop_requested.set()

    @property
    def running(self) -> bool:
        return self._future is not None and not self._future.done()

    # -- what the doors ask ------------------------------------------------------------------

    def is_owner(self) -> bool:
        with self._lock:
            if self._role != OWNER:
                return False
            cluster = self._cluster
        clock = cluster.clock if cluster is not None else None
        return clock is not None and clock.held(time.monotonic())

    def readiness(self) -> tuple[bool, str]:
        """Whether this agent can take clients now (``/readyz``), and why: it joined the
        cluster and its lease holds, as the owner (it serves) or a standby (it leads
        clients to the owner). Joining, a lost lease or a stopped agent: not ready."""
        with self._lock:
            role = self._role
            cluster = self._cluster
        clock = cluster.clock if cluster is not None else None
        if role not in (OWNER, STANDBY):
            return False, f"agent {self.settings.agent_id} is {role}"
        if clock is None or not clock.held(time.monotonic()):
            return False, f"agent {self.settings.agent_id} has no live lease in etcd (joining again)"
        return True, f"agent {self.settings.agent_id} is the {role} of cluster {self.settings.cluster}"

    def _url(self, address: str) -> str:
        """The URL of an agent's Flight door at ``address`` (HOST:PORT)."""
        return f"{self.settings.scheme}://{address}"

    def owner_door(self, door: str) -> tuple[str, int] | None:
        """Where another agent that owns the data listens with ``door`` (a name of
        keys.DOORS: ``kafka``, ...), as its agent record says; None while no other agent
        is known to own the data, or it has no such door."""
        with self._lock:
            owner = self._owner
            record = self._agents.get(owner.agent_id) if owner is not None else None
        if owner is None or owner.agent_id == self.settings.agent_id or record is None:
            return None
        address = record.doors.get(door)
        if not address:
            return None
        host, _, port = address.rpartition(":")
        return host.strip("[]"), int(port)

    def check_owner(self) -> None:
        if not self.is_owner():
            raise self.not_owner()

    def not_owner(self) -> OdradekError:
        with self._lock:
            owner = self._owner
            role = self._role
            agents = dict(self._agents)
        if role == OWNER:  # the lease's safe window closed: the agent is giving up
            return NotOwner(f"agent {self.settings.agent_id!r} is giving ownership up; retry")
        if owner is None or owner.agent_id == self.settings.agent_id:
            return NotOwner(
                f"no agent of cluster {self.settings.cluster!r} owns the data right now "
                "(a failover is in progress); retry shortly"
            )
        record = agents.get(owner.agent_id)
        url = self._url(record.address) if record is not None else None
        return NotOwner(
            f"agent {self.settings.agent_id!r} is a standby; agent {owner.agent_id!r} owns the data"
            + (f" at {url}" if url else ""),
            url,
            owner.agent_id,
        )

    def status(self) -> dict[str, Any]:
        with self._lock:
            owner = self._owner
            agents = sorted(self._agents.values(), key=lambda record: record.agent_id)
            role = self._role
            epoch = self._epoch
        owner_record = next((a for a in agents if owner is not None and a.agent_id == owner.agent_id), None)
        return {
            "cluster": self.settings.cluster,
            "agent": self.settings.agent_id,
            "role": OWNER if role == OWNER and self.is_owner() else role,
            "owner": owner.agent_id if owner is not None else None,
            "owner_url": self._url(owner_record.address) if owner_record is not None else None,
            "epoch": (epoch if role == OWNER else owner.epoch) if owner is not None else 0,
            "agents": [
                {"agent": a.agent_id, "url": self._url(a.address), "doors": dict(a.doors), "lease": a.lease}
                for a in agents
            ],
            "counters": dataclasses.asdict(self.counters),
        }

    def hand_over(self, to: str | None = None) -> dict[str, Any]:
        """Hand the data over to agent ``to`` (None: another live agent), as SIGTERM
        does but staying in the cluster as a standby. Returns at once; the handover
        takes about a checkpoint and an attach."""
        with self._lock:
            role = self._role
            agents = sorted(self._agents)
        if role != OWNER:
            raise self.not_owner()
        others = [agent for agent in agents if agent != self.settings.agent_id]
        target = to if to is not None else (others[0] if others else None)
        if target is None:
            raise InvalidRequest("no other agent to hand the data over to: start one first")
        if target not in others:
            raise InvalidRequest(f"agent {target!r} is not a live agent of the cluster; live: {others}")
        loop, event = self._loop, self._handover
        if loop is None or event is None:
            raise self.not_owner()
        self._handover_to = target
        loop.call_soon_threadsafe(event.set)
        return {"from": self.settings.agent_id, "to": target}

    def wait_for_role(self, role: str, timeout: float) -> bool:
        """Wait until the agent has ``role`` (tests, the bench)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._role == role:
                    return True
            time.sleep(0.02)
        return False

    # -- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._main()
        except BaseException as exc:
            if not self._joined.is_set():
                self._start_error = exc
            else:
                log.exception("the cluster agent stopped on an error")
        finally:
            self._set_role(STOPPED, None)
            self._joined.set()

    async def _main(self) -> None:
        self._stop_requested = asyncio.Event()
        self._handover = asyncio.Event()
        if self._stopping:
            return
        backoff = _RETRY_FIRST_SECONDS
        while not self._stop_requested.is_set():
            cluster = EtcdCluster(
                self.settings.endpoints, self.settings.cluster, security=self.settings.security
            )
            try:
                try:
                    await self._join(cluster)
                except (EtcdUnavailable, AgentIdInUse) as exc:
                    log.warning("cannot join cluster %r yet: %s", self.settings.cluster, exc.message)
                    await self._pause(backoff)
                    backoff = min(backoff * 2, _RETRY_MAX_SECONDS)
                    continue
                backoff = _RETRY_FIRST_SECONDS
                try:
                    await self._member(cluster)
                except (OdradekError, aetcd.exceptions.ClientError, grpc.aio.AioRpcError) as exc:
                    # etcd answered something unforeseen while this agent was a member:
                    # it is no member any more (its role is given up), so it joins again
                    # rather than ending the process.
                    log.error(
                        "agent %s left cluster %r on an error and joins again: %s",
                        self.settings.agent_id,
                        self.settings.cluster,
                        exc,
                        exc_info=True,
                    )
                    await self._give_up_role()
                    await self._pause(backoff)
            finally:
                with self._lock:
                    self._cluster = None
                await cluster.close()

    async def _join(self, cluster: EtcdCluster) -> None:
        record = await cluster.join(
            self.settings.agent_id,
            self.settings.address,
            self.settings.lease_ttl,
            self.settings.doors,
            tls=self.settings.scheme == "grpc+tls",
        )
        with self._lock:
            self._cluster = cluster
            self._agents[record.agent_id] = record
        self.counters.joins += 1
        self._set_role(STANDBY, None)
        self._joined.set()
        log.info(
            "joined cluster %r as agent %s (lease %x, TTL %d s)",
            self.settings.cluster,
            record.agent_id,
            record.lease,
            self.settings.lease_ttl,
        )

    async def _pause(self, seconds: float) -> None:
        assert self._stop_requested is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop_requested.wait()

    async def _member(self, cluster: EtcdCluster) -> None:
        """Stand by or own until the lease is lost (return: join again) or a stop."""
        assert self._stop_requested is not None
        owners: asyncio.Queue[OwnerRecord | None] = asyncio.Queue()
        tasks = [
            asyncio.create_task(self._pump_owner(cluster, owners), name="odradek-owner-watch"),
            asyncio.create_task(self._follow_agents(cluster), name="odradek-agents-watch"),
        ]
        try:
            while True:
                owner = await self._next(owners, cluster)
                if owner is _STOP:
                    await self._leave(cluster)
                    return
                if owner is _LOST:
                    return
                if owner is _HANDOVER:  # asked as the owner, arrived as a standby: nothing to do
                    continue
                assert owner is None or isinstance(owner, OwnerRecord)
                if owner is not None:
                    self._set_role(STANDBY, owner)
                    continue
                self._set_role(STANDBY, None)
                try:
                    target = await cluster.handover_target(CELL)
                except EtcdUnavailable:
                    target = None
                with self._lock:
                    target_live = target in self._agents
                if target is not None and target != self.settings.agent_id and target_live:
                    # The data is being handed over to another agent: leave it the key,
                    # and look again shortly (the handover key goes by itself).
                    asyncio.get_running_loop().call_later(_HANDOVER_LOOK_SECONDS, owners.put_nowait, None)
                    continue
                try:
                    ownership = await cluster.acquire(CELL)
                except OwnedByAnother as exc:
                    self._set_role(STANDBY, exc.owner)
                    continue
                except OwnershipLost:
                    return
                except EtcdUnavailable as exc:
                    log.warning("cannot acquire the cell yet: %s", exc.message)
                    await self._pause(_RETRY_MAX_SECONDS)
                    owners.put_nowait(None)  # look again
                    continue
                if not await self._own(cluster, ownership, owners):
                    return
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _next(self, owners: asyncio.Queue[OwnerRecord | None], cluster: EtcdCluster) -> object:
        """The next owner event, or _STOP / _LOST; the latest one when several queued."""
        assert self._stop_requested is not None
        assert self._handover is not None
        getting = asyncio.ensure_future(owners.get())
        stopping = asyncio.ensure_future(self._stop_requested.wait())
        losing = asyncio.ensure_future(cluster.lease_lost.wait())
        handing = asyncio.ensure_future(self._handover.wait())
        waiters = {getting, stopping, losing, handing}
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        if stopping in done:
            return _STOP
        if losing in done:
            return _LOST
        if handing in done:
            self._handover.clear()
            return _HANDOVER
        owner = getting.result()
        while not owners.empty():
            owner = owners.get_nowait()
        return owner

    async def _own(
        self, cluster: EtcdCluster, ownership: Ownership, owners: asyncio.Queue[OwnerRecord | None]
    ) -> bool:
        """Serve as the owner; True to stand by again on the same lease, False to join
        again (the lease was lost) or stop."""
        assert self._stop_requested is not None
        started = time.monotonic()
        log.info(
            "agent %s owns the cell at epoch %d: opening the data", self.settings.agent_id, ownership.epoch
        )
        try:
            await asyncio.to_thread(self.role_hooks.become_owner, ownership.epoch)
        except Exception as exc:  # noqa: BLE001 - give the cell up for another agent to try
            log.error("agent %s could not open the data: %s; giving the cell up", self.settings.agent_id, exc)
            with contextlib.suppress(OdradekError):
                await cluster.release(CELL)
            await self._pause(_RETRY_MAX_SECONDS)
            return True
        if not cluster.holds(CELL, ownership.epoch):
            log.warning("agent %s lost its lease while opening the data", self.settings.agent_id)
            await asyncio.to_thread(self.role_hooks.stop_owning, False)
            self.counters.losses += 1
            return False
        with self._lock:
            self._epoch = ownership.epoch
            self._owner = OwnerRecord(
                CELL, self.settings.agent_id, cluster.clock.lease if cluster.clock else 0
            )
            self._role = OWNER
        self.counters.takeovers += 1
        self.counters.last_takeover_seconds = time.monotonic() - started
        log.info(
            "agent %s serves as the owner (epoch %d) after %.2f s",
            self.settings.agent_id,
            ownership.epoch,
            self.counters.last_takeover_seconds,
        )
        while True:
            event = await self._next(owners, cluster)
            if event is _HANDOVER:
                target = self._handover_to
                log.info("agent %s hands the cell over to %s", self.settings.agent_id, target)
                try:
                    if target is not None:
                        await cluster.hand_over(CELL, target, limits.cluster_handover_seconds)
                except OdradekError as exc:
                    log.warning("could not name %s in etcd (%s); handing over to any agent", target, exc)
                await self._hand_over(cluster)
                return True
            if event is _STOP:
                log.info("agent %s hands the cell over", self.settings.agent_id)
                await self._hand_over(cluster)
                await self._leave(cluster)
                self._stop_requested.set()
                return False
            if (
                event is _LOST
                or (isinstance(event, OwnerRecord) and event.epoch != ownership.epoch)
                or event is None
            ):
                self._set_role(STANDBY, event if isinstance(event, OwnerRecord) else None)
                log.warning(
                    "agent %s stopped owning the cell (epoch %d): %s",
                    self.settings.agent_id,
                    ownership.epoch,
                    "its lease was lost" if event is _LOST else "the owner key changed",
                )
                await asyncio.to_thread(self.role_hooks.stop_owning, False)
                self.counters.losses += 1
                if event is not _LOST:
                    with contextlib.suppress(OdradekError):
                        await cluster.leave()  # never act on this lease again: join afresh
                return False

    async def _give_up_role(self) -> None:
        """Stop serving if this agent owned the data, and stand by no more (joining)."""
        with self._lock:
            owned = self._role == OWNER
        self._set_role(JOINING, None)
        if owned:
            await asyncio.to_thread(self.role_hooks.stop_owning, False)
            self.counters.losses += 1

    async def _hand_over(self, cluster: EtcdCluster) -> None:
        """Stop serving, let the data close (its journal commits, a checkpoint), then
        release the owner key for a standby to take at once."""
        self._set_role(STANDBY, None)
        await asyncio.to_thread(self.role_hooks.stop_owning, True)
        self.counters.handovers += 1
        with contextlib.suppress(OdradekError):
            await cluster.release(CELL)

    async def _leave(self, cluster: EtcdCluster) -> None:
        with contextlib.suppress(OdradekError):
            await cluster.leave()
        log.info("agent %s left cluster %r", self.settings.agent_id, self.settings.cluster)

    async def _pump_owner(self, cluster: EtcdCluster, owners: asyncio.Queue[OwnerRecord | None]) -> None:
        # Whatever breaks a watch (a member killed mid-stream may surface as any gRPC
        # error), it is started again: reading the key first, nothing is missed.
        while True:
            try:
                async for owner in cluster.watch_owner(CELL):
                    owners.put_nowait(owner)
            except Exception as exc:  # noqa: BLE001 - see above
                log.warning("watching the owner failed (%r); watching again", exc)
                await asyncio.sleep(_RETRY_MAX_SECONDS / 2)

    async def _follow_agents(self, cluster: EtcdCluster) -> None:
        while True:
            try:
                async for event in cluster.watch_agents():
                    with self._lock:
                        if event.record is not None:
                            self._agents[event.agent_id] = event.record
                        else:
                            self._agents.pop(event.agent_id, None)
            except Exception as exc:  # noqa: BLE001 - as in _pump_owner (it lists again first)
                log.warning("watching the agents failed (%r); watching again", exc)
                await asyncio.sleep(_RETRY_MAX_SECONDS / 2)

    def _set_role(self, role: str, owner: OwnerRecord | None) -> None:
        with self._lock:
            self._role = role
            self._owner = owner


_STOP = object()
_LOST = object()
_HANDOVER = object()
_HANDOVER_LOOK_SECONDS = 0.5  # a standby passed over by a handover looks again this often


# Every agent of a process runs on one event loop: grpc's asyncio support (under aetcd)
# binds to the first loop that uses it. A process runs one agent (serve), tests several.
_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _shared_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="odradek-cluster-agents", daemon=True)
            thread.start()
            _loop = loop
        return _loop
