"""Kafka transactions writing topics of several cells (decision 0037).

Goal: a transactional producer writing topics held by three cells' doors commits them
all or none. Committed transactions land exactly once in every cell, in transaction
order per topic; aborted ones land nowhere; back-to-back transactions reuse each cell
once it acknowledged the previous one. A participant that restarts with a transaction
open vetoes it: the commit fails as abortable, nothing of it lands anywhere, and the
producer goes on. A participant that is down when the commit is decided applies what it
staged when it comes back. A coordinator that decided a commit but could not tell etcd,
restarted, finishes it in every cell (a restart that finds the decision asks etcd). A
transaction left open past its timeout is aborted in every cell.

Method: the three in-process doors of test_kafka_cells_door.py (their own engines, one
in-memory catalog standing in for etcd's compare-and-swap and watch: the real etcd
path is tests/cluster/test_serve_cells_kafka.py); librdkafka (confluent-kafka) as the
client; each engine read directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_kafka_cells_door import FAST, CatalogCells, Cluster, three_doors
from wire import door_values

from odradek.node import Node
from odradek.protocols.kafka import start_kafka_listener
from odradek.protocols.kafka.codec.errors import ErrorCode

confluent_kafka = pytest.importorskip("confluent_kafka")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with three_doors(tmp_path) as doors:
        yield doors


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def _topics(cluster: Cluster, stem: str) -> list[str]:
    """A topic in each cell: (home, cell 1, cell 2)."""
    names = [f"{stem}.{index}" for index in range(len(cluster.doors))]
    for door, name in zip(cluster.doors, names, strict=True):
        assert cluster.create(door, name).error_code == ErrorCode.NONE
    return names


def _producer(cluster: Cluster, transactional_id: str, **settings: object) -> object:
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": 60_000,
            **FAST,
            **settings,
        }
    )
    producer.init_transactions(30)
    return producer


def _enlistments(cluster: Cluster) -> dict[str, bytes]:
    """Each cell's enlistment value (the tests use one transactional id each)."""
    with cluster.catalog.lock:
        return {cell: value for (_, cell), (value, _) in cluster.catalog.enlistments.items()}


def _stage_in_each(producer: Any, names: list[str], stem: str) -> None:
    """Begin a transaction and stage ``<stem>/<index>`` in each topic, acknowledged."""
    producer.begin_transaction()
    for index, name in enumerate(names):
        producer.produce(name, value=f"{stem}/{index}".encode())
    producer.flush(30)


def _values(cluster: Cluster, names: list[str]) -> list[list[bytes]]:
    return [door_values(door, name) for door, name in zip(cluster.doors, names, strict=True)]


def test_transactions_commit_or_abort_in_every_cell(cluster: Cluster) -> None:
    names = _topics(cluster, "txn.all")
    producer = _producer(cluster, "all-cells")
    expected: list[list[bytes]] = [[] for _ in names]
    for number in range(12):
        producer.begin_transaction()
        for index, name in enumerate(names):
            for record in range(3):
                producer.produce(name, value=f"{number}/{index}/{record}".encode(), key=b"k")
        if number % 4 == 3:
            producer.abort_transaction(30)
            continue
        producer.commit_transaction(30)
        for index in range(len(names)):
            expected[index].extend(f"{number}/{index}/{record}".encode() for record in range(3))
    # Committed transactions land in every cell exactly once, in order; aborted ones
    # nowhere. (A participant applies once its watch tells it: wait for the last.)
    wait_for(lambda: _values(cluster, names) == expected, f"every cell's committed records: {expected}")
    # A transaction writing one other cell only, and one writing the home cell only.
    producer.begin_transaction()
    producer.produce(names[2], value=b"only-two")
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(names[0], value=b"only-home")
    producer.commit_transaction(30)
    expected[2].append(b"only-two")
    expected[0].append(b"only-home")
    wait_for(lambda: _values(cluster, names) == expected, "the single-cell transactions' records")
    # What etcd holds: one enlistment per other cell, each acknowledged.
    assert set(_enlistments(cluster)) == {"_cell.1", "_cell.2"}
    wait_for(
        lambda: all(b'"committed"' in value for value in _enlistments(cluster).values()),
        "every enlistment acknowledged",
    )


