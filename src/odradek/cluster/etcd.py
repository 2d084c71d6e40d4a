"""What a cluster agent asks of etcd: membership, topic ownership, the catalog, and
which cell holds each topic (the placements).

One ``EtcdCluster`` per agent process, on its asyncio loop, over ``aetcd``. Rules:

* **Membership.** ``join(agent_id, address, ttl)`` grants a lease, writes
  ``agents/<id>`` bound to it and keeps the lease alive in a task (a renewal every
  TTL / 3). ``agents()`` lists the live agents, ``watch_agents()`` follows joins and
  departures. ``leave()`` revokes the lease: etcd deletes every key bound to it, the
  agent's owner keys included, in one revision.
* **Ownership.** ``acquire(topic)`` is one transaction: if ``owners/<topic>`` does not
  exist, create it bound to this agent's lease. The revision of that put is the
  owner's *epoch*: strictly greater than any earlier owner's, whatever the topic.
  ``release(topic)`` deletes the key if it still carries this epoch.
  ``commit_allowed(topic, epoch)`` is the transaction that compares the key's
  ``mod_revision`` with the epoch: true exactly when, at etcd's linearization point,
  this owner still holds the topic.
* **Placements.** ``catalog/cells/<topic>`` names the cell holding the topic (no
  lease). ``place_topic`` creates it if absent (the first placement wins a race),
  ``place_topics`` does so for many in transactions of ``cluster_txn_ops_max`` keys,
  ``move_placement`` and ``delete_placement`` compare the value with the cell the
  caller believes it names; ``watch_placements`` feeds every agent's view of them
  (cluster/placement.py).
* **Fence yourself first.** The lease's safe window is kept on the local monotonic
  clock (cluster/lease.py). Once it closes (renewals failed for TTL minus the margin,
  or etcd says the lease is gone), every owned topic is marked lost *at once*, locally,
  before etcd can expire the lease and another agent acquire a topic, and the agent
  acts as an owner no more: ``holds`` answers False, ``acquire`` refuses, listeners
  registered with ``on_lost`` are called. The agent must ``join`` again (a new lease).
* **Members come and go.** The client is given every member's URL; a request that
  fails for want of a member (refused, timed out, no leader during an election) is
  retried on the next member until ``cluster_retry_seconds_max``, then raised as
  ``EtcdUnavailable``. Every request is written to be safe to repeat after an unknown
  outcome: an acquire that did land is recognized as this agent's own on the retry.

The key layout and the encodings are pure functions in cluster/keys.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import aetcd
import aetcd.exceptions
import aetcd.rpc
import aetcd.rtypes
import grpc
import grpc.aio

from odradek import limits
from odradek.cluster.etcd_client import EtcdClient, EtcdSecurity
from odradek.cluster.keys import (
    AgentRecord,
    Layout,
    OwnerRecord,
    PlacementEvent,
    PlacementRecord,
    ShapeRecord,
    TopicRecord,
    prefix_end,
    validate_agent_id,
)
from odradek.cluster.lease import LeaseClock
from odradek.errors import ClosedError, Fenced, InvalidRequest, RequestTooLarge, TopicExists, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
V = TypeVar("V")

# Errors after which the same request may succeed on another member or a moment later.
_RETRYABLE: tuple[type[BaseException], ...] = (
    aetcd.exceptions.ConnectionFailedError,
    aetcd.exceptions.ConnectionTimeoutError,
    aetcd.exceptions.InternalError,
    TimeoutError,
    OSError,
)
_RETRYABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _lease_not_found(exc: BaseException) -> bool:
    """etcd's answer for a lease that expired or was revoked already."""
    return "requested lease not found" in str(exc)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, grpc.aio.AioRpcError):  # a request made on the stub itself
        return exc.code() in _RETRYABLE_CODES
    return isinstance(exc, _RETRYABLE)


