"""Kafka transactions' enlistments in a real etcd (cluster/etcd.py: enlistments,
swap_enlistments, watch_keys under ``transactions/``; decision 0037).

Goal: a transactional id's enlistments are listed by cell with their revisions; a swap
of several cells' keys writes all of them or none (one stale revision fails the whole
swap and changes nothing), recognizes its own earlier write when retried, and refuses
a value over etcd's bound; a watch on the prefix names each key that changes; ids and
clusters do not see each other's keys; a key naming no id hash or cell is refused. A
swap fenced by a cell's ownership is written only while the cell's owner key carries
the epoch given: an agent that lost the cell (and knows it, or not yet: a paused agent
waking) writes nothing, is told so, and learns it lost the cell.
Method: EtcdCluster clients against the session's single-member etcd, each test under a
cluster name of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import TypeVar

import pytest
from cluster_testing import run
from etcd_servers import EtcdServers, unique_cluster_name

from odradek import limits
from odradek.cluster.etcd import EtcdCluster, Ownership, OwnershipLost
from odradek.cluster.keys import Layout
from odradek.errors import DataDamaged, InvalidRequest, RequestTooLarge

T = TypeVar("T")


def _hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


async def _first(items: AsyncIterator[T], count: int, listed: asyncio.Event) -> list[T]:
    """The first ``count`` items of a watch; ``listed`` is set at the first (its listing)."""
    seen: list[T] = []
    async for item in items:
        seen.append(item)
        listed.set()
        if len(seen) == count:
            break
    return seen


def test_enlistments_swap_all_or_none(etcd_server: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        tx, other = _hash("tx"), _hash("other")
        async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
            async with EtcdCluster(etcd_server.url, unique_cluster_name()) as elsewhere:
                assert await a.enlistments(tx) == {}
                landed = await a.swap_enlistments(tx, {"_cell.1": (b"one", 0), "_cell.2": (b"two", 0)})
                assert landed is not None and landed["_cell.1"] == landed["_cell.2"] > 0
                assert await b.enlistments(tx) == {
                    "_cell.1": (b"one", landed["_cell.1"]),
                    "_cell.2": (b"two", landed["_cell.2"]),
                }
                # One stale revision: nothing of the swap is written.
                assert (
                    await b.swap_enlistments(
                        tx, {"_cell.1": (b"one'", landed["_cell.1"]), "_cell.2": (b"two'", 0)}
                    )
                    is None
                )
                assert {cell: value for cell, (value, _) in (await a.enlistments(tx)).items()} == {
                    "_cell.1": b"one",
                    "_cell.2": b"two",
                }
                # A retry whose first try landed is recognized as its own write.
                again = await a.swap_enlistments(tx, {"_cell.1": (b"one", 0), "_cell.2": (b"two", 0)})
                assert again == landed
                # Another id, another cluster: their own keys.
                await a.swap_enlistments(other, {"_cell.1": (b"x", 0)})
                assert set(await a.enlistments(tx)) == {"_cell.1", "_cell.2"}
                assert await elsewhere.enlistments(tx) == {}
                with pytest.raises(RequestTooLarge):
                    await a.swap_enlistments(
                        tx, {"_cell.1": (b"v" * (limits.cluster_value_bytes_max + 1), landed["_cell.1"])}
                    )
                with pytest.raises(InvalidRequest):
                    await a.enlistments("not-a-hash")
                with pytest.raises(InvalidRequest):
                    await a.swap_enlistments(tx, {"nowhere": (b"x", 0)})

    run(scenario())


def test_a_swap_fenced_by_a_cells_ownership_needs_the_owners_epoch(etcd_server: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        tx = _hash("fenced")
        async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
            await a.join("a", "127.0.0.1:1", ttl=5)
            await b.join("b", "127.0.0.1:2", ttl=5)
            first = await a.acquire("_cell.1")
            landed = await a.swap_enlistments(tx, {"_cell.1": (b"a1", 0)}, owner=("_cell.1", first.epoch))
            assert landed is not None
            # Another agent serves the cell now; a knows it: refused without a request.
            await a.release("_cell.1")
            second = await b.acquire("_cell.1")
            with pytest.raises(OwnershipLost):
                await a.swap_enlistments(
                    tx, {"_cell.1": (b"a2", landed["_cell.1"])}, owner=("_cell.1", first.epoch)
                )
            # a does not know yet (a paused agent waking): etcd's compare refuses it.
            a._owned["_cell.1"] = Ownership("_cell.1", first.epoch)
            assert a.holds("_cell.1", first.epoch)
            with pytest.raises(OwnershipLost):
                await a.swap_enlistments(
                    tx, {"_cell.1": (b"a2", landed["_cell.1"])}, owner=("_cell.1", first.epoch)
                )
            assert not a.holds("_cell.1", first.epoch)  # and it learned it lost the cell
            assert await b.enlistments(tx) == {"_cell.1": (b"a1", landed["_cell.1"])}
            # The owner's swap lands; a stale revision under a valid fence is still None.
            again = await b.swap_enlistments(
                tx, {"_cell.1": (b"b1", landed["_cell.1"])}, owner=("_cell.1", second.epoch)
            )
            assert again is not None
            assert (
                await b.swap_enlistments(
                    tx, {"_cell.1": (b"b2", landed["_cell.1"])}, owner=("_cell.1", second.epoch)
                )
                is None
            )
            assert await b.enlistments(tx) == {"_cell.1": (b"b1", again["_cell.1"])}

    run(scenario())


def test_a_watch_names_each_enlistment_that_changes(etcd_server: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        tx = _hash("watched")
        async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
            layout = Layout(name)
            listed = asyncio.Event()
            watcher = asyncio.create_task(_first(b.watch_keys(layout.transactions_prefix), 4, listed))
            await listed.wait()  # None first: listed
            first = await a.swap_enlistments(tx, {"_cell.1": (b"a", 0)})
            assert first is not None
            await a.swap_enlistments(tx, {"_cell.1": (b"b", first["_cell.1"]), "_cell.3": (b"c", 0)})
            async with asyncio.timeout(10):
                keys = await watcher
            seen = [None if key is None else layout.of_enlistment(key) for key in keys]
            # The first swap's key, then the second's two, in the order it wrote them.
            assert seen == [None, (tx, "_cell.1"), (tx, "_cell.1"), (tx, "_cell.3")]

    run(scenario())


def test_enlistment_keys_name_an_id_hash_and_a_cell() -> None:
    layout = Layout("keys")
    hashed = _hash("id")
    key = layout.enlistment(hashed, "_cell.4")
    assert key == f"/odradek/keys/transactions/{hashed}/_cell.4".encode()
    assert layout.of_enlistment(key) == (hashed, "_cell.4")
    for bad in (
        b"/odradek/keys/transactions/abc/_cell.1",
        layout.transactions_prefix + hashed.encode() + b"/x",
    ):
        with pytest.raises(DataDamaged):
            layout.of_enlistment(bad)
    with pytest.raises(InvalidRequest):
        layout.enlistment(hashed.upper(), "_cell.1")


def test_a_watch_of_changes_carries_each_value_and_revision(etcd_server: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        tx = _hash("valued")
        async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
            layout = Layout(name)
            listed = asyncio.Event()
            watcher = asyncio.create_task(_first(b.watch_changes(layout.transactions_prefix), 3, listed))
            await listed.wait()
            first = await a.swap_enlistments(tx, {"_cell.2": (b"one", 0)})
            assert first is not None
            second = await a.swap_enlistments(tx, {"_cell.2": (b"two", first["_cell.2"])})
            assert second is not None
            async with asyncio.timeout(10):
                seen = await watcher
            key = layout.enlistment(tx, "_cell.2")
            assert seen == [None, (key, b"one", first["_cell.2"]), (key, b"two", second["_cell.2"])]

    run(scenario())
