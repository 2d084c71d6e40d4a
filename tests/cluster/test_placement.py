"""Which cell holds each topic: the placements in a real etcd (cluster/etcd.py:
place_topic, place_topics, move_placement, delete_placement, placements,
watch_placements) and the view every agent keeps of them (cluster/placement.py).

Goal: a topic is placed once (two clients racing on one topic both answer the one cell
that won); a bulk placement of more topics than one etcd transaction takes places them
all, keeps what was placed before, and places nothing the second time; a move or a
deletion naming a cell the topic is no longer in is refused; a listing reads every
placement in pages at one revision and refuses more than the bound; a view following
one client sees another's placements, moves and deletions, and its own writes at once;
a watch resumes after etcd compacted past it, and a view watching again learns the
deletions it missed. The view's bookkeeping (counts, the least loaded cell, the order
of changes, waiting for a topic) is tested without etcd.

Method: EtcdCluster clients against the session's single-member etcd, each test under a
cluster name of its own; a member of its own for the compaction (it compacts every
cluster's history). Waits on conditions (cluster_testing.eventually), never on time.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from pathlib import Path

import pytest
from cluster_testing import eventually, run
from etcd_servers import EtcdServers, etcd_cluster, unique_cluster_name

from odradek import limits
from odradek.cluster.etcd import EtcdCluster, TooManyPlacements
from odradek.cluster.keys import PlacementEvent, PlacementRecord, ShapeRecord, cell_names
from odradek.cluster.placement import PlacementView
from odradek.errors import InvalidRequest


def test_a_topic_is_placed_once_and_a_race_has_one_winner(etcd_server: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
            first = await a.place_topic("orders", "_cell.1")
            assert (first.cell, first.revision > 0) == ("_cell.1", True)
            again = await b.place_topic("orders", "_cell.2")  # placed already: the first stays
            assert (again.cell, again.revision) == ("_cell.1", first.revision)
            # Two clients racing on each of 20 topics: one cell wins, both answer it.
            topics = [f"race.{index}" for index in range(20)]
            answers = await asyncio.gather(
                *(a.place_topic(topic, "_cell.1") for topic in topics),
                *(b.place_topic(topic, "_cell.2") for topic in topics),
            )
            for index, topic in enumerate(topics):
                mine, theirs = answers[index], answers[len(topics) + index]
                assert mine == theirs and mine.revision == theirs.revision
                assert await a.placement(topic) == mine
            assert await a.placement("absent") is None
            with pytest.raises(InvalidRequest):
                await a.place_topic("orders", "_cell.64")
            with pytest.raises(InvalidRequest):
                await a.place_topic("bad/name", "_cell")

    run(scenario())


def test_place_topics_spans_transactions_keeps_the_placed_and_is_idempotent(
    etcd_server: EtcdServers,
) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
            cells = cell_names(3)
            wanted = [PlacementRecord(f"t.{index:03}", cells[index % 3]) for index in range(300)]
            # 300 keys: more than etcd takes in one transaction (it refuses over 128 ops).
            assert len(wanted) > 2 * limits.cluster_txn_ops_max
            # Another client placed some already, in other cells: those stay as they are.
            for record in wanted[5:300:60]:
                await b.place_topic(record.topic, "_cell.2" if record.cell != "_cell.2" else "_cell")
            before = {record.topic: record.cell for record in await a.placements()}
            assert await a.place_topics(wanted) == 300 - len(before)
            placed = {record.topic: record.cell for record in await b.placements()}
            assert placed == {record.topic: before.get(record.topic, record.cell) for record in wanted}
            assert await a.place_topics(wanted) == 0  # again: nothing new
            assert {record.topic: record.cell for record in await b.placements()} == placed
            # A topic given twice is refused before etcd is asked: nothing is placed.
            with pytest.raises(InvalidRequest):
                await a.place_topics([PlacementRecord("new", "_cell"), PlacementRecord("new", "_cell.1")])
            assert await a.placement("new") is None

    run(scenario())


def test_move_and_delete_only_from_the_cell_named(etcd_server: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
            placed = await a.place_topic("t", "_cell")
            assert await b.move_placement("t", "_cell.1", "_cell.2") is None  # stale from_cell
            assert await a.placement("t") == PlacementRecord("t", "_cell")
            moved = await b.move_placement("t", "_cell", "_cell.1")
            assert moved == PlacementRecord("t", "_cell.1") and moved.revision > placed.revision
            assert (await a.placement("t")) == moved
            assert await a.move_placement("t", "_cell", "_cell.2") is None  # moved away meanwhile
            assert await a.move_placement("t", "_cell", "_cell.1") is None  # done already, by b
            assert await a.move_placement("absent", "_cell", "_cell.1") is None
            with pytest.raises(InvalidRequest):
                await a.move_placement("t", "_cell.1", "_cell.1")
            assert not await a.delete_placement("t", "_cell")  # it names _cell.1 now
            assert await a.placement("t") == moved
            deleted = await b.delete_placement("t", "_cell.1")
            assert deleted > moved.revision
            assert await a.placement("t") is None
            assert not await b.delete_placement("t", "_cell.1")  # gone already

    run(scenario())


def test_shapes_are_written_listed_and_deleted_only_as_read(etcd_server: EtcdServers) -> None:
    """A cell's Kafka door publishes how it shows its topics (decision 0033): a shape is
    replaced by any later write, and deleted only if it is still the one the deleter read
    (a shape the topic's new cell wrote after a move stays)."""
    incarnation = "0123456789abcdef0123456789abcdef"

    async def scenario() -> None:
        name = unique_cluster_name()
        async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
            assert await a.shape("t") is None and await a.shapes() == {}
            old = ShapeRecord("t", "_cell.1", incarnation, 2)
            revision = await a.put_shape(old)
            found = await b.shape("t")
            assert found == old and found is not None and found.revision == revision
            moved = ShapeRecord("t", "_cell.2", incarnation, 2)
            await b.put_shape(moved)
            assert not await a.delete_shape(old)  # the new cell's shape stays
            assert await a.shapes() == {"t": moved}
            await a.put_shape(ShapeRecord("u", "_cell", incarnation, 1))
            assert sorted(await b.shapes()) == ["t", "u"]
            assert await b.delete_shape(moved)
            assert await a.shape("t") is None and not await a.delete_shape(moved)

    run(scenario())


def test_a_shape_is_checked_and_read_back_as_written() -> None:
    incarnation = "0123456789abcdef0123456789abcdef"
    record = ShapeRecord("orders", "_cell.3", incarnation, 12)
    assert ShapeRecord.decode("orders", record.encode(), 7) == record
    assert ShapeRecord.decode("orders", record.encode(), 7).revision == 7
    body = {"v": 1, "cell": "_cell.3", "incarnation": incarnation, "partitions": 12}
    assert json.loads(record.encode()) == body
    for bad in (
        {"cell": "cell"},
        {"incarnation": "XYZ"},
        {"incarnation": incarnation.upper()},
        {"partitions": 0},
        {"partitions": True},
        {"revision": -1},
    ):
        fields = {"topic": "orders", "cell": "_cell", "incarnation": incarnation, "partitions": 1, **bad}
        with pytest.raises(InvalidRequest):
            ShapeRecord(**fields)  # type: ignore[arg-type]


def test_a_listing_reads_pages_at_one_revision_and_refuses_past_its_bound(
    etcd_server: EtcdServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        async with EtcdCluster(etcd_server.url, name) as a:
            async with EtcdCluster(etcd_server.url, unique_cluster_name()) as elsewhere:
                await elsewhere.place_topic("other", "_cell")
                records = [PlacementRecord(f"p{index:02}", "_cell.1") for index in range(50)]
                assert await a.place_topics(records) == 50
                monkeypatch.setattr(limits, "cluster_placement_page_keys", 7)  # 8 pages
                listed = await a.placements()
                assert listed == records  # by topic, none twice, none of the other cluster
                assert all(record.revision > 0 for record in listed)
                monkeypatch.setattr(limits, "cluster_placements_max", 50)
                assert len(await a.placements()) == 50
                monkeypatch.setattr(limits, "cluster_placements_max", 49)
                with pytest.raises(TooManyPlacements) as refused:
                    await a.placements()
                assert "more than 49 placements" in refused.value.message
                assert not refused.value.retryable

    run(scenario())


def test_a_view_follows_another_clients_placements_moves_and_deletions(etcd_server: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
            await b.place_topic("before", "_cell.2")
            view = PlacementView(3)
            follower = asyncio.create_task(view.follow(a))

            async def cell_is(topic: str, cell: str | None) -> bool | None:
                return True if view.cell_of(topic) == cell else None

            await eventually(lambda: cell_is("before", "_cell.2"), "the listing's placement")
            assert view.listed
            await b.place_topic("orders", "_cell.1")
            await eventually(lambda: cell_is("orders", "_cell.1"), "a placement")
            assert await b.move_placement("orders", "_cell.1", "_cell")
            await eventually(lambda: cell_is("orders", "_cell"), "a move")
            assert view.counts() == {"_cell": 1, "_cell.1": 0, "_cell.2": 1}
            assert await b.delete_placement("before", "_cell.2")
            await eventually(lambda: cell_is("before", None), "a deletion")
            assert view.counts() == {"_cell": 1, "_cell.1": 0, "_cell.2": 0}
            # This agent's own placement goes to the least loaded cell (_cell.1: the first
            # of the empty ones) and is known at once.
            assert await view.place(a, "mine") == "_cell.1"
            assert view.cell_of("mine") == "_cell.1"
            # A thread waiting for a topic another agent places is woken by the watch.
            found: list[str | None] = []
            waiter = threading.Thread(target=lambda: found.append(view.wait_for("later", 60.0)))
            waiter.start()
            await b.place_topic("later", "_cell.2")
            await asyncio.to_thread(waiter.join)
            assert found == ["_cell.2"]
            follower.cancel()
            with pytest.raises(asyncio.CancelledError):
                await follower
            # Watching again after a pause: a deletion made meanwhile is learned from the
            # listing (the view passes what it holds along).
            assert await b.delete_placement("orders", "_cell")
            await b.place_topic("meanwhile", "_cell")
            follower = asyncio.create_task(view.follow(a))
            await eventually(lambda: cell_is("orders", None), "a deletion made while not watching")
            await eventually(lambda: cell_is("meanwhile", "_cell"), "a placement made while not watching")
            assert sorted(record.topic for record in view.records()) == ["later", "meanwhile", "mine"]
            follower.cancel()

    run(scenario())


def test_a_views_own_writes_apply_at_once_without_a_watch(etcd_server: EtcdServers) -> None:
    async def scenario() -> None:
        async with EtcdCluster(etcd_server.url, unique_cluster_name()) as a:
            view = PlacementView(2)  # not following: only its own writes reach it
            assert await view.place(a, "t") == "_cell"
            assert view.cell_of("t") == "_cell" and view.counts() == {"_cell": 1, "_cell.1": 0}
            assert await view.place(a, "u") == "_cell.1"
            assert not await view.move(a, "t", "_cell.1", "_cell")  # not there
            assert await view.move(a, "t", "_cell", "_cell.1")
            assert view.counts() == {"_cell": 0, "_cell.1": 2}
            assert await view.delete(a, "t", "_cell.1")
            assert view.cell_of("t") is None and view.counts() == {"_cell": 0, "_cell.1": 1}
            # Placed by another client first: the view takes the cell etcd answered.
            await a.place_topic("taken", "_cell.1")
            assert await view.place(a, "taken", ["_cell"]) == "_cell.1"

    run(scenario())


def test_a_watch_lists_again_after_etcd_compacted_past_it(tmp_path: Path) -> None:
    with etcd_cluster(tmp_path / "etcd", members=1) as servers:
        member = servers.members[0]

        def compact(revision: int) -> None:
            body = json.dumps({"revision": revision, "physical": True}).encode()
            request = urllib.request.Request(f"{member.endpoint}/v3/kv/compaction", data=body, method="POST")
            with urllib.request.urlopen(request, timeout=10) as answer:
                answer.read()

        async def scenario() -> None:
            name = unique_cluster_name()
            async with EtcdCluster(servers.url, name) as a, EtcdCluster(servers.url, name) as b:
                await b.place_topic("gone", "_cell")
                await b.place_topic("stays", "_cell")
                listings: list[int] = []
                events = a.watch_placements(listed=listings.append)
                first = [await anext(events), await anext(events)]
                assert [(event.topic, event.cell) for event in first] == [
                    ("gone", "_cell"),
                    ("stays", "_cell"),
                ]
                # While the watcher is not watching yet: a deletion, a move and a
                # placement, then the history up to now compacted away.
                assert await b.delete_placement("gone", "_cell")
                assert await b.move_placement("stays", "_cell", "_cell.1")
                placed = await b.place_topic("new", "_cell.2")
                compact(placed.revision)
                # Its watch from the first listing's revision is refused: it lists again.
                again = [await anext(events) for _ in range(3)]
                assert [(event.topic, event.cell) for event in again] == [
                    ("gone", None),
                    ("new", "_cell.2"),
                    ("stays", "_cell.1"),
                ]
                # and watches on from there (the listing told once all of it was taken)
                assert await b.delete_placement("new", "_cell.2")
                event = await anext(events)
                assert (event.topic, event.cell) == ("new", None)
                assert len(listings) == 2 and listings[1] >= placed.revision > listings[0]
                assert {item.revision for item in again} == {listings[1]} and event.revision > listings[1]
                await events.aclose()

        run(scenario())


# --- the view without etcd -------------------------------------------------------------


def test_counts_and_the_least_loaded_cell() -> None:
    view = PlacementView(3)
    assert view.counts() == {"_cell": 0, "_cell.1": 0, "_cell.2": 0}
    assert view.least_loaded() == "_cell"  # a tie: the first cell
    view.reset([PlacementRecord("a", "_cell", 1), PlacementRecord("b", "_cell.2", 2)], revision=2)
    assert view.least_loaded() == "_cell.1"
    assert view.least_loaded(["_cell.2", "_cell"]) == "_cell"  # a tie among those given: cell order
    view.apply(PlacementEvent("c", "_cell.1", 3))
    assert view.least_loaded() == "_cell"
    assert view.least_loaded(["_cell.2", "_cell.1"]) == "_cell.1"
    # A placement in a cell beyond this view's configuration is counted, never chosen.
    view.apply(PlacementEvent("d", "_cell.7", 4))
    assert view.counts() == {"_cell": 1, "_cell.1": 1, "_cell.2": 1, "_cell.7": 1}
    assert view.least_loaded() == "_cell"
    assert view.least_loaded(["_cell.9"]) == "_cell.9"
    view.apply(PlacementEvent("d", None, 5))
    assert "_cell.7" not in view.counts() and len(view) == 3
    with pytest.raises(InvalidRequest):
        view.least_loaded([])
    with pytest.raises(InvalidRequest):
        view.least_loaded(["elsewhere"])
    assert PlacementView(["_cell.2", "_cell"]).cells == ("_cell", "_cell.2")
    for bad in (0, 65, ["_cell", "_cell"], [], ["_cell.64"]):
        with pytest.raises(InvalidRequest):
            PlacementView(bad)  # type: ignore[arg-type]


def test_the_view_never_takes_an_older_change_over_a_newer_one() -> None:
    view = PlacementView(2)
    view.apply(PlacementEvent("t", "_cell", 10))
    # This agent moved it (revision 20) before the watch delivered an older deletion.
    view.apply(PlacementEvent("t", "_cell.1", 20), local=True)
    assert not view.apply(PlacementEvent("t", None, 15))
    assert view.cell_of("t") == "_cell.1"
    # A local deletion is remembered until the watch reaches it: an older placement
    # delivered after it does not bring the topic back.
    view.apply(PlacementEvent("t", None, 30), local=True)
    assert not view.apply(PlacementEvent("t", "_cell", 25))
    assert view.cell_of("t") is None and view.counts() == {"_cell": 0, "_cell.1": 0}
    view.apply(PlacementEvent("t", None, 30))  # the watch reaches it
    assert view.apply(PlacementEvent("t", "_cell", 31))
    assert view.cell_of("t") == "_cell" and view.revision == 31
    # A listing read before a local write keeps the local write.
    view.apply(PlacementEvent("u", "_cell.1", 50), local=True)
    view.reset([PlacementRecord("t", "_cell.1", 40)], revision=45)
    assert (view.cell_of("t"), view.cell_of("u")) == ("_cell.1", "_cell.1")
    view.reset([PlacementRecord("t", "_cell.1", 40)], revision=55)
    assert view.cell_of("u") is None


def test_wait_for_blocks_until_the_topic_is_known_or_the_time_is_up() -> None:
    view = PlacementView(2)
    assert view.wait_for("t", 0.0) is None
    assert not view.wait_listed(0.0)
    found: list[str | None] = []
    waiter = threading.Thread(target=lambda: found.append(view.wait_for("t", 60.0)))
    waiter.start()
    view.apply(PlacementEvent("other", "_cell", 1))
    view.apply(PlacementEvent("t", "_cell.1", 2))
    waiter.join(60.0)
    assert found == ["_cell.1"]
    view.reset([], revision=3)
    assert view.wait_listed(0.0) and view.listed