# Timeouts use asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for may swallow a
# cancellation that arrives as the awaited call completes, and a keepalive task that
# swallowed its cancellation would never stop.
async def _cancel_watch(watch: Any, seconds: float) -> None:
    """Cancel a watch, waiting at most ``seconds`` (its member may be gone: the cancel
    request would wait for a channel that never answers)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(seconds):
            await watch.cancel()


async def cancel_and_wait(tasks: list[asyncio.Task[Any]], seconds: float) -> None:
    """Cancel ``tasks`` and wait for them to end, for at most ``seconds``: one stuck in a
    call to a member that died (a watch's cancel, a channel's close) is left to end by
    itself, so that an agent never waits with it (it would never join again)."""
    for task in tasks:
        task.cancel()
    pending = {task for task in tasks if not task.done()}
    if pending:
        _, pending = await asyncio.wait(pending, timeout=seconds)
    for task in tasks:
        if task.done() and not task.cancelled():
            with contextlib.suppress(BaseException):
                task.exception()  # retrieved: its error was logged where it happened
    if pending:
        names = ", ".join(sorted(task.get_name() for task in pending))
        log.warning("tasks %s did not end within %g s of their cancellation; going on", names, seconds)


_LEFT = "the agent left"
_BACKOFF_FIRST_SECONDS = 0.05  # the first retry after a failed request, doubled up to:
_BACKOFF_MAX_SECONDS = 0.5  # an election takes ~1 s: look again twice within it


class EtcdUnavailable(Unavailable):
    """No etcd member answered within ``cluster_retry_seconds_max`` (retryable)."""


class OwnershipLost(Fenced):
    """This agent does not (or no longer) own the topic: its lease was lost, the topic
    was released, or another agent owns it. Write to the owner."""


class OwnedByAnother(Unavailable):
    """``acquire`` found the topic owned by another agent (retryable: after that
    owner's lease expires or it releases the topic)."""

    def __init__(self, message: str, owner: OwnerRecord) -> None:
        super().__init__(message)
        self.owner = owner

    def details(self) -> dict[str, Any]:
        return {"topic": self.owner.topic, "agent": self.owner.agent_id, "epoch": self.owner.epoch}


class TooManyPlacements(RequestTooLarge):
    """More placements in etcd than ``cluster_placements_max``: the listing is refused
    rather than loaded without bound (not retryable: raise the limit or delete topics)."""


class AgentIdInUse(Unavailable):
    """Another live lease holds this agent id (a previous run of the same agent, until
    its lease expires, or a second agent misconfigured with the same id)."""


@dataclasses.dataclass
class Ownership:
    """A topic this agent acquired: its epoch, and whether it was lost since."""

    topic: str
    epoch: int
    lost: bool = False


@dataclasses.dataclass(frozen=True)
class AgentEvent:
    """``joined`` (``record`` is the agent's) or ``left`` (``record`` is None)."""

    kind: str
    agent_id: str
    record: AgentRecord | None
    revision: int


def parse_endpoints(endpoints: str | Sequence[str]) -> list[tuple[str, int]]:
    """``http://h1:2379,h2:2379`` (or a list of such) as (host, port) pairs; ``https://``
    for TLS (``endpoints_tls``)."""
    return _split_endpoints(endpoints)[0]


def endpoints_tls(endpoints: str | Sequence[str]) -> bool:
    """Whether the endpoints are ``https://`` (TLS). A bare ``HOST:PORT`` takes the scheme
    of the others (http:// if none has one); http:// and https:// together are refused."""
    return _split_endpoints(endpoints)[1]


def _split_endpoints(endpoints: str | Sequence[str]) -> tuple[list[tuple[str, int]], bool]:
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    items = [item.strip() for item in items if item.strip()]
    if not items:
        raise InvalidRequest("no etcd endpoint given: --etcd http://HOST:PORT[,http://HOST:PORT...]")
    if len(items) > limits.cluster_endpoints_max:
        raise InvalidRequest(f"{len(items)} etcd endpoints given, at most {limits.cluster_endpoints_max}")
    parsed = []
    schemes = set()
    for item in items:
        url = urllib.parse.urlsplit(item if "://" in item else f"//{item}")
        if url.scheme not in ("", "http", "https"):
            raise InvalidRequest(f"etcd endpoint {item!r}: expected http://HOST:PORT or https://HOST:PORT")
        if url.scheme:
            schemes.add(url.scheme)
        try:
            port = url.port or 2379
        except ValueError as exc:
            raise InvalidRequest(f"etcd endpoint {item!r}: {exc}") from exc
        if not url.hostname or url.path not in ("", "/") or url.query:
            raise InvalidRequest(f"etcd endpoint {item!r}: expected http://HOST:PORT or https://HOST:PORT")
        parsed.append((url.hostname, port))
    if len(schemes) > 1:
        raise InvalidRequest(
            f"etcd endpoints {','.join(items)!r} mix http:// and https://: etcd's client port serves "
            "one or the other, give them all alike"
        )
    return parsed, schemes == {"https"}


class EtcdCluster:
    """One agent's view of a cluster in etcd (see the module docstring)."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        cluster: str = "default",
        *,
        security: EtcdSecurity | None = None,
        request_timeout_seconds: float = limits.cluster_request_timeout_seconds,
        retry_seconds: float = limits.cluster_retry_seconds_max,
    ) -> None:
        """``https://`` endpoints mean TLS; ``security`` gives its files and the user
        (cluster/etcd_client.py)."""
        self.endpoints, self.tls = _split_endpoints(endpoints)
        self.security = security or EtcdSecurity()
        self.security.check(self.tls)
        self.layout = Layout(cluster)
        self.request_timeout_seconds = request_timeout_seconds
        self.retry_seconds = retry_seconds
        self._current = 0  # index of the endpoint in use
        self._client: Any = None
        self._closed = False
        self.agent: AgentRecord | None = None
        self.clock: LeaseClock | None = None
        self._owned: dict[str, Ownership] = {}
        self._keepalive: asyncio.Task[None] | None = None
        self._lost_listeners: list[Callable[[list[str]], None]] = []
        self.lease_lost = asyncio.Event()

    # --- connection ------------------------------------------------------------------

    async def __aenter__(self) -> EtcdCluster:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _connection(self) -> Any:
        if self._closed:
            raise ClosedError("the etcd client is closed")
        if self._client is None:
            host, port = self.endpoints[self._current]
            self._client = EtcdClient(
                host, port, tls=self.tls, security=self.security, timeout=self.request_timeout_seconds
            )
        return self._client

    async def _rotate(self, failed: Any) -> None:
        """Leave the member that failed for the next one (once per failed client)."""
        if self._client is not failed:
            return
        self._client = None
        self._current = (self._current + 1) % len(self.endpoints)
        with contextlib.suppress(Exception):  # closing a broken channel may fail in any way
            await failed.close()

    async def _call(self, request: Callable[[Any], Awaitable[T]], what: str) -> T:
        """``request(client)`` on a member, retried on the next members until it answers
        or ``retry_seconds`` passed."""
        deadline = time.monotonic() + self.retry_seconds
        backoff = _BACKOFF_FIRST_SECONDS
        while True:
            client = self._connection()
            failed: BaseException
            try:
                async with asyncio.timeout(self.request_timeout_seconds):
                    return await request(client)
            except asyncio.CancelledError as exc:
                # Another request on this client failed and moved to the next member,
                # closing the channel under this one (gRPC cancels the calls on it): this
                # one moves too. A cancellation of this task itself goes on as it came.
                task = asyncio.current_task()
                if self._client is client or (task is not None and task.cancelling()):
                    raise
                failed = exc
            except Exception as exc:
                if not _retryable(exc):
                    raise
                failed = exc
            if time.monotonic() + backoff > deadline:
                raise EtcdUnavailable(
                    f"etcd did not answer {what} within {self.retry_seconds} s "
                    f"(members {self._members_text()}): {failed}"
                ) from failed
            log.debug("etcd %s failed on %s: %s; trying the next member", what, self._members_text(), failed)
            await self._rotate(client)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX_SECONDS)

    def _members_text(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.endpoints)

    async def close(self) -> None:
        """Stop renewing (without revoking: ``leave`` does that) and close the client.
        Bounded: a channel to a member that died, or a task that does not end when
        cancelled, never keeps an agent from joining again."""
        if self._keepalive is not None:
            await cancel_and_wait([self._keepalive], self.request_timeout_seconds)
            self._keepalive = None
        self._closed = True
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.request_timeout_seconds):
                    await client.close()

    # --- membership ------------------------------------------------------------------

    async def join(
        self,
        agent_id: str,
        address: str,
        ttl: int = limits.cluster_lease_ttl_seconds_default,
        doors: dict[str, str] | None = None,
        tls: bool = False,
        cells: int = 1,
        token_hash: str = "",
    ) -> AgentRecord:
        """Grant a lease, register ``agents/<agent_id>`` bound to it, keep it alive.
        ``address`` is the agent's Flight door; ``doors`` its others (keys.DOORS);
        ``tls`` whether they serve TLS; ``cells`` the cluster's cells as it was told;
        ``token_hash`` the hash of its own credentials (security/agents.py)."""
        if self.agent is not None and self.clock is not None and not self.clock.lost:
            raise InvalidRequest(f"already joined as {self.agent.agent_id!r}")
        if isinstance(ttl, bool) or not isinstance(ttl, int):
            raise InvalidRequest(f"lease TTL must be whole seconds, got {ttl!r}")
        low, high = limits.cluster_lease_ttl_seconds_min, limits.cluster_lease_ttl_seconds_max
        if not low <= ttl <= high:
            raise InvalidRequest(f"lease TTL must be within {low}..{high} s, got {ttl}")
        record = AgentRecord(
            agent_id,
            address,
            time.time(),
            doors=dict(doors or {}),
            tls=tls,
            cells=cells,
            token_hash=token_hash,
        )
        key, value = self.layout.agent(agent_id), record.encode()
        sent_at = time.monotonic()
        lease = await self._call(lambda client: client.lease(ttl), "a lease grant")
        clock = LeaseClock.granted(lease.id, sent_at, float(lease.ttl))

        async def register(client: Any) -> tuple[bool, Any]:
            txn = client.transactions
            return await client.transaction(  # type: ignore[no-any-return]
                compare=[txn.create(key) == 0],
                success=[txn.put(key, value, lease=lease.id)],
                failure=[txn.get(key)],
            )

        succeeded, responses = await self._call(register, "an agent's registration")
        if not succeeded:
            existing = responses[0][0][1] if responses and responses[0] else None
            if existing is None or existing.lease != lease.id:
                with contextlib.suppress(EtcdUnavailable):
                    await self._call(lambda client: client.revoke_lease(lease.id), "a lease revocation")
                raise AgentIdInUse(
                    f"agent id {agent_id!r} is live in cluster {self.layout.cluster!r} under another "
                    f"lease: another agent uses it, or a previous run's lease has not expired yet "
                    f"(at most its TTL)"
                )
        self.agent = dataclasses.replace(record, lease=lease.id)
        self.clock = clock
        self._owned = {}
        self.lease_lost = asyncio.Event()
        self._keepalive = asyncio.get_running_loop().create_task(
            self._keep_alive(clock), name=f"odradek-etcd-keepalive-{agent_id}"
        )
        return self.agent

    async def _keep_alive(self, clock: LeaseClock) -> None:
        """Renew every TTL / 3; mark everything lost once the safe window closes."""
        next_renewal = time.monotonic()
        while True:
            now = time.monotonic()
            if not clock.held(now):
                break
            await asyncio.sleep(max(0.0, min(next_renewal, clock.safe_until) - now))
            now = time.monotonic()
            if not clock.held(now):
                break
            client = self._connection()
            sent_at = now
            try:
                async with asyncio.timeout(
                    min(self.request_timeout_seconds, max(0.001, clock.safe_until - now))
                ):
                    reply = await client.refresh_lease(clock.lease)
            except Exception as exc:  # noqa: BLE001 (whatever failed, renew until the window closes)
                log.debug("lease %x: renewal failed (%r); trying the next member", clock.lease, exc)
                await self._rotate(client)
                next_renewal = time.monotonic() + _BACKOFF_MAX_SECONDS / 2
                continue
            ttl = float(reply.TTL) if reply is not None else 0.0
            clock.renewed(sent_at, ttl, time.monotonic())
            next_renewal = sent_at + clock.keepalive_seconds
        self._mark_lost(clock)

    def _mark_lost(self, clock: LeaseClock, why: str = "no renewal within its safe window") -> None:
        if clock is not self.clock or self.lease_lost.is_set():
            return
        clock.lost = True
        topics = sorted(topic for topic, owned in self._owned.items() if not owned.lost)
        for owned in self._owned.values():
            owned.lost = True
        self.lease_lost.set()
        log.log(
            logging.INFO if why == _LEFT else logging.WARNING,
            "agent %s: lease %x given up (%s); %d topics with it",
            self.agent.agent_id if self.agent else "?",
            clock.lease,
            why,
            len(topics),
        )
        for listener in list(self._lost_listeners):
            try:
                listener(topics)
            except Exception:  # a listener's bug must not keep the others from learning
                log.exception("a lease-lost listener failed")

    def on_lost(self, listener: Callable[[list[str]], None]) -> None:
        """Call ``listener(topics)`` once, when the lease is lost, with the topics owned
        then (on the event loop, before etcd can expire the lease)."""
        self._lost_listeners.append(listener)

    def stop_keepalive(self) -> None:
        """Stop renewing the lease, as a partition from etcd would (tests, fault
        injection): the safe window closes, then everything is marked lost."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        clock = self.clock
        if clock is not None:
            delay = max(0.0, clock.safe_until - time.monotonic())
            asyncio.get_running_loop().call_later(delay, self._mark_lost, clock)

    async def leave(self) -> None:
        """Revoke the lease: the agent's key and owner keys go in one revision."""
        clock = self.clock
        if self._keepalive is not None:
            await cancel_and_wait([self._keepalive], self.request_timeout_seconds)
            self._keepalive = None
        if clock is None:
            return
        self._mark_lost(clock, _LEFT)
        try:
            await self._call(lambda client: client.revoke_lease(clock.lease), "a lease revocation")
        except Exception as exc:
            if not _lease_not_found(exc):
                raise
            # Expired already (an owner that lost its lease leaves it): nothing to revoke.
            agent = self.agent.agent_id if self.agent else "?"
            log.info("agent %s: lease %x expired before it was revoked", agent, clock.lease)

    async def agents(self) -> list[AgentRecord]:
        """The live agents, by id."""
        found, _ = await self._list(self.layout.agents_prefix)
        return [AgentRecord.decode(kv.value, kv.lease) for kv in found]

    async def watch_agents(self) -> AsyncIterator[AgentEvent]:
        """The agents live now (as ``joined`` events), then every join and departure.
        Survives the loss of members; after etcd compacted past what it missed, it
        lists again (``joined`` again for the live, ``left`` for the gone)."""

        async def listing() -> tuple[dict[str, AgentRecord], int]:
            found, revision = await self._list(self.layout.agents_prefix)
            return {
                self.layout.agent_of(kv.key): AgentRecord.decode(kv.value, kv.lease) for kv in found
            }, revision

        events = self._follow(
            self.layout.agents_prefix,
            listing,
            self.layout.agent_of,
            lambda _, kv: AgentRecord.decode(kv.value, kv.lease),
            "agents",
        )
        async with contextlib.aclosing(events):
            async for agent_id, record, revision in events:
                yield AgentEvent("left" if record is None else "joined", agent_id, record, revision)

    async def _follow(
        self,
        prefix: bytes,
        listing: Callable[[], Awaitable[tuple[dict[str, V], int]]],
        name_of: Callable[[bytes], str],
        decode: Callable[[str, Any], V],
        what: str,
        known: Iterable[str] = (),
        listed: Callable[[int], None] | None = None,
    ) -> AsyncGenerator[tuple[str, V | None, int], None]:
        """The keys under ``prefix`` as ``(name, value, revision)``: the listing's first
        (a deletion for each name ``known`` to the caller and gone, then every value by
        name, at the listing's revision; then ``listed(revision)`` is called), then each
        put and deletion (``value`` None) from the watch, which resumes after the last
        revision it gave on another member when one is lost. After etcd compacted past
        that revision it lists again, the same way (a deletion for each name gone)."""
        names = set(known)
        while True:
            current, revision = await listing()
            for name in sorted(names - set(current)):
                yield name, None, revision
            for name, value in sorted(current.items()):
                yield name, value, revision
            names = set(current)
            if listed is not None:
                listed(revision)
            while True:
                try:
                    async for event in self._watch(prefix, revision + 1):
                        revision = event.kv.mod_revision
                        name = name_of(event.kv.key)
                        if event.kind == "PUT":
                            names.add(name)
                            yield name, decode(name, event.kv), revision
                        else:
                            names.discard(name)
                            yield name, None, revision
                except aetcd.exceptions.RevisionCompactedError:
                    break  # list again
                except Exception as exc:
                    if not _retryable(exc):
                        raise
                    log.debug("watch of %s broke (%s); resuming on the next member", what, exc)
                    await self._rotate(self._client)
                    await asyncio.sleep(_BACKOFF_MAX_SECONDS / 2)

    async def _watch(self, prefix: bytes, start_revision: int) -> AsyncIterator[Any]:
        client = self._connection()
        async with asyncio.timeout(self.request_timeout_seconds):
            watch = await client.watch(prefix, range_end=prefix_end(prefix), start_revision=start_revision)
        try:
            async for event in watch:
                yield event
        finally:
            await _cancel_watch(watch, self.request_timeout_seconds)

    async def _list(self, prefix: bytes) -> tuple[list[Any], int]:
        """Every key under ``prefix`` and the revision of the listing (bounded)."""
        limit = limits.cluster_list_keys_max

        async def listing(client: Any) -> Any:
            # aetcd's get_range takes no limit: the request is built here.
            await client.connect()
            request = aetcd.rpc.RangeRequest(key=prefix, range_end=prefix_end(prefix), limit=limit + 1)
            return await client.kvstub.Range(request, timeout=self.request_timeout_seconds)

        answer = await self._call(listing, f"a listing of {prefix.decode()}")
        if answer.more or len(answer.kvs) > limit:
            raise EtcdUnavailable(f"more than {limit} keys under {prefix.decode()}: refusing to load them")
        return [aetcd.rtypes.KeyValue(kv) for kv in answer.kvs], int(answer.header.revision)

    # --- ownership -------------------------------------------------------------------

    def _lease(self) -> tuple[AgentRecord, LeaseClock]:
        if self.agent is None or self.clock is None:
            raise InvalidRequest("join the cluster first")
        if not self.clock.held(time.monotonic()):
            self._mark_lost(self.clock)
            raise OwnershipLost(f"agent {self.agent.agent_id!r} lost its lease: join again")
        return self.agent, self.clock

    async def acquire(self, topic: str) -> Ownership:
        """Become the owner of ``topic`` (one transaction: create-if-absent of
        ``owners/<topic>`` bound to this agent's lease). Raises ``OwnedByAnother`` if
        another agent owns it."""
        agent, clock = self._lease()
        key = self.layout.owner(topic)
        value = OwnerRecord(topic, agent.agent_id, clock.lease).encode()

        async def create(client: Any) -> tuple[bool, Any]:
            txn = client.transactions
            return await client.transaction(  # type: ignore[no-any-return]
                compare=[txn.create(key) == 0],
                success=[txn.put(key, value, lease=clock.lease), txn.get(key)],
                failure=[txn.get(key)],
            )

        succeeded, responses = await self._call(create, f"the acquisition of {topic!r}")
        kvs = responses[-1]
        if not kvs:  # the owner went away between the compare and the get: impossible in one txn
            raise EtcdUnavailable(f"etcd answered the acquisition of {topic!r} without the owner key")
        kv = kvs[0][1]
        owner = OwnerRecord.decode(topic, kv.value, kv.mod_revision)
        if not succeeded and not (owner.agent_id == agent.agent_id and owner.lease == clock.lease):
            raise OwnedByAnother(f"topic {topic!r} is owned by agent {owner.agent_id!r}", owner)
        # (not succeeded but ours: an earlier try of this acquire landed, answer lost)
        owned = Ownership(topic, owner.epoch)
        self._owned[topic] = owned
        if not clock.held(time.monotonic()):
            self._mark_lost(clock)
            raise OwnershipLost(f"agent {agent.agent_id!r} lost its lease while acquiring {topic!r}")
        return owned

    async def release(self, topic: str) -> None:
        """Give ``topic`` up: delete its owner key if it still carries this epoch."""
        owned = self._owned.pop(topic, None)
        if owned is None:
            return
        owned.lost = True
        key = self.layout.owner(topic)

        async def delete(client: Any) -> tuple[bool, Any]:
            txn = client.transactions
            return await client.transaction(  # type: ignore[no-any-return]
                compare=[txn.mod(key) == owned.epoch], success=[txn.delete(key)], failure=[]
            )

        await self._call(delete, f"the release of {topic!r}")

    async def owner(self, topic: str) -> OwnerRecord | None:
        """The owner of ``topic`` now, or None."""
        key = self.layout.owner(topic)
        kv = await self._call(lambda client: client.get(key), f"the owner of {topic!r}")
        return None if kv is None else OwnerRecord.decode(topic, kv.value, kv.mod_revision)

    async def watch_owner(self, topic: str) -> AsyncIterator[OwnerRecord | None]:
        """``topic``'s owner now (None: none), then each change of it. Survives the loss
        of members and compaction (it reads the key again)."""
        key = self.layout.owner(topic)
        while True:

            async def read(client: Any) -> Any:
                await client.connect()
                request = aetcd.rpc.RangeRequest(key=key)
                return await client.kvstub.Range(request, timeout=self.request_timeout_seconds)

            answer = await self._call(read, f"the owner of {topic!r}")
            revision = int(answer.header.revision)
            kv = answer.kvs[0] if answer.kvs else None
            yield None if kv is None else OwnerRecord.decode(topic, kv.value, int(kv.mod_revision))
            while True:
                try:
                    client = self._connection()
                    async with asyncio.timeout(self.request_timeout_seconds):
                        watch = await client.watch(key, start_revision=revision + 1)
                    try:
                        async for event in watch:
                            revision = event.kv.mod_revision
                            if event.kind == "PUT":
                                yield OwnerRecord.decode(topic, event.kv.value, event.kv.mod_revision)
                            else:
                                yield None
                    finally:
                        await _cancel_watch(watch, self.request_timeout_seconds)
                except aetcd.exceptions.RevisionCompactedError:
                    break  # read it again
                except Exception as exc:
                    if not _retryable(exc):
                        raise
                    log.debug("watch of %r's owner broke (%s); resuming on the next member", topic, exc)
                    await self._rotate(self._client)
                    await asyncio.sleep(_BACKOFF_MAX_SECONDS / 2)

    async def hand_over(self, topic: str, to: str, ttl: int) -> None:
        """Name ``to`` as the only agent that may acquire ``topic`` for the next ``ttl``
        seconds (a key bound to a lease of its own: it goes by itself)."""
        validate_agent_id(to)
        key = self.layout.handover(topic)
        lease = await self._call(lambda client: client.lease(ttl), "a handover lease")
        value = json.dumps({"v": 1, "to": to}).encode()
        await self._call(lambda client: client.put(key, value, lease=lease.id), f"the handover of {topic!r}")

    async def handover_target(self, topic: str) -> str | None:
        """The agent ``topic`` is being handed over to, if any."""
        key = self.layout.handover(topic)
        kv = await self._call(lambda client: client.get(key), f"the handover of {topic!r}")
        if kv is None:
            return None
        try:
            target = json.loads(kv.value).get("to")
        except (ValueError, AttributeError):
            return None
        return target if isinstance(target, str) else None

    async def owners(self) -> dict[str, OwnerRecord]:
        found, _ = await self._list(self.layout.owners_prefix)
        owners = {}
        for kv in found:
            topic = self.layout.topic_of_owner(kv.key)
            owners[topic] = OwnerRecord.decode(topic, kv.value, kv.mod_revision)
        return owners

    def holds(self, topic: str, epoch: int | None = None) -> bool:
        """Whether this agent may act as ``topic``'s owner now (at ``epoch``), by its own
        clock: no request. What an owner checks before every acknowledgement."""
        owned = self._owned.get(topic)
        if owned is None or owned.lost or (epoch is not None and owned.epoch != epoch):
            return False
        if self.clock is None or not self.clock.held(time.monotonic()):
            if self.clock is not None:
                self._mark_lost(self.clock)
            return False
        return True

    def _lost_at(self, topic: str, epoch: int) -> None:
        """etcd said ``topic``'s owner key no longer carries ``epoch``: lost, if held at it."""
        owned = self._owned.get(topic)
        if owned is not None and owned.epoch == epoch:
            owned.lost = True

    def epoch_of(self, topic: str) -> int | None:
        """The epoch this agent acquired ``topic`` at, unless it knows it lost it since
        (no clock check, no listener: safe from any thread)."""
        owned = self._owned.get(topic)
        return None if owned is None or owned.lost else owned.epoch

    def owned(self) -> dict[str, Ownership]:
        """The topics this agent holds now (not lost)."""
        return {topic: owned for topic, owned in self._owned.items() if self.holds(topic)}

    async def commit_allowed(self, topic: str, epoch: int) -> bool:
        """The etcd transaction comparing ``owners/<topic>``'s ``mod_revision`` with
        ``epoch``: True exactly when this owner still held the topic at etcd's
        linearization point, and this agent's safe window is still open. A False
        marks the topic lost here (decision record 0012)."""
        if not self.holds(topic, epoch):
            return False
        key = self.layout.owner(topic)

        async def compare(client: Any) -> tuple[bool, Any]:
            txn = client.transactions
            return await client.transaction(compare=[txn.mod(key) == epoch], success=[], failure=[])  # type: ignore[no-any-return]

        succeeded, _ = await self._call(compare, f"the commit check of {topic!r}")
        if not succeeded:
            self._lost_at(topic, epoch)
            return False
        return self.holds(topic, epoch)

    # --- documents (decision 0029) -----------------------------------------------------

    async def read_key(self, key: bytes) -> tuple[bytes | None, int]:
        """``key``'s value (None: absent) and its ``mod_revision`` (0: absent)."""
        kv = await self._call(lambda client: client.get(key), f"the read of {key.decode()}")
        return (None, 0) if kv is None else (bytes(kv.value), int(kv.mod_revision))

    async def key_revision(self, key: bytes) -> int:
        """``key``'s ``mod_revision`` (0: absent), without its value."""

        async def read(client: Any) -> Any:
            await client.connect()
            request = aetcd.rpc.RangeRequest(key=key, keys_only=True)
            return await client.kvstub.Range(request, timeout=self.request_timeout_seconds)

        answer = await self._call(read, f"the revision of {key.decode()}")
        return int(answer.kvs[0].mod_revision) if answer.kvs else 0

    async def swap_key(self, key: bytes, value: bytes, revision: int, *, own: bool = True) -> int | None:
        """Put ``value`` if ``key``'s ``mod_revision`` is still ``revision`` (0: the key
        is absent), in one transaction: the new ``mod_revision``, or None if another
        writer changed the key since. ``own``: a retry after an unknown outcome
        recognizes its own write (the key holds exactly ``value``); without it, a key
        holding the same value is another writer's (two agents importing one document)."""

        async def swap(client: Any) -> tuple[bool, Any]:
            txn = client.transactions
            return await client.transaction(  # type: ignore[no-any-return]
                compare=[txn.mod(key) == revision], success=[txn.put(key, value)], failure=[txn.get(key)]
            )

        succeeded, responses = await self._call(swap, f"the change of {key.decode()}")
        if succeeded:
            return int(responses[0].response_put.header.revision)
        kvs = responses[0] if responses else []
        if own and kvs and bytes(kvs[0][0]) == value:  # an earlier try landed, its answer lost
            return int(kvs[0][1].mod_revision)
        return None

    async def watch_keys(self, prefix: bytes) -> AsyncIterator[bytes | None]:
        """The key under ``prefix`` that changed (put or deleted), as each changes; None
        first and whenever changes may have been missed (a member lost, etcd compacted
        past the watch): the caller reads every key again."""
        changes = self.watch_changes(prefix)
        async with contextlib.aclosing(changes):
            async for change in changes:
                yield None if change is None else change[0]

    async def watch_changes(
        self, prefix: bytes
    ) -> AsyncGenerator[tuple[bytes, bytes | None, int] | None, None]:
        """As watch_keys, with each change's value (None: deleted) and revision."""
        while True:

            async def listing(client: Any) -> Any:
                await client.connect()
                request = aetcd.rpc.RangeRequest(
                    key=prefix, range_end=prefix_end(prefix), keys_only=True, count_only=True
                )
                return await client.kvstub.Range(request, timeout=self.request_timeout_seconds)

            answer = await self._call(listing, f"the revision of {prefix.decode()}")
            revision = int(answer.header.revision)
            yield None
            try:
                async for event in self._watch(prefix, revision + 1):
                    value = None if event.kind == "DELETE" else bytes(event.kv.value)
                    yield bytes(event.kv.key), value, int(event.kv.mod_revision)
            except aetcd.exceptions.RevisionCompactedError:
                continue  # read again
            except Exception as exc:
                if not _retryable(exc):
                    raise
                log.debug("watch of %s broke (%s); resuming on the next member", prefix.decode(), exc)
                await self._rotate(self._client)
                await asyncio.sleep(_BACKOFF_MAX_SECONDS / 2)

    # --- catalog ---------------------------------------------------------------------

    async def create_topic(self, record: TopicRecord) -> TopicRecord:
        """Add ``record`` to the catalog (create-if-absent); TopicExists if it is there."""
        key, value = self.layout.topic(record.name), record.encode()

        async def create(client: Any) -> tuple[bool, Any]:
            txn = client.transactions
            return await client.transaction(  # type: ignore[no-any-return]
                compare=[txn.create(key) == 0], success=[txn.put(key, value)], failure=[txn.get(key)]
            )

        succeeded, responses = await self._call(create, f"the creation of topic {record.name!r}")
        if not succeeded:
            existing = TopicRecord.decode(record.name, responses[0][0][1].value)
            if existing != record:  # (equal: an earlier try landed)
                raise TopicExists(f"topic {record.name!r} is in the catalog already", topic=record.name)
        return record

    async def topic(self, name: str) -> TopicRecord | None:
        key = self.layout.topic(name)
        kv = await self._call(lambda client: client.get(key), f"topic {name!r}")
        return None if kv is None else TopicRecord.decode(name, kv.value)

    async def topics(self) -> list[TopicRecord]:
        found, _ = await self._list(self.layout.topics_prefix)
        return [TopicRecord.decode(self.layout.topic_of_catalog(kv.key), kv.value) for kv in found]

    async def delete_topic(self, name: str) -> bool:
        """Remove ``name`` from the catalog; False if it was not there."""
        key = self.layout.topic(name)
        deleted = await self._call(lambda client: client.delete(key), f"the deletion of topic {name!r}")
        return bool(deleted)

    # --- placements: which cell holds each topic ---------------------------------------

    async def place_topic(self, topic: str, cell: str) -> PlacementRecord:
        """Place ``topic`` in ``cell`` unless it is placed already (one transaction:
        create-if-absent). Answers the placement in etcd after it, with its revision:
        this one, or the one found there, whatever its cell (the first placement wins a
        race; a retry after a lost answer finds its own)."""
        record = PlacementRecord(topic, cell)
        key, value = self.layout.placement(topic), record.encode()

        async def create(client: Any) -> tuple[bool, Any]:
            txn = client.transactions
            return await client.transaction(  # type: ignore[no-any-return]
                compare=[txn.create(key) == 0],
                success=[txn.put(key, value), txn.get(key)],
                failure=[txn.get(key)],
            )

        _, responses = await self._call(create, f"the placement of {topic!r}")
        kvs = responses[-1]
        if not kvs:  # deleted between the compare and the get: impossible in one transaction
            raise EtcdUnavailable(f"etcd answered the placement of {topic!r} without its key")
        kv = kvs[0][1]
        return PlacementRecord.decode(topic, kv.value, int(kv.mod_revision))

    async def place_topics(self, records: Iterable[PlacementRecord]) -> int:
        """Place each topic of ``records`` in its cell unless it is placed already (what
        the home cell's owner does with its topics at open), in transactions of at most
        ``cluster_txn_ops_max`` keys. Answers how many were placed by this call. Not one
        transaction: a failure part way leaves the earlier transactions' placements,
        and running it again places the rest (a retry after a lost answer counts the
        placements that landed as found). A topic given twice is refused before etcd is
        asked."""
        chosen: dict[str, tuple[bytes, bytes]] = {}
        for record in records:
            if not isinstance(record, PlacementRecord):
                raise InvalidRequest(f"a placement must be a PlacementRecord, got {type(record).__name__}")
            if record.topic in chosen:
                raise InvalidRequest(f"topic {record.topic!r} is given twice")
            chosen[record.topic] = (self.layout.placement(record.topic), record.encode())
        names = list(chosen)
        placed = 0
        for start in range(0, len(names), limits.cluster_txn_ops_max):
            pending = names[start : start + limits.cluster_txn_ops_max]
            while pending:
                batch = [chosen[name] for name in pending]

                async def create(client: Any, batch: list[tuple[bytes, bytes]] = batch) -> tuple[bool, Any]:
                    txn = client.transactions
                    return await client.transaction(  # type: ignore[no-any-return]
                        compare=[txn.create(key) == 0 for key, _ in batch],
                        success=[txn.put(key, value) for key, value in batch],
                        failure=[txn.get(key) for key, _ in batch],
                    )

                succeeded, responses = await self._call(create, f"the placement of {len(batch)} topics")
                if succeeded:
                    placed += len(batch)
                    break
                # Some are placed already (the failure's reads say which): place the others.
                remaining = [name for name, kvs in zip(pending, responses, strict=True) if not kvs]
                if len(remaining) == len(pending):
                    raise EtcdUnavailable("etcd refused a placement of absent topics")  # cannot happen
                pending = remaining
        return placed

    async def move_placement(self, topic: str, from_cell: str, to_cell: str) -> PlacementRecord | None:
        """Move ``topic``'s placement from ``from_cell`` to ``to_cell`` if it still names
        ``from_cell`` (one transaction comparing the key's value): the placement after
        the move, with its revision (true), or None (false) when it names another cell
        or none. A retry of this call after an unknown outcome that finds the topic in
        ``to_cell`` takes that for its own move having landed."""
        if from_cell == to_cell:
            raise InvalidRequest(f"topic {topic!r} cannot move from cell {from_cell!r} to itself")
        key = self.layout.placement(topic)
        before, after = PlacementRecord(topic, from_cell).encode(), PlacementRecord(topic, to_cell).encode()
        tries = 0

        async def swap(client: Any) -> tuple[bool, Any]:
            nonlocal tries
            tries += 1
            txn = client.transactions
            return await client.transaction(  # type: ignore[no-any-return]
                compare=[txn.value(key) == before],
                success=[txn.put(key, after), txn.get(key)],
                failure=[txn.get(key)],
            )

        succeeded, responses = await self._call(swap, f"the move of {topic!r} to {to_cell!r}")
        kvs = responses[-1]
        if not kvs:
            return None
        found = PlacementRecord.decode(topic, kvs[0][1].value, int(kvs[0][1].mod_revision))
        return found if succeeded or (tries > 1 and found.cell == to_cell) else None

    async def delete_placement(self, topic: str, cell: str) -> int:
        """Delete ``topic``'s placement if it still names ``cell`` (one transaction
        comparing the key's value): the revision of the deletion (true), or 0 (false)
        when it names another cell or none (a retry after a lost answer finds none)."""
        key = self.layout.placement(topic)
        value = PlacementRecord(topic, cell).encode()

        async def delete(client: Any) -> tuple[bool, Any]:
            txn = client.transactions
            return await client.transaction(  # type: ignore[no-any-return]
                compare=[txn.value(key) == value], success=[txn.delete(key)], failure=[]
            )

        succeeded, responses = await self._call(delete, f"the deletion of {topic!r}'s placement")
        return int(responses[0].response_delete_range.header.revision) if succeeded else 0

    async def placement(self, topic: str) -> PlacementRecord | None:
        """``topic``'s placement now, or None."""
        key = self.layout.placement(topic)
        kv = await self._call(lambda client: client.get(key), f"the placement of {topic!r}")
        return None if kv is None else PlacementRecord.decode(topic, kv.value, int(kv.mod_revision))

    async def placements(self) -> list[PlacementRecord]:
        """Every placement, by topic. Read in pages of ``cluster_placement_page_keys``,
        all at the first page's revision (one consistent listing, however many pages);
        more than ``cluster_placements_max`` is refused with TooManyPlacements."""
        return list((await self._placements())[0].values())

    async def _placements(self) -> tuple[dict[str, PlacementRecord], int]:
        layout = self.layout
        return await self._topic_records(
            layout.placements_prefix, layout.topic_of_placement, PlacementRecord.decode, "placements"
        )

    async def _topic_records(
        self,
        prefix: bytes,
        topic_of: Callable[[bytes], str],
        decode: Callable[[str, bytes, int], V],
        what: str,
    ) -> tuple[dict[str, V], int]:
        """Every record of a key per topic under ``prefix`` (placements, shapes), by
        topic, and the listing's revision: one consistent listing in pages, at most
        ``cluster_placements_max`` keys."""
        found, revision = await self._list_pages(prefix, limits.cluster_placements_max, what)
        records = {}
        for kv in found:
            topic = topic_of(kv.key)
            records[topic] = decode(topic, kv.value, int(kv.mod_revision))
        return records, revision

    async def watch_placements(
        self, known: Iterable[str] = (), listed: Callable[[int], None] | None = None
    ) -> AsyncIterator[PlacementEvent]:
        """Every placement now (by topic, at the listing's revision), then each change:
        a new or moved placement (``cell`` set) or a deletion (``cell`` None). Survives
        the loss of members; after etcd compacted past what it missed, it lists again,
        giving a deletion for each topic gone since and every placement again.

        ``known``: the topics whose placements the caller holds already (a view
        watching again): the first listing gives a deletion for each that is gone. ``listed(revision)`` is
        called once each listing was given, before the watch that follows it."""
        events = self._follow(
            self.layout.placements_prefix,
            self._placements,
            self.layout.topic_of_placement,
            lambda topic, kv: PlacementRecord.decode(topic, kv.value, int(kv.mod_revision)),
            "placements",
            known,
            listed,
        )
        async with contextlib.aclosing(events):
            async for topic, record, revision in events:
                yield PlacementEvent(topic, None if record is None else record.cell, revision)

    # --- Kafka transactions over cells (decision 0037) --------------------------------

    async def enlistments(self, hashed: str) -> dict[str, tuple[bytes, int]]:
        """A transactional id's enlistments now, by cell: (value, ``mod_revision``)."""
        kvs, _ = await self._list(self.layout.enlistments_prefix(hashed))
        return {
            self.layout.of_enlistment(bytes(kv.key))[1]: (bytes(kv.value), int(kv.mod_revision)) for kv in kvs
        }

    async def swap_enlistments(
        self, hashed: str, changes: Mapping[str, tuple[bytes, int]], owner: tuple[str, int] | None = None
    ) -> dict[str, int] | None:
        """Put each cell's value if its key's ``mod_revision`` is still the one given
        (0: absent), all in one transaction: the new ``mod_revision`` by cell, or None
        if another writer changed one of them since (then nothing is written). A retry
        after an unknown outcome recognizes its own write (every key holds exactly its
        value).

        ``owner`` (a cell, the epoch this agent serves it at) fences the swap: it is
        written only while that cell's owner key still carries the epoch, compared in
        the same transaction, so that a door whose agent lost its cell (a paused
        agent waking, a door still closing) changes nothing of a transaction its
        successor is finishing. ``OwnershipLost`` if it does not."""
        keyed = []
        for cell, (value, revision) in sorted(changes.items()):
            if len(value) > limits.cluster_value_bytes_max:
                raise RequestTooLarge(
                    f"etcd value of {len(value)} bytes, at most {limits.cluster_value_bytes_max}"
                )
            keyed.append((self.layout.enlistment(hashed, cell), value, revision))
        fence = []
        if owner is not None:
            cell, epoch = owner
            if not self.holds(cell, epoch):
                raise OwnershipLost(f"this agent no longer serves cell {cell} at epoch {epoch}")
            fence.append((self.layout.owner(cell), epoch))

        async def swap(client: Any) -> tuple[bool, Any]:
            txn = client.transactions
            return await client.transaction(  # type: ignore[no-any-return]
                compare=[txn.mod(key) == revision for key, _, revision in keyed]
                + [txn.mod(key) == epoch for key, epoch in fence],
                success=[txn.put(key, value) for key, value, _ in keyed],
                failure=[txn.get(key) for key, _, _ in keyed] + [txn.get(key) for key, _ in fence],
            )

        succeeded, responses = await self._call(swap, "a transaction's enlistments")
        if succeeded:
            revision = int(responses[0].response_put.header.revision) if responses else 0
            return {cell: revision for cell in sorted(changes)}
        for (key, epoch), kvs in zip(fence, responses[len(keyed) :], strict=True):
            if not kvs or int(kvs[0][1].mod_revision) != epoch:
                cell = self.layout.topic_of_owner(key)
                self._lost_at(cell, epoch)
                raise OwnershipLost(f"this agent no longer serves cell {cell}: another agent took it over")
        landed = {}
        for (key, value, _), kvs in zip(keyed, responses, strict=True):
            if not kvs or bytes(kvs[0][0]) != value:
                return None
            landed[self.layout.of_enlistment(key)[1]] = int(kvs[0][1].mod_revision)
        return landed  # an earlier try landed, its answer lost

    # --- shapes: how the Kafka door shows each topic (decision 0033) -------------------

    async def put_shape(self, record: ShapeRecord) -> int:
        """Write ``record`` (whatever was there): the revision of the write."""
        key, value = self.layout.shape(record.topic), record.encode()
        response = await self._call(lambda client: client.put(key, value), f"the shape of {record.topic!r}")
        return int(response.header.revision)

    async def delete_shape(self, record: ShapeRecord) -> bool:
        """Delete ``record``'s topic's shape if it is still ``record`` (one transaction
        comparing the value: a shape another cell wrote since stays)."""
        key, value = self.layout.shape(record.topic), record.encode()

        async def delete(client: Any) -> tuple[bool, Any]:
            txn = client.transactions
            return await client.transaction(  # type: ignore[no-any-return]
                compare=[txn.value(key) == value], success=[txn.delete(key)], failure=[]
            )

        succeeded, _ = await self._call(delete, f"the deletion of {record.topic!r}'s shape")
        return bool(succeeded)

    async def shape(self, topic: str) -> ShapeRecord | None:
        """``topic``'s shape now, or None."""
        key = self.layout.shape(topic)
        kv = await self._call(lambda client: client.get(key), f"the shape of {topic!r}")
        return None if kv is None else ShapeRecord.decode(topic, kv.value, int(kv.mod_revision))

    async def shapes(self) -> dict[str, ShapeRecord]:
        """Every shape, by topic (one consistent listing, in pages; at most
        ``cluster_placements_max``, as placements)."""
        records, _ = await self._topic_records(
            self.layout.shapes_prefix, self.layout.topic_of_shape, ShapeRecord.decode, "shapes"
        )
        return records

    async def _list_pages(self, prefix: bytes, keys_max: int, what: str) -> tuple[list[Any], int]:
        """Every key under ``prefix`` and the listing's revision, read in pages at the
        first page's revision; listed again from the start if etcd compacts past that
        revision between pages. More than ``keys_max`` keys: TooManyPlacements."""
        end = prefix_end(prefix)
        while True:
            found: list[Any] = []
            revision = 0  # the first page: the newest
            start = prefix
            try:
                while True:

                    async def page(client: Any, start: bytes = start, revision: int = revision) -> Any:
                        await client.connect()
                        request = aetcd.rpc.RangeRequest(
                            key=start,
                            range_end=end,
                            limit=limits.cluster_placement_page_keys,
                            revision=revision,
                        )
                        return await client.kvstub.Range(request, timeout=self.request_timeout_seconds)

                    answer = await self._call(page, f"a listing of {prefix.decode()}")
                    if revision == 0:
                        revision = int(answer.header.revision)
                    found.extend(aetcd.rtypes.KeyValue(kv) for kv in answer.kvs)
                    if len(found) > keys_max:
                        raise TooManyPlacements(
                            f"more than {keys_max} {what} under {prefix.decode()}: refusing to load them "
                            f"(cluster_placements_max)"
                        )
                    if not answer.more or not answer.kvs:
                        return found, revision
                    start = bytes(answer.kvs[-1].key) + b"\0"
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.OUT_OF_RANGE:  # "required revision has been compacted"
                    raise
                log.debug("listing of %s at revision %d compacted under it; listing again", what, revision)
