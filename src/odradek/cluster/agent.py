"""A cluster agent: joins the cluster in etcd, owns cells or stands by (no IO of its own
beyond etcd; what owning a cell means is the caller's, through :class:`Role`).

Theory of operation (decision records 0013 and 0032). A *cell* is a set of topics,
groups and door state, journaled in the object store by one engine (decision 0011). A
cluster has one cell, the home cell ``_cell`` (decision 0013), or several (``_cell``,
``_cell.1``, ...; decision 0032), each owned by exactly one agent at a time: the agent
holding ``owners/<cell>`` in etcd, bound to its lease. Each cell goes through the steps
below on its own (an agent may own several); the agent runs an asyncio loop on a thread
of its own:

1. join: a lease and ``agents/<id>`` (its doors' addresses), kept alive every TTL / 3;
2. watch ``owners/<cell>``. While another agent owns it, stand by (the Flight door
   answers NotOwner naming the owner). When nobody does, acquire it (one transaction:
   exactly one of the racing standbys wins; the key's revision is the epoch). With
   several cells the agent holding fewest cells goes first (``_my_turn``), and
   an agent owning two cells more than another hands one over to it (``_rebalance``);
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
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

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
    cancel_and_wait,
)
from odradek.cluster.etcd_client import EtcdSecurity
from odradek.cluster.keys import (
    HOME_CELL,
    AgentRecord,
    OwnerRecord,
    PlacementEvent,
    PlacementRecord,
    cell_names,
)
from odradek.cluster.placement import PlacementView
from odradek.errors import InvalidRequest, NotOwner, OdradekError
from odradek.security.agents import AgentCredentials

log = logging.getLogger(__name__)
T = TypeVar("T")

CELL = HOME_CELL  # the owner key of the home cell, a cluster's only one by default (decision 0013)
OWNER = "owner"
STANDBY = "standby"
JOINING = "joining"
STOPPED = "stopped"
_RETRY_FIRST_SECONDS = 0.2  # after a failed join or takeover, doubled up to:
_RETRY_MAX_SECONDS = 2.0
_TURN_SECONDS = 0.2  # an agent waits this long per cell it has before acquiring a free one
_REBALANCE_SECONDS = 2.0  # how often an agent compares its cells with the others'
_CANCEL_WAIT_SECONDS = 2.0  # how long an agent waits for its cancelled watches to end


class Role(Protocol):
    """What becoming and ceasing to be a cell's owner does (cluster/serving.py)."""

    def become_owner(self, epoch: int, cell: str = CELL) -> None:
        """Open ``cell``'s data and serve it (blocking; on a worker thread). Raises if
        it cannot: the agent gives the cell up and tries again later."""

    def stop_owning(self, graceful: bool, cell: str = CELL) -> None:
        """Stop serving ``cell`` and close its data (blocking). ``graceful``: a
        handover, let what is in flight finish; else the lease is lost, stop at once."""

    def topics(self, cell: str) -> list[str]:
        """The topics of ``cell``, which this agent serves (blocking)."""

    def take_back(self, cell: str, keep: Callable[[str], bool]) -> list[str]:
        """Adopt again the topics ``cell`` released that no cell adopted and for which
        ``keep(topic)`` (a move cut short: the topic is still placed here); the topics
        taken back (blocking)."""


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
    # How many cells the cluster's topics are spread over (decision 0032): 1, the home
    # cell alone (decision 0013), up to limits.cluster_cells_max. Every agent of a
    # cluster must be given the same count.
    cells: int = 1

    def __post_init__(self) -> None:
        cell_names(self.cells)  # InvalidRequest when out of range


@dataclasses.dataclass
class Counters:
    """What the agent did, for metrics and tests."""

    joins: int = 0
    takeovers: int = 0  # times it became the owner
    losses: int = 0  # times it stopped owning because its lease or key was lost
    handovers: int = 0  # times it gave ownership up on request
    last_takeover_seconds: float = 0.0  # from acquiring the key to serving


@dataclasses.dataclass
class _Cell:
    """One cell as this agent sees it (touched on the agent's loop; read under its lock)."""

    name: str
    owner: OwnerRecord | None = None  # who owns it, as last seen (this agent while it serves it)
    serving: bool = False  # this agent serves it: its data are open
    opening: bool = False  # this agent acquired it and opens its data (or waits its turn to)
    epoch: int = 0  # this agent's epoch of it while serving
    handover: asyncio.Event | None = None  # set: hand it over (to ``handover_to``)
    handover_to: str | None = None


