"""Kafka transactions writing topics of several cells (decision 0037).

Goal: a transactional producer writing topics held by three cells' doors commits them
all or none. Committed transactions land exactly once in every cell, in transaction
order per topic; aborted ones land nowhere; back-to-back transactions reuse each cell
once it acknowledged the previous one. A participant that restarts with a transaction
open vetoes it: the commit fails as abortable, nothing of it lands anywhere, and the
producer goes on. A participant that is down when the commit is decided applies what it
staged when it comes back; one that could not make its part of a commit durable when
told (a staging write failed) makes it durable, applies it and acknowledges it at its
next check, not once the transaction's timeout has passed twice. A door whose cell is
served at a newer epoch (a paused agent waking) changes no enlistment: told of a commit
it staged nothing of, it does not acknowledge it for the cell, whose owner has the
records. A coordinator that decided a commit but could not tell etcd,
restarted, finishes it in every cell (a restart that finds the decision asks etcd). A
transaction left open past its timeout is aborted in every cell.

Method: the three in-process doors of test_kafka_cells_door.py (their own engines, one
in-memory catalog standing in for etcd's compare-and-swap and watch: the real etcd
path is tests/cluster/test_serve_cells_kafka.py); librdkafka (confluent-kafka) as the
client; each engine read directly.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_kafka_cells_door import FAST, CatalogCells, Cluster, three_doors
from wire import door_values

from odradek.errors import StorageError
from odradek.node import Node
from odradek.protocols.kafka import start_kafka_listener
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.staging import StageFile
from odradek.protocols.kafka.txn_cells import COMMIT, Enlistment

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
    _restart(cluster, 1)  # finds the transaction open: vetoes it (in the background)
    wait_for(lambda: _state_of(cluster, "_cell.1") == b"aborted", "cell 1's veto")
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


def test_a_participant_whose_commit_failed_here_finishes_it_at_its_next_check(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = _topics(cluster, "txn.retried")
    producer = _producer(cluster, "retried")  # a 60 s timeout: the veto's look comes after 120 s
    participant = str(cluster.doors[1].engine.path)
    failed: list[str] = []
    refusing = threading.Event()
    refusing.set()
    decide = StageFile.decide

    def failing(self: StageFile, decision: dict[str, Any], frames: bytes = b"") -> None:
        if str(self.path).startswith(participant) and refusing.is_set():
            failed.append(self.path)
            raise StorageError(f"could not sync {self.path}: the disk refused it (injected)")
        decide(self, decision, frames)

    monkeypatch.setattr(StageFile, "decide", failing)
    _stage_in_each(producer, names, "first")
    producer.commit_transaction(30)  # decided: cell 1 is told, and cannot write its decision
    wait_for(lambda: bool(failed), "cell 1's try to write its decision")
    time.sleep(0.5)  # every look the change caused has ended
    refusing.clear()
    expected = [[f"first/{index}".encode()] for index in range(len(names))]
    wait_for(lambda: _values(cluster, names) == expected, "the commit applied in every cell", timeout=20)
    wait_for(lambda: _state_of(cluster, "_cell.1") == b"committed", "cell 1's acknowledgement", timeout=20)
    _stage_in_each(producer, names, "next")  # the cell is enlisted again
    producer.commit_transaction(30)
    for index in range(len(names)):
        expected[index].append(f"next/{index}".encode())
    wait_for(lambda: _values(cluster, names) == expected, "the next transaction's records", timeout=20)


def _decide_elsewhere(cluster: Cluster, cell: str) -> None:
    """Put a commit of the id's next transaction in ``cell``'s enlistment, as a
    coordinator deciding one this cell's door never saw (its newer owner staged it)."""
    catalog = cluster.catalog
    with catalog.lock:
        ((hashed, _), (value, revision)) = next(
            (key, held) for key, held in catalog.enlistments.items() if key[1] == cell
        )
        held = Enlistment.decode(value, revision)
        decided = dataclasses.replace(held, number=held.number + 1, state=COMMIT).encode()
        catalog.revision += 1
        catalog.enlistments[(hashed, cell)] = (decided, catalog.revision)
        followers, landed = list(catalog.followers), catalog.revision
    for notify in followers:
        notify(hashed, cell, decided, landed)


def test_a_door_whose_cell_moved_on_acknowledges_nothing_for_it(cluster: Cluster) -> None:
    names = _topics(cluster, "txn.zombie")
    producer = _producer(cluster, "zombie")
    _stage_in_each(producer, names, "first")
    producer.commit_transaction(30)
    wait_for(lambda: _state_of(cluster, "_cell.1") == b"committed", "cell 1's acknowledgement")
    # Its owner, told of a commit it staged nothing of, acknowledges it.
    _decide_elsewhere(cluster, "_cell.1")
    wait_for(lambda: _state_of(cluster, "_cell.1") == b"committed", "the owner's acknowledgement")
    # Cell 1 is served at a newer epoch now: its door here is a zombie. Told of a commit
    # that the new owner staged, it must leave it for that owner to apply.
    with cluster.catalog.lock:
        cluster.catalog.owners["_cell.1"] += 1
    _decide_elsewhere(cluster, "_cell.1")
    time.sleep(1.5)  # its watch told it at once, and its check looks again every second
    assert _state_of(cluster, "_cell.1") == b"commit"
    _restart(cluster, 1)  # the owner at the new epoch (its door opens under it)
    wait_for(lambda: _state_of(cluster, "_cell.1") == b"committed", "the new owner's acknowledgement")


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