def _restart(cluster: Cluster, index: int) -> None:
    """Close the door of cell ``index`` and open it again on the same port and files."""
    door = cluster.doors[index]
    port = door.port
    door.listener.close()
    door.node.close()
    node = Node.open(door.engine.path, fsync=False)
    door.node = node
    door.listener = start_kafka_listener(
        node, "127.0.0.1", port, cells=CatalogCells(cluster.catalog, door.cell)
    )


def test_a_participant_restarted_with_the_transaction_open_vetoes_it(cluster: Cluster) -> None:
    names = _topics(cluster, "txn.veto")
    producer = _producer(cluster, "vetoed")
    _stage_in_each(producer, names, "first")
    producer.commit_transaction(30)  # a commit before: its sequences must be the ones after
    _stage_in_each(producer, names, "lost")  # staged everywhere, acknowledged
    _restart(cluster, 1)  # finds the transaction open: vetoes it
    with pytest.raises(confluent_kafka.KafkaException) as refused:
        producer.commit_transaction(30)
    error = refused.value.args[0]
    assert error.txn_requires_abort() and not error.fatal(), error
    producer.abort_transaction(30)
    producer.begin_transaction()
    for index, name in enumerate(names):
        producer.produce(name, value=f"kept/{index}".encode())
    producer.commit_transaction(30)
    expected = [[f"first/{index}".encode(), f"kept/{index}".encode()] for index in range(len(names))]
    wait_for(lambda: _values(cluster, names) == expected, "the transactions either side of it, whole")


def test_a_participant_down_at_the_commit_applies_it_when_back(cluster: Cluster) -> None:
    names = _topics(cluster, "txn.down")
    producer = _producer(cluster, "down")
    _stage_in_each(producer, names, "late")
    door = cluster.doors[2]
    door.listener.close()  # down: the commit is decided without it
    producer.commit_transaction(30)
    assert door_values(cluster.doors[0], names[0]) == [b"late/0"]
    port = door.port
    door.listener = start_kafka_listener(
        door.node, "127.0.0.1", port, cells=CatalogCells(cluster.catalog, door.cell)
    )
    wait_for(lambda: door_values(door, names[2]) == [b"late/2"], "the commit applied by the returning cell")
    wait_for(lambda: door_values(cluster.doors[1], names[1]) == [b"late/1"], "the commit applied by cell 1")


def test_a_coordinator_restarted_between_its_decision_and_etcd_finishes_the_commit(
    cluster: Cluster,
) -> None:
    names = _topics(cluster, "txn.undecided")
    producer = _producer(cluster, "undecided")
    _stage_in_each(producer, names, "decided")
    cluster.catalog.refuse_commits = True  # the coordinator's decision is durable, etcd is not told
    committing = threading.Thread(target=producer.commit_transaction, args=(60,), daemon=True)
    committing.start()  # librdkafka retries EndTxn (COORDINATOR_NOT_AVAILABLE) meanwhile
    wait_for(lambda: _state_of(cluster, "_cell.1") == b"ongoing", "the transaction enlisted, not decided")
    time.sleep(0.5)
    assert _values(cluster, names) == [[], [], []]
    cluster.catalog.refuse_commits = False
    _restart(cluster, 0)  # the new coordinator finds the decision and asks etcd: still ongoing, so commit
    expected = [[f"decided/{index}".encode()] for index in range(len(names))]
    wait_for(lambda: _values(cluster, names) == expected, "the decided commit applied in every cell")
    committing.join(60)
    assert not committing.is_alive()
    producer.begin_transaction()  # and the producer goes on
    producer.produce(names[1], value=b"after")
    producer.commit_transaction(30)
    expected[1].append(b"after")
    wait_for(lambda: _values(cluster, names) == expected, "the next transaction's records")


def _state_of(cluster: Cluster, cell: str) -> bytes | None:
    value = _enlistments(cluster).get(cell)
    if value is None:
        return None
    return bytes(value.split(b'"state":"')[1].split(b'"')[0])


def test_a_transaction_past_its_timeout_is_aborted_in_every_cell(cluster: Cluster) -> None:
    names = _topics(cluster, "txn.timeout")
    producer = _producer(cluster, "slow", **{"transaction.timeout.ms": 1500})
    _stage_in_each(producer, names, "slow")
    time.sleep(3.0)  # the coordinator aborts it and fences the producer (checked every second)
    with pytest.raises(confluent_kafka.KafkaException):
        producer.commit_transaction(30)
    wait_for(
        lambda: all(b'"aborted"' in value for value in _enlistments(cluster).values()),
        "every cell acknowledged the abort",
    )
    assert _values(cluster, names) == [[], [], []]