class ClusterAgent:
    """One agent of a cluster (see the module docstring)."""

    def __init__(self, settings: AgentSettings, role: Role) -> None:
        self.settings = settings
        self.role_hooks = role
        self.counters = Counters()
        self.cells = cell_names(settings.cells)
        self._cells = {name: _Cell(name) for name in self.cells}
        self._role = JOINING  # JOINING, STANDBY (a member: it owns what its cells say), STOPPED
        self._agents: dict[str, AgentRecord] = {}
        # What it sends other agents when it calls on its own behalf (decision 0040).
        self.credentials = AgentCredentials(settings.agent_id)
        self._cluster: EtcdCluster | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._future: Future[None] | None = None
        self._stopping = False
        self._joined = threading.Event()
        self._start_error: BaseException | None = None
        self._member_since = 0.0  # monotonic time of the last join
        # Which cell holds each topic (decision 0032): none with the home cell alone.
        self.placement = PlacementView(settings.cells) if settings.cells > 1 else None

    def token_hash_of(self, agent_id: str) -> str | None:
        """The credentials hash live agent ``agent_id`` publishes (security/agents.py),
        as this agent's view of the agent records holds it; None when none."""
        with self._lock:
            record = self._agents.get(agent_id)
        return record.token_hash or None if record is not None else None

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
        """Hand every cell it owns over and leave the cluster; wait for it."""
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

    def _held(self) -> bool:
        """Whether the lease's safe window is open now (by the local clock)."""
        with self._lock:
            cluster = self._cluster
        clock = cluster.clock if cluster is not None else None
        return clock is not None and clock.held(time.monotonic())

    def is_owner(self, cell: str = CELL) -> bool:
        """Whether this agent serves ``cell`` (the home cell by default) now."""
        with self._lock:
            state = self._cells.get(cell)
            serving = state is not None and state.serving and self._role == STANDBY
        return serving and self._held()

    def epoch_of(self, cell: str) -> int | None:
        """The epoch at which this agent acquired ``cell`` in etcd, while it holds it (set
        before its data are opened, so the doors opening them can be fenced by it)."""
        with self._lock:
            cluster = self._cluster
        return None if cluster is None else cluster.epoch_of(cell)

    def owned_cells(self) -> list[str]:
        """The cells this agent serves now, in cell order."""
        with self._lock:
            serving = (
                [name for name in self.cells if self._cells[name].serving] if self._role == STANDBY else []
            )
        return serving if serving and self._held() else []

    def _reported_role(self) -> str:
        """The role ``status`` and ``wait_for_role`` speak of: the agent's membership
        (joining, stopped), or the home cell's role of a member: its owner or a standby."""
        with self._lock:
            role = self._role
            home = self._cells[CELL].serving
        return OWNER if role == STANDBY and home else role

    def readiness(self) -> tuple[bool, str]:
        """Whether this agent can take clients now (``/readyz``), and why: it joined the
        cluster and its lease holds, whether it owns cells (it serves) or not (it leads
        clients to their owners). Joining, a lost lease or a stopped agent: not ready."""
        role = self._reported_role()
        if role not in (OWNER, STANDBY):
            return False, f"agent {self.settings.agent_id} is {role}"
        if not self._held():
            return False, f"agent {self.settings.agent_id} has no live lease in etcd (joining again)"
        return True, f"agent {self.settings.agent_id} is the {role} of cluster {self.settings.cluster}"

    def _url(self, address: str) -> str:
        """The URL of an agent's Flight door at ``address`` (HOST:PORT)."""
        return f"{self.settings.scheme}://{address}"

    def owner_door(self, door: str, cell: str = CELL) -> tuple[str, int] | None:
        """Where another agent that owns ``cell`` listens with ``door`` (a name of
        keys.DOORS: ``kafka``, ...), as its agent record says; None while no other agent
        is known to own it, or it has no such door."""
        return self._door_of_owner(door, cell, others_only=True)

    def cell_door(self, door: str, cell: str) -> tuple[str, int] | None:
        """Where the agent owning ``cell`` (this one too) listens with ``door``, as its
        agent record says; None while no owner is known, or it has no such door."""
        return self._door_of_owner(door, cell, others_only=False)

    def _door_of_owner(self, door: str, cell: str, others_only: bool) -> tuple[str, int] | None:
        with self._lock:
            state = self._cells.get(cell)
            owner = state.owner if state is not None else None
            record = self._agents.get(owner.agent_id) if owner is not None else None
        if owner is None or record is None or (others_only and owner.agent_id == self.settings.agent_id):
            return None
        address = record.doors.get(door)
        if not address:
            return None
        host, _, port = address.rpartition(":")
        return host.strip("[]"), int(port)

    def check_owner(self, cell: str = CELL) -> None:
        if not self.is_owner(cell):
            raise self.not_owner(cell)

    def not_owner(self, cell: str = CELL) -> OdradekError:
        """The refusal of a call for ``cell``'s data by an agent that does not serve it,
        naming the agent that does (where clients follow it), if one is known."""
        what = "the data" if len(self.cells) == 1 else f"cell {cell}"
        with self._lock:
            state = self._cells.get(cell)
            owner = state.owner if state is not None else None
            serving = state is not None and state.serving
            agents = dict(self._agents)
        if serving:  # the lease's safe window closed: the agent is giving up
            return NotOwner(f"agent {self.settings.agent_id!r} is giving ownership up; retry")
        if owner is None or owner.agent_id == self.settings.agent_id:
            return NotOwner(
                f"no agent of cluster {self.settings.cluster!r} owns {what} right now "
                "(a failover is in progress); retry shortly"
            )
        record = agents.get(owner.agent_id)
        url = self._url(record.address) if record is not None else None
        return NotOwner(
            f"agent {self.settings.agent_id!r} does not serve {what}; agent {owner.agent_id!r} owns it"
            + (f" at {url}" if url else ""),
            url,
            owner.agent_id,
        )

    def status(self) -> dict[str, Any]:
        role = self._reported_role()
        held = self._held()
        with self._lock:
            agents = sorted(self._agents.values(), key=lambda record: record.agent_id)
            cells = [dataclasses.replace(self._cells[name], handover=None) for name in self.cells]
        urls = {record.agent_id: self._url(record.address) for record in agents}

        def owner_of(cell: _Cell) -> tuple[str | None, str | None, int]:
            owner = cell.owner
            if owner is None:
                return None, None, 0
            return owner.agent_id, urls.get(owner.agent_id), cell.epoch if cell.serving else owner.epoch

        home_owner, home_url, home_epoch = owner_of(cells[0])
        status: dict[str, Any] = {
            "cluster": self.settings.cluster,
            "agent": self.settings.agent_id,
            "role": OWNER if role == OWNER and held else (STANDBY if role == OWNER else role),
            "owner": home_owner,
            "owner_url": home_url,
            "epoch": home_epoch,
            "agents": [
                {"agent": a.agent_id, "url": self._url(a.address), "doors": dict(a.doors), "lease": a.lease}
                for a in agents
            ],
            "counters": dataclasses.asdict(self.counters),
        }
        if len(cells) > 1:
            status["cells"] = [
                dict(zip(("cell", "owner", "owner_url", "epoch"), (cell.name, *owner_of(cell)), strict=True))
                | {"serving": cell.serving and held}
                for cell in cells
            ]
        return status

    def hand_over(self, to: str | None = None, cell: str | None = None) -> dict[str, Any]:
        """Hand ``cell`` (None: every cell this agent serves) over to agent ``to`` (None:
        another live agent), as SIGTERM does but staying in the cluster. Returns at once;
        a handover takes about a checkpoint and an attach."""
        if cell is not None and cell not in self._cells:
            raise InvalidRequest(f"no cell {cell!r} in this cluster: one of {list(self.cells)}")
        with self._lock:
            agents = sorted(self._agents)
            serving = [name for name in self.cells if self._cells[name].serving]
        cells = serving if cell is None else [cell] if cell in serving else []
        if not cells:
            raise self.not_owner(cell or CELL)
        others = [agent for agent in agents if agent != self.settings.agent_id]
        target = to if to is not None else (others[0] if others else None)
        if target is None:
            raise InvalidRequest("no other agent to hand the data over to: start one first")
        if target not in others:
            raise InvalidRequest(f"agent {target!r} is not a live agent of the cluster; live: {others}")
        loop = self._loop
        if loop is None:
            raise self.not_owner(cells[0])
        for name in cells:
            self._ask_handover(loop, self._cells[name], target)
        answer: dict[str, Any] = {"from": self.settings.agent_id, "to": target}
        if len(self.cells) > 1:
            answer["cells"] = cells
        return answer

    def _ask_handover(self, loop: asyncio.AbstractEventLoop, cell: _Cell, target: str) -> None:
        event = cell.handover
        if event is None:
            raise self.not_owner(cell.name)
        cell.handover_to = target
        loop.call_soon_threadsafe(event.set)

    # -- topics and their cells (decision 0032) -----------------------------------------------

    def cell_count(self) -> int:
        return len(self.cells)

    def cell_of(self, topic: str) -> str:
        """The cell holding ``topic``: the placement this agent's view holds, else the
        one etcd holds (a placement another agent just wrote, not yet watched here);
        the home cell for a topic placed nowhere (whose errors come from there)."""
        return self._cell_of(topic, place=False)

    def place(self, topic: str) -> str:
        """The cell holding ``topic``, placing it in the least loaded cell when it is
        placed nowhere (the first placement wins a race between agents)."""
        return self._cell_of(topic, place=True)

    def _cell_of(self, topic: str, place: bool) -> str:
        view = self.placement
        if view is None:
            return CELL
        cell = view.cell_of(topic)
        if cell is not None:
            return cell
        if place:
            return self._etcd(lambda cluster: view.place(cluster, topic), f"the placement of topic {topic!r}")
        record = self._etcd(lambda cluster: cluster.placement(topic), f"the cell of topic {topic!r}")
        if record is None:
            return CELL
        view.apply(PlacementEvent.of(record), local=True)
        return record.cell

    def placement_of(self, topic: str) -> PlacementRecord | None:
        """``topic``'s placement as etcd has it now (None: placed nowhere), which the
        view learns of."""
        view = self.placement
        record = self._etcd(lambda cluster: cluster.placement(topic), f"the cell of topic {topic!r}")
        if record is not None and view is not None:
            view.apply(PlacementEvent.of(record), local=True)
        return record

    def etcd_call(self, request: Callable[[EtcdCluster], Awaitable[T]], what: str) -> T:
        """``request`` on this agent's etcd client, from a thread other than its loop
        (the doors' request threads): its answer, or EtcdUnavailable."""
        return self._etcd(request, what)

    def follow_keys(
        self,
        prefix_of: Callable[[EtcdCluster], bytes],
        notify: Callable[[tuple[bytes, bytes | None, int] | None], None],
        what: str,
    ) -> Callable[[], None]:
        """Call ``notify`` with each change under the prefix (key, value or None when
        deleted, revision), and with None first and whenever changes may have been
        missed, until the function returned is called. ``notify`` runs on the agent's
        loop and must not block. The watch outlives etcd members failing and the agent
        joining again."""
        loop = self._loop
        if loop is None:
            raise InvalidRequest("the agent is not running")

        async def follow() -> None:
            while True:
                with self._lock:
                    cluster = self._cluster
                if cluster is not None:
                    try:
                        async for change in cluster.watch_changes(prefix_of(cluster)):
                            notify(change)
                            if self._cluster is not cluster:
                                break  # joined again: watch through the new client
                    except Exception as exc:  # noqa: BLE001 - a watch is started again, whatever stopped it
                        log.info("the watch of %s stopped (%s); watching again", what, exc)
                await asyncio.sleep(_FOLLOW_RETRY_SECONDS)

        future = asyncio.run_coroutine_threadsafe(follow(), loop)

        def stop() -> None:
            future.cancel()  # thread-safe: the task is cancelled on the agent's loop

        return stop

    def claim(self, topic: str, cell: str) -> bool:
        """Place ``topic`` in ``cell`` unless it is placed already: whether it is
        ``cell``'s now (False: another cell holds it). A door creating a topic in the
        cell it serves claims it first."""
        view = self.placement
        if view is None:
            return cell == CELL  # one cell: every topic is the home cell's
        placed = self._etcd(
            lambda cluster: view.place(cluster, topic, [cell]), f"the placement of topic {topic!r}"
        )
        return placed == cell

    def forget(self, topic: str, cell: str) -> None:
        """Drop ``topic``'s placement if it still names ``cell`` (it was deleted there)."""
        view = self.placement
        if view is not None:
            self._etcd(lambda cluster: view.delete(cluster, topic, cell), f"the placement of topic {topic!r}")

    def topics(self) -> list[str]:
        """Every topic placed in the cluster's cells, as this agent's view holds them."""
        view = self.placement
        return sorted(record.topic for record in view.records()) if view is not None else []

    def move_target(self, cell: str, to: str | None, target: str | None) -> tuple[str, str, str | None]:
        """Where a topic of ``cell`` moves (``odradek topic move``): cell ``target``, or
        the least loaded of the cells agent ``to`` serves; (the cell, its owner, the
        owner's URL). InvalidRequest when that is no other cell with an owner."""
        if target is None and to is None:
            raise InvalidRequest("say where the topic moves: an agent (to) or a cell")
        view = self.placement
        with self._lock:
            owners = {name: state.owner for name, state in self._cells.items()}
            agents = dict(self._agents)
        if target is not None:
            if target not in owners:
                raise InvalidRequest(f"no cell {target!r} in this cluster: one of {list(self.cells)}")
            chosen = target
        else:
            served = [name for name, owner in owners.items() if owner is not None and owner.agent_id == to]
            if not served:
                live = sorted(agents)
                raise InvalidRequest(
                    f"agent {to!r} serves no cell of cluster {self.settings.cluster!r}; live: {live}"
                )
            if cell in served:
                raise InvalidRequest(f"agent {to!r} serves the topic's cell {cell} already")
            chosen = view.least_loaded(served) if view is not None else served[0]
        if chosen == cell:
            raise InvalidRequest(f"the topic is in cell {cell} already")
        owner = owners[chosen]
        if owner is None:
            raise NotOwner(
                f"no agent serves cell {chosen} right now (a failover is in progress); retry shortly"
            )
        record = agents.get(owner.agent_id)
        return chosen, owner.agent_id, self._url(record.address) if record is not None else None

    def moved(self, topic: str, from_cell: str, to_cell: str) -> None:
        """Place ``topic`` in ``to_cell``, where it was just adopted from ``from_cell``."""
        view = self.placement
        if view is None:
            raise InvalidRequest("a cluster of one cell moves no topic")
        if not self._etcd(
            lambda cluster: view.move(cluster, topic, from_cell, to_cell), f"the move of {topic!r}"
        ):
            raise OdradekError(
                f"topic {topic!r} was adopted by cell {to_cell} but its placement no longer names "
                f"cell {from_cell}: placed where etcd says"
            )

    def _etcd(self, request: Callable[[EtcdCluster], Awaitable[T]], what: str) -> T:
        """``request`` on this agent's etcd client, from a thread other than its loop."""
        with self._lock:
            cluster = self._cluster
        loop = self._loop
        if cluster is None or loop is None:
            raise EtcdUnavailable(
                f"agent {self.settings.agent_id} is joining its cluster: {what} is unknown; retry"
            )
        future = asyncio.run_coroutine_threadsafe(_awaited(request(cluster)), loop)
        try:
            return future.result(limits.cluster_retry_seconds_max + limits.cluster_request_timeout_seconds)
        except TimeoutError as exc:
            future.cancel()
            raise EtcdUnavailable(f"etcd did not answer in time for {what}; retry") from exc

    def wait_for_role(self, role: str, timeout: float) -> bool:
        """Wait until the agent has ``role`` (tests, the bench)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._reported_role() == role:
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
            self._set_role(STOPPED)
            self._joined.set()

    async def _main(self) -> None:
        self._stop_requested = asyncio.Event()
        for cell in self._cells.values():
            cell.handover = asyncio.Event()
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
                    # it is no member any more (its cells are given up), so it joins
                    # again rather than ending the process.
                    log.error(
                        "agent %s left cluster %r on an error and joins again: %s",
                        self.settings.agent_id,
                        self.settings.cluster,
                        exc,
                        exc_info=True,
                    )
                    await self._give_up_cells()
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
            cells=self.settings.cells,
            token_hash=self.credentials.token_hash,
        )
        others = [agent for agent in await cluster.agents() if agent.cells != self.settings.cells]
        if others:
            with contextlib.suppress(OdradekError):
                await cluster.leave()
            raise InvalidRequest(
                f"agent {self.settings.agent_id} was started with {self.settings.cells} cell(s), but "
                f"agent {others[0].agent_id} of cluster {self.settings.cluster!r} runs with "
                f"{others[0].cells}: every agent of a cluster needs the same --cells (stop them all to "
                "change it)"
            )
        with self._lock:
            self._cluster = cluster
            self._agents[record.agent_id] = record
        self.counters.joins += 1
        self._member_since = time.monotonic()
        self._set_role(STANDBY)
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
        """Stand by for and own cells until the lease is lost (return: join again) or a
        stop (every cell handed over, then the agent leaves)."""
        assert self._stop_requested is not None
        helpers = [asyncio.create_task(self._follow_agents(cluster), name="odradek-agents-watch")]
        if self.placement is not None:
            helpers.append(asyncio.create_task(self._rebalance(), name="odradek-cells-rebalance"))
            helpers.append(
                asyncio.create_task(self.placement.follow(cluster), name="odradek-placements-watch")
            )
        cells = [
            asyncio.create_task(self._cell(cluster, self._cells[name]), name=f"odradek-cell-{name}")
            for name in self.cells
        ]
        try:
            await asyncio.gather(*cells)
        finally:
            await cancel_and_wait([*cells, *helpers], _CANCEL_WAIT_SECONDS)
        if self._stop_requested.is_set():
            await self._leave(cluster)

    async def _cell(self, cluster: EtcdCluster, cell: _Cell) -> None:
        """Stand by for or own one cell until the lease is lost or a stop."""
        owners: asyncio.Queue[OwnerRecord | object | None] = asyncio.Queue()
        watch = asyncio.create_task(self._pump_owner(cluster, cell.name, owners), name="odradek-owner-watch")
        try:
            while True:
                owner = await self._next(owners, cluster, cell)
                if owner is _STOP or owner is _LOST:
                    return
                if owner is _HANDOVER:  # asked as the owner, arrived as a standby: nothing to do
                    continue
                if owner is _LOOK:
                    with self._lock:
                        if cell.owner is not None:  # the watch told of an owner since: keep it
                            continue
                    owner = None
                assert owner is None or isinstance(owner, OwnerRecord)
                self._set_owner(cell, owner)
                if owner is not None:
                    continue
                try:
                    target = await cluster.handover_target(cell.name)
                except EtcdUnavailable:
                    target = None
                with self._lock:
                    target_live = target in self._agents
                if target is not None and target != self.settings.agent_id and target_live:
                    # The cell is being handed over to another agent: leave it the key,
                    # and look again shortly (the handover key goes by itself).
                    asyncio.get_running_loop().call_later(_HANDOVER_LOOK_SECONDS, owners.put_nowait, _LOOK)
                    continue
                if target != self.settings.agent_id and not await self._my_turn(cell, owners):
                    continue
                try:
                    ownership = await cluster.acquire(cell.name)
                except OwnedByAnother as exc:
                    cell.opening = False
                    self._set_owner(cell, exc.owner)
                    continue
                except OwnershipLost:
                    cell.opening = False
                    return
                except EtcdUnavailable as exc:
                    cell.opening = False
                    log.warning("cannot acquire cell %s yet: %s", cell.name, exc.message)
                    await self._pause(_RETRY_MAX_SECONDS)
                    owners.put_nowait(_LOOK)
                    continue
                if not await self._own(cluster, ownership, owners, cell):
                    return
        finally:
            await cancel_and_wait([watch], _CANCEL_WAIT_SECONDS)

    async def _my_turn(self, cell: _Cell, owners: asyncio.Queue[OwnerRecord | object | None]) -> bool:
        """Whether this agent should try to acquire ``cell``, free now, after waiting its
        turn: at once in a cluster of one cell; else a moment for each cell it holds, so
        that the agents holding fewest cells win the race (rebalancing evens out the
        rest). The wait never depends on which agents this one believes alive: after a
        death the agents' record and its owner keys go at once, but their watches may
        tell of them in either order. False: the cell got an owner meanwhile (the event
        is queued again) or the agent stops."""
        if len(self.cells) == 1:
            return True
        with self._lock:
            held = sum(1 for other in self._cells.values() if other.serving or other.opening)
        wait = held * _TURN_SECONDS
        cell.opening = True
        if wait <= 0:
            return True
        assert self._stop_requested is not None
        getting = asyncio.ensure_future(owners.get())
        stopping = asyncio.ensure_future(self._stop_requested.wait())
        try:
            done, _ = await asyncio.wait(
                {getting, stopping}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in (getting, stopping):
                if not waiter.done():
                    waiter.cancel()
        if not done:
            return True
        cell.opening = False
        if getting in done:
            owners.put_nowait(getting.result())  # see what happened, as the next event
        else:
            owners.put_nowait(_LOOK)  # the stop is seen by _next
        return False

    async def _next(
        self, owners: asyncio.Queue[OwnerRecord | object | None], cluster: EtcdCluster, cell: _Cell
    ) -> object:
        """The next owner event of ``cell``, or _STOP / _LOST / _HANDOVER; the latest one
        when several queued."""
        assert self._stop_requested is not None
        assert cell.handover is not None
        getting = asyncio.ensure_future(owners.get())
        stopping = asyncio.ensure_future(self._stop_requested.wait())
        losing = asyncio.ensure_future(cluster.lease_lost.wait())
        handing = asyncio.ensure_future(cell.handover.wait())
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
            cell.handover.clear()
            return _HANDOVER
        owner = getting.result()
        while not owners.empty():  # the latest event; a look tick only if nothing else came
            queued = owners.get_nowait()
            if queued is not _LOOK or owner is _LOOK:
                owner = queued
        return owner

    async def _own(
        self,
        cluster: EtcdCluster,
        ownership: Ownership,
        owners: asyncio.Queue[OwnerRecord | object | None],
        cell: _Cell,
    ) -> bool:
        """Serve ``cell`` as its owner; True to stand by for it again on the same lease,
        False when the lease was lost or the agent stops."""
        assert self._stop_requested is not None
        started = time.monotonic()
        agent = self.settings.agent_id
        log.info("agent %s owns cell %s at epoch %d: opening its data", agent, cell.name, ownership.epoch)
        cell.opening = True
        try:
            await asyncio.to_thread(self.role_hooks.become_owner, ownership.epoch, cell.name)
        except Exception as exc:  # noqa: BLE001 - give the cell up for another agent to try
            cell.opening = False
            log.error("agent %s could not open cell %s: %s; giving it up", agent, cell.name, exc)
            with contextlib.suppress(OdradekError):
                await cluster.release(cell.name)
            await self._pause(_RETRY_MAX_SECONDS)
            return True
        if self.placement is not None:
            await self._register(cluster, cell)
        if not cluster.holds(cell.name, ownership.epoch):
            cell.opening = False
            log.warning("agent %s lost its lease while opening cell %s", agent, cell.name)
            await asyncio.to_thread(self.role_hooks.stop_owning, False, cell.name)
            self.counters.losses += 1
            return False
        with self._lock:
            cell.epoch = ownership.epoch
            cell.owner = OwnerRecord(cell.name, agent, cluster.clock.lease if cluster.clock else 0)
            cell.serving = True
            cell.opening = False
        self.counters.takeovers += 1
        self.counters.last_takeover_seconds = time.monotonic() - started
        log.info(
            "agent %s serves cell %s as its owner (epoch %d) after %.2f s",
            agent,
            cell.name,
            ownership.epoch,
            self.counters.last_takeover_seconds,
        )
        while True:
            event = await self._next(owners, cluster, cell)
            if event is _HANDOVER:
                target = cell.handover_to
                log.info("agent %s hands cell %s over to %s", agent, cell.name, target)
                try:
                    if target is not None:
                        await cluster.hand_over(cell.name, target, limits.cluster_handover_seconds)
                except OdradekError as exc:
                    log.warning("could not name %s in etcd (%s); handing over to any agent", target, exc)
                await self._hand_over(cluster, cell)
                return True
            if event is _STOP:
                log.info("agent %s hands cell %s over", agent, cell.name)
                await self._hand_over(cluster, cell)
                return False
            if (
                event is _LOST
                or (isinstance(event, OwnerRecord) and event.epoch != ownership.epoch)
                or event is None
            ):
                self._set_owner(cell, event if isinstance(event, OwnerRecord) else None, serving=False)
                log.warning(
                    "agent %s stopped owning cell %s (epoch %d): %s",
                    agent,
                    cell.name,
                    ownership.epoch,
                    "its lease was lost" if event is _LOST else "the owner key changed",
                )
                await asyncio.to_thread(self.role_hooks.stop_owning, False, cell.name)
                self.counters.losses += 1
                if event is not _LOST:
                    with contextlib.suppress(OdradekError):
                        await cluster.leave()  # never act on this lease again: join afresh
                return False

    async def _register(self, cluster: EtcdCluster, cell: _Cell) -> None:
        """Place the topics of a cell just opened that are placed nowhere (the home
        cell's topics from before it had others; a topic whose placement a crash lost)
        in that cell. A topic placed elsewhere keeps its placement."""
        try:
            topics = await asyncio.to_thread(self.role_hooks.topics, cell.name)
            added = await cluster.place_topics(PlacementRecord(topic, cell.name) for topic in topics)
        except OdradekError as exc:
            log.warning("could not place the topics of cell %s in etcd: %s", cell.name, exc)
            return
        if added:
            log.info("placed %d topics of cell %s in etcd", added, cell.name)
        view = self.placement
        assert view is not None

        def placed_here(topic: str) -> bool:
            view.wait_listed(limits.cluster_request_timeout_seconds)
            return view.cell_of(topic) == cell.name

        try:
            taken = await asyncio.to_thread(self.role_hooks.take_back, cell.name, placed_here)
        except OdradekError as exc:
            log.warning("could not take back the topics cell %s released: %s", cell.name, exc)
            return
        if taken:
            log.warning(
                "cell %s took back %d topics whose move was cut short: %s", cell.name, len(taken), taken
            )

    async def _give_up_cells(self) -> None:
        """Stop serving every cell this agent served or was opening, and stand by no
        more (joining)."""
        with self._lock:
            held = [cell for cell in self._cells.values() if cell.serving or cell.opening]
            self._role = JOINING
            for cell in self._cells.values():
                cell.serving = cell.opening = False
                cell.owner = None
        for cell in held:
            await asyncio.to_thread(self.role_hooks.stop_owning, False, cell.name)
            self.counters.losses += 1

    async def _hand_over(self, cluster: EtcdCluster, cell: _Cell) -> None:
        """Stop serving ``cell``, let its data close (its journal commits, a checkpoint),
        then release its owner key for another agent to take at once."""
        self._set_owner(cell, None, serving=False)
        await asyncio.to_thread(self.role_hooks.stop_owning, True, cell.name)
        self.counters.handovers += 1
        with contextlib.suppress(OdradekError):
            await cluster.release(cell.name)

    async def _rebalance(self) -> None:
        """Every few seconds, while every cell has a live owner: if this agent owns at
        least two cells more than the agent with fewest (one joined, or came back),
        hand one over to that agent. One cell at a time; the one given up is the last
        by name (the home cell moves last)."""
        while True:
            await asyncio.sleep(_REBALANCE_SECONDS)
            if time.monotonic() - self._member_since < _REBALANCE_SECONDS:
                continue
            with self._lock:
                agents = set(self._agents)
                cells = list(self._cells.values())
            owners = [cell.owner.agent_id if cell.owner is not None else None for cell in cells]
            if any(owner is None or owner not in agents for owner in owners):
                continue  # a failover or a handover in progress: not now
            counts = dict.fromkeys(sorted(agents), 0)
            for owner in owners:
                assert owner is not None
                counts[owner] += 1
            me = self.settings.agent_id
            fewest = min(counts, key=lambda agent: (counts[agent], agent))
            if counts.get(me, 0) - counts[fewest] < 2:
                continue
            mine = [cell for cell in cells if cell.serving]
            if not mine or self._loop is None:
                continue
            cell = mine[-1]
            log.info(
                "agent %s owns %d cells, agent %s %d: handing cell %s over",
                me,
                counts[me],
                fewest,
                counts[fewest],
                cell.name,
            )
            self._ask_handover(self._loop, cell, fewest)
            await asyncio.sleep(float(self.settings.lease_ttl))  # let it land before looking again

    async def _leave(self, cluster: EtcdCluster) -> None:
        with contextlib.suppress(OdradekError):
            await cluster.leave()
        log.info("agent %s left cluster %r", self.settings.agent_id, self.settings.cluster)

    async def _pump_owner(
        self, cluster: EtcdCluster, cell: str, owners: asyncio.Queue[OwnerRecord | object | None]
    ) -> None:
        # Whatever breaks a watch (a member killed mid-stream may surface as any gRPC
        # error), it is started again: reading the key first, nothing is missed.
        while True:
            try:
                async for owner in cluster.watch_owner(cell):
                    owners.put_nowait(owner)
            except Exception as exc:  # noqa: BLE001 - see above
                log.warning("watching the owner of cell %s failed (%r); watching again", cell, exc)
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

    def _set_role(self, role: str) -> None:
        with self._lock:
            self._role = role
            if role != STANDBY:
                for cell in self._cells.values():
                    cell.owner = None

    def _set_owner(self, cell: _Cell, owner: OwnerRecord | None, *, serving: bool | None = None) -> None:
        with self._lock:
            cell.owner = owner
            if serving is not None:
                cell.serving = serving


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


_FOLLOW_RETRY_SECONDS = 0.2  # a watch that stopped (no client yet, a client closed) starts again
_STOP = object()
_LOST = object()
_HANDOVER = object()
# Not an owner event: "look at the cell again" (after a pause: a handover to another
# agent in progress, etcd out of reach). An owner the watch told of meanwhile stands: a
# first version read it as "no owner" and, for the ten seconds a handover's key lives,
# made the former owner name no owner every half second (NotOwner without the agent to
# follow, a Kafka broker and a registry door missing from its view).
_LOOK = object()
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
