"""The Kafka door of one cell of several, as Kafka clients see it (decision 0033).

Goal: three doors, each serving one cell of a cluster whose topics are spread over
cells, behave as the brokers of one Kafka cluster. Metadata at any door lists every door
as a broker (broker id = cell index + 1) and every topic with its cell's broker as the
leader, its incarnation as its id and the partition count its door published; the
cluster id is the same at every door. A door publishes by itself the shapes of topics
made in its engine by other paths; until it has, another door answers such a topic
LEADER_NOT_AVAILABLE and creates nothing. A Produce, Fetch, ListOffsets, DeleteRecords
or DescribeProducers for a topic of another cell is answered NOT_LEADER_OR_FOLLOWER and
writes nothing, and librdkafka's producer and admin client bootstrapped on all doors go
to each topic's cell. Groups live in
the home cell: FindCoordinator at any door names broker 1, a group request at another
door closes the connection, and a consumer group (classic, and KIP-848's) reads topics
of two cells and commits them at broker 1; kafka-python's clients, told of one door,
find the others. Idempotent producer ids are unique per cell (above ``index << 48``),
and a transactional InitProducerId at another door closes the connection. A topic
created at a door (CreateTopics or Metadata's auto-creation) is placed in that door's
cell and its shape published; one placed in another cell is TOPIC_ALREADY_EXISTS (to
a CreateTopics that only validates too) and is not created; one the door's engine
refuses (a name reserved for the system, a topic beyond its count) is placed in no cell,
so that another door can create it; DeleteTopics of another cell's topic is refused,
naming `odradek topic delete`, and deletes nothing; CreatePartitions and the config
requests of another cell's topic are refused naming its broker, and change nothing. A
share group subscribing to another cell's topic is refused, saying share groups read
the home cell's topics.
DescribeCluster lists every door.

Method: three in-process listeners (their own engines, in separate directories) given
``cells`` objects of one in-memory catalog: placements, published shapes and the doors'
addresses, what etcd holds for the cluster agents (cluster/kafka_seat.py, covered
end to end by tests/cluster/test_serve_cells_kafka.py). librdkafka (confluent-kafka)
and kafka-python as the clients; raw requests with the door's own codec (wire.py) for
the exact codes and for the connections a door closes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from wire import Wire, door_values

from odradek.errors import Fenced, Unavailable
from odradek.node import Node
from odradek.ports import free_ports
from odradek.protocols.kafka import KafkaListenerHandle, start_kafka_listener
from odradek.protocols.kafka.cells import PRODUCER_ID_SHIFT, node_of_cell
from odradek.protocols.kafka.codec import messages_admin as a
from odradek.protocols.kafka.codec import messages_data as d
from odradek.protocols.kafka.codec import messages_groups as g
from odradek.protocols.kafka.codec import messages_logs as logs
from odradek.protocols.kafka.codec import messages_share as share
from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.records import encode_batch
from odradek.records import STORED_SCHEMA

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]  # noqa: E402

CELLS = ["_cell", "_cell.1", "_cell.2"]
FAST = {"topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 200}


# -- the cluster's catalog, in memory ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ShapeRecord:
    """How a cell's door shows one of its topics (cluster/keys.py's ShapeRecord)."""

    topic: str
    cell: str
    incarnation: str
    partitions: int


class Catalog:
    """What etcd holds for the cluster's doors: each topic's cell, each topic's shape
    as its cell's door published it, and each cell's door address."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cluster_id = f"cells-{uuid.uuid4().hex[:12]}"
        self.placements: dict[str, str] = {}
        self.shapes: dict[str, ShapeRecord] = {}
        self.doors: dict[str, tuple[str, int]] = {}  # cell: (host, port)
        # Transactions' enlistments (txn_cells.py): (id hash, cell): (value, revision),
        # compared and swapped as etcd does, and told to every door following them.
        self.enlistments: dict[tuple[str, str], tuple[bytes, int]] = {}
        self.revision = 0
        self.followers: list[Callable[[str | None, str | None, bytes | None, int], None]] = []
        # A test sets this to make swaps that commit fail as etcd out of reach would.
        self.refuse_commits = False
        # Each cell's owner epoch: a door's swaps are fenced by the one it opened under,
        # as its agent's ownership of the cell fences them in etcd (a test raises one
        # to make a door a zombie).
        self.owners: dict[str, int] = {}


class CatalogCells:
    """One cell's door's view of the catalog (the door's ``KafkaCells``)."""

    def __init__(self, catalog: Catalog, cell: str) -> None:
        self.catalog = catalog
        self.cell = cell
        self.node_id = node_of_cell(cell)
        self.cluster_id = catalog.cluster_id
        with catalog.lock:
            self.epoch = catalog.owners.setdefault(cell, 1)

    def nodes(self) -> list[tuple[int, str, int]]:
        with self.catalog.lock:
            return sorted(
                (node_of_cell(cell), host, port) for cell, (host, port) in self.catalog.doors.items()
            )

    def coordinator(self) -> tuple[int, str, int] | None:
        return next((node for node in self.nodes() if node[0] == 1), None)

    def placed_node(self, topic: str) -> int | None:
        with self.catalog.lock:
            cell = self.catalog.placements.get(topic)
        return None if cell is None else node_of_cell(cell)

    def shapes(self) -> dict[str, ShapeRecord]:
        with self.catalog.lock:
            return dict(self.catalog.shapes)

    def shape(self, topic: str) -> ShapeRecord | None:
        with self.catalog.lock:
            return self.catalog.shapes.get(topic)

    def publish(self, shapes: dict[str, tuple[str, int]]) -> int:
        changes = 0
        with self.catalog.lock:
            known = self.catalog.shapes
            for topic, (incarnation, partitions) in shapes.items():
                record = ShapeRecord(topic, self.cell, incarnation, partitions)
                if known.get(topic) != record:
                    known[topic] = record
                    changes += 1
            for topic in [t for t, record in known.items() if record.cell == self.cell and t not in shapes]:
                del known[topic]
                changes += 1
        return changes

    def claim(self, topic: str) -> bool:
        with self.catalog.lock:
            return self.catalog.placements.setdefault(topic, self.cell) == self.cell

    def release(self, topic: str) -> None:
        with self.catalog.lock:
            if self.catalog.placements.get(topic) == self.cell:
                del self.catalog.placements[topic]

    def enlistments(self, hashed: str) -> dict[str, tuple[bytes, int]]:
        with self.catalog.lock:
            return {cell: held for (key, cell), held in self.catalog.enlistments.items() if key == hashed}

    def swap_enlistments(self, hashed: str, changes: dict[str, tuple[bytes, int]]) -> dict[str, int] | None:
        catalog = self.catalog
        if catalog.refuse_commits and any(b'"state":"commit"' in value for value, _ in changes.values()):
            raise Unavailable("etcd is out of reach (the test says so)")
        with catalog.lock:
            if catalog.owners[self.cell] != self.epoch:
                raise Fenced(f"cell {self.cell} is served at another epoch now (as OwnershipLost)")
            for cell, (_, revision) in changes.items():
                held = catalog.enlistments.get((hashed, cell))
                if (0 if held is None else held[1]) != revision:
                    return None
            catalog.revision += 1
            for cell, (value, _) in changes.items():
                catalog.enlistments[(hashed, cell)] = (value, catalog.revision)
            followers = list(catalog.followers)
            landed = dict.fromkeys(changes, catalog.revision)
        for notify in followers:
            for cell, (value, _) in changes.items():
                notify(hashed, cell, value, landed[cell])
        return landed

    def follow_enlistments(
        self, notify: Callable[[str | None, str | None, bytes | None, int], None]
    ) -> Callable[[], None]:
        with self.catalog.lock:
            self.catalog.followers.append(notify)
        notify(None, None, None, 0)

        def stop() -> None:
            with self.catalog.lock:
                self.catalog.followers.remove(notify)

        return stop


# -- three doors ----------------------------------------------------------------------


@dataclasses.dataclass
class CellDoor:
    cell: str
    node: Node
    listener: KafkaListenerHandle

    @property
    def engine(self) -> Any:
        return self.node.engine

    @property
    def node_id(self) -> int:
        return node_of_cell(self.cell)

    @property
    def port(self) -> int:
        return self.listener.port

    def wire(self) -> Wire:
        return Wire(self.port)


@dataclasses.dataclass
class Cluster:
    catalog: Catalog
    doors: list[CellDoor]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{door.port}" for door in self.doors)

    def create(
        self, door: CellDoor, name: str, partitions: int = 1, *, validate_only: bool = False
    ) -> a.CreatableTopicResult:
        """CreateTopics of ``name`` at ``door``."""
        wire = door.wire()
        try:
            response = wire.call(
                ApiKey.CREATE_TOPICS,
                7,
                a.CreateTopicsRequest(
                    topics=(
                        a.CreatableTopic(
                            name=name,
                            num_partitions=partitions,
                            replication_factor=1,
                            assignments=(),
                            configs=(),
                        ),
                    ),
                    timeout_ms=5000,
                    validate_only=validate_only,
                ),
            )
        finally:
            wire.close()
        result: a.CreatableTopicResult = response.topics[0]
        return result


@contextlib.contextmanager
def three_doors(directory: Path, **engine_options: Any) -> Iterator[Cluster]:
    """A door per cell over engines of their own in ``directory``, one catalog."""
    catalog = Catalog()
    ports = free_ports(len(CELLS))
    with catalog.lock:  # every door's address is known before any starts
        catalog.doors.update({cell: ("127.0.0.1", port) for cell, port in zip(CELLS, ports, strict=True)})
    doors: list[CellDoor] = []
    try:
        for cell, port in zip(CELLS, ports, strict=True):
            node = Node.open(os.path.join(directory, cell), fsync=False, **engine_options)
            try:
                listener = start_kafka_listener(node, "127.0.0.1", port, cells=CatalogCells(catalog, cell))
            except BaseException:
                node.close()
                raise
            doors.append(CellDoor(cell, node, listener))
        yield Cluster(catalog, doors)
    finally:
        for door in doors:
            door.listener.close()
            door.node.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with three_doors(tmp_path) as doors:
        yield doors


@pytest.fixture
def topic_name() -> str:
    return f"orders.t{uuid.uuid4().hex[:8]}"


def metadata(
    door: CellDoor, names: list[str] | None = None, *, auto_create: bool = False
) -> d.MetadataResponse:
    wire = door.wire()
    try:
        topics = None if names is None else tuple(d.MetadataRequestTopic(name=name) for name in names)
        response: d.MetadataResponse = wire.call(
            ApiKey.METADATA, 12, d.MetadataRequest(topics=topics, allow_auto_topic_creation=auto_create)
        )
    finally:
        wire.close()
    return response


def closes_connection(door: CellDoor, api_key: int, version: int, body: Any) -> bool:
    """Whether ``door`` closes the connection of this request instead of answering it
    (a connection answering ApiVersions first: the door serves it otherwise)."""
    wire = door.wire()
    try:
        versions = wire.call(ApiKey.API_VERSIONS, 3, d.ApiVersionsRequest(client_software_name="t"))
        assert versions.error_code == ErrorCode.NONE
        wire.send(api_key, version, body)
        try:
            return wire.sock.recv(4) == b""
        except ConnectionResetError:
            return True
    finally:
        wire.close()


def one_record(value: bytes) -> bytes:
    row = {"offset": 0, "timestamp": 1_000_000, "key": None, "value": value, "headers": None, "version": None}
    return encode_batch(pa.RecordBatch.from_pylist([row], schema=STORED_SCHEMA), base_offset=0)


def produce_once(door: CellDoor, topic: str, value: bytes) -> int:
    """A Produce of one keyless record to partition 0 of ``topic`` at ``door``: its code."""
    wire = door.wire()
    try:
        response = wire.call(
            ApiKey.PRODUCE,
            9,
            d.ProduceRequest(
                acks=-1,
                timeout_ms=5000,
                topic_data=(
                    d.TopicProduceData(
                        name=topic,
                        partition_data=(d.PartitionProduceData(index=0, records=one_record(value)),),
                    ),
                ),
            ),
        )
    finally:
        wire.close()
    return int(response.responses[0].partition_responses[0].error_code)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


# -- 1. Metadata ----------------------------------------------------------------------


def test_metadata_at_every_door_names_each_topics_cell_as_its_leader(
    cluster: Cluster, topic_name: str
) -> None:
    topics = {f"{topic_name}.{index}": (door, index + 1) for index, door in enumerate(cluster.doors)}
    for name, (door, partitions) in topics.items():
        assert cluster.create(door, name, partitions).error_code == ErrorCode.NONE
    expected_brokers = [(door.node_id, "127.0.0.1", door.port) for door in cluster.doors]
    assert [node for node, _, _ in expected_brokers] == [1, 2, 3]
    cluster_ids = set()
    for asked in cluster.doors:
        for listing in (metadata(asked), metadata(asked, sorted(topics))):
            assert [(b.node_id, b.host, b.port) for b in listing.brokers] == expected_brokers
            cluster_ids.add(listing.cluster_id)
            shown = {t.name: t for t in listing.topics}
            assert set(topics) <= set(shown)
            for name, (holder, partitions) in topics.items():
                topic = shown[name]
                assert topic.error_code == ErrorCode.NONE, (asked.cell, name)
                assert topic.topic_id == uuid.UUID(hex=holder.engine.describe_topic(name).incarnation)
                assert [p.partition_index for p in topic.partitions] == list(range(partitions))
                assert {p.leader_id for p in topic.partitions} == {holder.node_id}, (asked.cell, name)
                assert {p.replica_nodes for p in topic.partitions} == {(holder.node_id,)}
    # One cluster: every door gives the catalog's id, not its own store's.
    assert cluster_ids == {cluster.catalog.cluster_id}
    # Asked by id (Metadata v12), a door names another cell's topic and its leader.
    for name, (holder, partitions) in topics.items():
        topic_id = uuid.UUID(hex=holder.engine.describe_topic(name).incarnation)
        for asked in cluster.doors:
            wire = asked.wire()
            try:
                by_id = wire.call(
                    ApiKey.METADATA,
                    12,
                    d.MetadataRequest(topics=(d.MetadataRequestTopic(topic_id=topic_id, name=None),)),
                )
            finally:
                wire.close()
            (topic,) = by_id.topics
            assert (topic.error_code, topic.name, len(topic.partitions)) == (ErrorCode.NONE, name, partitions)
            assert {p.leader_id for p in topic.partitions} == {holder.node_id}

    # librdkafka, bootstrapped on one door, sees the same cluster.
    listing = AdminClient({"bootstrap.servers": f"127.0.0.1:{cluster.doors[2].port}", **FAST}).list_topics(
        timeout=10
    )
    assert listing.cluster_id == cluster.catalog.cluster_id
    assert sorted((b.id, b.port) for b in listing.brokers.values()) == [
        (n, p) for n, _, p in expected_brokers
    ]
    for name, (holder, partitions) in topics.items():
        assert {p.id: p.leader for p in listing.topics[name].partitions.values()} == dict.fromkeys(
            range(partitions), holder.node_id
        )


def test_shapes_of_topics_made_outside_the_kafka_door(cluster: Cluster, topic_name: str) -> None:
    """A topic placed in a cell and created in its engine by another path (as `odradek
    topic create` does) is shown once its door has published its shape, which it does
    by itself; until then the other doors answer LEADER_NOT_AVAILABLE, and create nothing."""
    home, _, third = cluster.doors
    catalog = cluster.catalog
    with catalog.lock:
        catalog.placements[topic_name] = "_cell.2"
    waiting = metadata(home, [topic_name], auto_create=True).topics[0]
    assert waiting.error_code == ErrorCode.LEADER_NOT_AVAILABLE
    assert topic_name not in home.engine.list_topics()
    third.engine.create_topic(topic_name)
    incarnation = third.engine.describe_topic(topic_name).incarnation

    def shown() -> bool:
        topic = metadata(home, [topic_name]).topics[0]
        return topic.error_code == ErrorCode.NONE and {p.leader_id for p in topic.partitions} == {3}

    wait_for(shown, "the shape of a topic created in the third cell's engine")
    assert catalog.shapes[topic_name] == ShapeRecord(topic_name, "_cell.2", incarnation, 1)
    # Deleted there the same way: its shape goes too.
    third.engine.delete_topic(topic_name)
    wait_for(lambda: topic_name not in catalog.shapes, "the shape of a deleted topic removed")


# -- 2. Produce, Fetch and ListOffsets go to the topic's cell ---------------------------


def test_data_requests_for_another_cells_topic_are_not_leader(cluster: Cluster, topic_name: str) -> None:
    home, second, third = cluster.doors
    assert cluster.create(second, topic_name).error_code == ErrorCode.NONE
    assert produce_once(second, topic_name, b"here") == ErrorCode.NONE
    for door in (home, third):
        assert produce_once(door, topic_name, b"elsewhere") == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert topic_name not in door.engine.list_topics(), "a Produce at the wrong door created the topic"
    # A topic no cell holds is unknown, not another cell's.
    assert produce_once(home, topic_name + ".none", b"x") == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert door_values(second, topic_name) == [b"here"]

    topic_id = metadata(home, [topic_name]).topics[0].topic_id
    wire = third.wire()
    try:
        partition = d.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)
        by_name = wire.call(
            ApiKey.FETCH,
            12,
            d.FetchRequest(
                max_wait_ms=0,
                min_bytes=0,
                max_bytes=1 << 20,
                topics=(d.FetchTopic(topic=topic_name, partitions=(partition,)),),
            ),
        )
        assert by_name.responses[0].partitions[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        by_id = wire.call(
            ApiKey.FETCH,
            16,
            d.FetchRequest(
                max_wait_ms=0,
                min_bytes=0,
                max_bytes=1 << 20,
                topics=(d.FetchTopic(topic_id=topic_id, partitions=(partition,)),),
            ),
        )
        assert by_id.responses[0].partitions[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        offsets = wire.call(
            ApiKey.LIST_OFFSETS,
            7,
            d.ListOffsetsRequest(
                replica_id=-1,
                topics=(
                    d.ListOffsetsTopic(
                        name=topic_name, partitions=(d.ListOffsetsPartition(partition_index=0, timestamp=-1),)
                    ),
                ),
            ),
        )
        assert offsets.topics[0].partitions[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        # DeleteRecords and DescribeProducers go to the leader too.
        deleted = wire.call(
            ApiKey.DELETE_RECORDS,
            2,
            logs.DeleteRecordsRequest(
                topics=(
                    logs.DeleteRecordsTopic(
                        name=topic_name,
                        partitions=(logs.DeleteRecordsPartition(partition_index=0, offset=-1),),
                    ),
                ),
                timeout_ms=5000,
            ),
        )
        assert deleted.topics[0].partitions[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        producers = wire.call(
            ApiKey.DESCRIBE_PRODUCERS,
            0,
            logs.DescribeProducersRequest(
                topics=(logs.DescribeProducersTopicRequest(name=topic_name, partition_indexes=(0,)),)
            ),
        )
        assert producers.topics[0].partitions[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    finally:
        wire.close()
    assert door_values(second, topic_name) == [b"here"]
    # librdkafka's AdminClient on every door deletes records at the leader.
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap, **FAST})
    future = admin.delete_records([confluent_kafka.TopicPartition(topic_name, 0, 1)])
    assert future[confluent_kafka.TopicPartition(topic_name, 0, 1)].result(timeout=10).low_watermark == 1


def test_a_producer_on_every_door_writes_each_topic_in_its_cell(cluster: Cluster, topic_name: str) -> None:
    names = {f"{topic_name}.{index}": door for index, door in enumerate(cluster.doors)}
    for name, door in names.items():
        assert cluster.create(door, name, 2).error_code == ErrorCode.NONE
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": cluster.bootstrap, "enable.idempotence": True, "linger.ms": 5, **FAST}
    )
    errors: list[str] = []

    def report(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(f"{message.topic()}: {error}")

    for number in range(20):
        for name in names:
            producer.produce(
                name, key=f"k{number}".encode(), value=f"{name}/{number}".encode(), on_delivery=report
            )
    assert producer.flush(30) == 0
    assert not errors, errors
    for name, holder in names.items():
        assert sorted(door_values(holder, name)) == sorted(f"{name}/{n}".encode() for n in range(20))
        for door in cluster.doors:
            if door is not holder:
                assert name not in door.engine.list_topics(), (name, door.cell)


# -- 3. groups live in the home cell ---------------------------------------------------


def test_groups_are_coordinated_by_the_home_cells_door(cluster: Cluster, topic_name: str) -> None:
    home, second, third = cluster.doors
    for door in (second, third):
        wire = door.wire()
        try:
            new = wire.call(
                ApiKey.FIND_COORDINATOR,
                4,
                g.FindCoordinatorRequest(key_type=0, coordinator_keys=("readers",)),
            )
            (found,) = new.coordinators
            assert (found.error_code, found.node_id, found.host, found.port) == (
                ErrorCode.NONE,
                1,
                "127.0.0.1",
                home.port,
            )
            old = wire.call(ApiKey.FIND_COORDINATOR, 3, g.FindCoordinatorRequest(key="tx", key_type=1))
            assert (old.error_code, old.node_id, old.port) == (ErrorCode.NONE, 1, home.port)
        finally:
            wire.close()

    assert cluster.create(second, topic_name).error_code == ErrorCode.NONE
    join = g.JoinGroupRequest(
        group_id="readers",
        session_timeout_ms=10_000,
        rebalance_timeout_ms=10_000,
        member_id="",
        protocol_type="consumer",
        protocols=(g.JoinGroupRequestProtocol(name="range", metadata=b""),),
    )
    commit = g.OffsetCommitRequest(
        group_id="readers",
        member_id="",
        topics=(
            g.OffsetCommitRequestTopic(
                name=topic_name,
                partitions=(g.OffsetCommitRequestPartition(partition_index=0, committed_offset=1),),
            ),
        ),
    )
    assert closes_connection(second, ApiKey.JOIN_GROUP, 5, join)
    assert closes_connection(second, ApiKey.OFFSET_COMMIT, 8, commit)
    # The home cell's door answers the same requests (the test of the closing above).
    assert not closes_connection(home, ApiKey.OFFSET_COMMIT, 8, commit)


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_a_group_reads_topics_of_two_cells_and_commits_at_the_home_door(
    cluster: Cluster, topic_name: str, protocol: str
) -> None:
    home, second, _ = cluster.doors
    mine, theirs = f"{topic_name}.home", f"{topic_name}.second"
    assert cluster.create(home, mine).error_code == ErrorCode.NONE
    assert cluster.create(second, theirs, 2).error_code == ErrorCode.NONE
    home.engine.append(mine, [{"value": f"m{n}".encode()} for n in range(5)])
    second.engine.append(theirs, [{"key": f"k{n}".encode(), "value": f"t{n}".encode()} for n in range(8)])
    group = f"readers-{topic_name}"
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": group,
            "group.protocol": protocol,  # consumer: KIP-848's ConsumerGroupHeartbeat
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
            **({"session.timeout.ms": 6000, "heartbeat.interval.ms": 200} if protocol == "classic" else {}),
            **FAST,
        }
    )
    got: dict[str, list[bytes]] = {}
    try:
        consumer.subscribe([mine, theirs])
        deadline = time.monotonic() + 30
        while sum(len(values) for values in got.values()) < 13:
            assert time.monotonic() < deadline, f"the group read {got}"
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            got.setdefault(message.topic(), []).append(message.value())
        consumer.commit(asynchronous=False)
        committed = consumer.committed(
            [confluent_kafka.TopicPartition(theirs, 0), confluent_kafka.TopicPartition(theirs, 1)], timeout=10
        )
    finally:
        consumer.close()
    assert sorted(got[mine]) == [f"m{n}".encode() for n in range(5)]
    assert sorted(got[theirs]) == sorted(f"t{n}".encode() for n in range(8))
    # The committed positions of the other cell's topic: the end of each partition.
    high = {}
    wire = second.wire()
    try:
        for partition in (0, 1):
            answer = wire.call(
                ApiKey.LIST_OFFSETS,
                7,
                d.ListOffsetsRequest(
                    replica_id=-1,
                    topics=(
                        d.ListOffsetsTopic(
                            name=theirs,
                            partitions=(d.ListOffsetsPartition(partition_index=partition, timestamp=-1),),
                        ),
                    ),
                ),
            )
            high[partition] = answer.topics[0].partitions[0].offset
    finally:
        wire.close()
    assert {tp.partition: tp.offset for tp in committed} == high
    assert sum(high.values()) > 0

    # Stored at the home cell's door: OffsetFetch there answers them; the door of the
    # topic's own cell does not serve offsets at all.
    fetch = g.OffsetFetchRequest(
        group_id=group, topics=(g.OffsetFetchRequestTopic(name=theirs, partition_indexes=(0, 1)),)
    )
    wire = home.wire()
    try:
        response = wire.call(ApiKey.OFFSET_FETCH, 6, fetch)
    finally:
        wire.close()
    assert response.error_code == ErrorCode.NONE
    assert {p.partition_index: (p.error_code, p.committed_offset) for p in response.topics[0].partitions} == {
        partition: (ErrorCode.NONE, offset) for partition, offset in high.items()
    }
    assert closes_connection(second, ApiKey.OFFSET_FETCH, 6, fetch)
    # Every committed offset of the group (an OffsetFetch naming no topic), as an admin
    # client on every door lists them: the other cell's topic's too.
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap, **FAST})
    listed = admin.list_consumer_group_offsets([confluent_kafka.ConsumerGroupTopicPartitions(group)])
    offsets = listed[group].result(timeout=10).topic_partitions
    assert {(tp.topic, tp.partition): tp.offset for tp in offsets if tp.topic == theirs} == {
        (theirs, partition): offset for partition, offset in high.items()
    }
    assert {(tp.topic, tp.partition): tp.offset for tp in offsets if tp.topic == mine} == {(mine, 0): 5}


def test_a_share_group_of_another_cells_topic_is_refused_clearly(cluster: Cluster, topic_name: str) -> None:
    home, second, _ = cluster.doors
    here, there = f"{topic_name}.home", f"{topic_name}.there"
    assert cluster.create(home, here).error_code == ErrorCode.NONE
    assert cluster.create(second, there).error_code == ErrorCode.NONE
    wire = home.wire()
    try:

        def join(*topics: str) -> Any:
            return wire.call(
                ApiKey.SHARE_GROUP_HEARTBEAT,
                1,
                share.ShareGroupHeartbeatRequest(
                    group_id="sharers",
                    member_id=uuid.uuid4().hex,
                    member_epoch=0,
                    subscribed_topic_names=topics,
                ),
            )

        refused = join(here, there)
        assert refused.error_code == ErrorCode.INVALID_REQUEST
        assert there in refused.error_message and "home cell" in refused.error_message
        joined = join(here)
        assert joined.error_code == ErrorCode.NONE and joined.member_epoch > 0
    finally:
        wire.close()


def test_kafka_python_clients_bootstrapped_on_one_door(cluster: Cluster, topic_name: str) -> None:
    """kafka-python, told of the third door only, finds the others through Metadata."""
    kafka = pytest.importorskip("kafka")
    third = cluster.doors[2]
    names = {f"{topic_name}.{index}": door for index, door in enumerate(cluster.doors)}
    for name, door in names.items():
        assert cluster.create(door, name).error_code == ErrorCode.NONE
    bootstrap = f"127.0.0.1:{third.port}"
    timers = {"request_timeout_ms": 10_000, "metadata_max_age_ms": 1000, "reconnect_backoff_max_ms": 200}
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, max_block_ms=20_000, **timers)
    try:
        for number in range(5):
            for name in names:
                producer.send(name, value=f"{name}/{number}".encode())
        producer.flush(timeout=20)
    finally:
        producer.close(timeout=5)
    for name, holder in names.items():
        assert door_values(holder, name) == [f"{name}/{n}".encode() for n in range(5)]

    group = f"py-{topic_name}"
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=100,
        fetch_max_wait_ms=100,
        **timers,
    )
    got: list[bytes] = []
    try:
        consumer.subscribe(sorted(names))
        deadline = time.monotonic() + 30
        while len(got) < 5 * len(names):
            assert time.monotonic() < deadline, f"the group read {len(got)} records"
            for batch in consumer.poll(timeout_ms=100).values():
                got.extend(record.value for record in batch)
        consumer.commit()
        committed = {name: consumer.committed(kafka.TopicPartition(name, 0)) for name in names}
    finally:
        consumer.close()
    assert sorted(got) == sorted(f"{name}/{n}".encode() for name in names for n in range(5))
    assert committed == dict.fromkeys(names, 5)


# -- 4. producer ids ------------------------------------------------------------------


def test_producer_ids_are_unique_per_cell(cluster: Cluster) -> None:
    ids: dict[int, list[int]] = {}
    for door in cluster.doors:
        wire = door.wire()
        try:
            for _ in range(2):
                answer = wire.call(
                    ApiKey.INIT_PRODUCER_ID,
                    4,
                    d.InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000),
                )
                assert answer.error_code == ErrorCode.NONE
                ids.setdefault(door.node_id, []).append(answer.producer_id)
        finally:
            wire.close()
    for node, given in ids.items():
        low = (node - 1) << PRODUCER_ID_SHIFT
        assert all(low <= pid < low + (1 << PRODUCER_ID_SHIFT) for pid in given), (node, given)
        assert len(set(given)) == len(given)
    assert max(ids[1]) < 1 << 48 <= min(ids[2])
    # A transactional producer's id is the coordinator's (the home cell's door).
    transactional = d.InitProducerIdRequest(transactional_id="tx", transaction_timeout_ms=60_000)
    assert closes_connection(cluster.doors[1], ApiKey.INIT_PRODUCER_ID, 4, transactional)
    assert not closes_connection(cluster.doors[0], ApiKey.INIT_PRODUCER_ID, 4, transactional)


# -- 5. creating and deleting topics ----------------------------------------------------


def test_a_topic_created_at_a_door_is_placed_in_its_cell(cluster: Cluster, topic_name: str) -> None:
    home, second, third = cluster.doors
    catalog = cluster.catalog
    assert cluster.create(second, topic_name, 3, validate_only=True).error_code == ErrorCode.NONE
    assert topic_name not in catalog.placements, "a CreateTopics that only validates placed the topic"
    created = cluster.create(second, topic_name, 3)
    assert created.error_code == ErrorCode.NONE
    incarnation = second.engine.describe_topic(topic_name).incarnation
    assert catalog.placements[topic_name] == "_cell.1"
    assert catalog.shapes[topic_name] == ShapeRecord(topic_name, "_cell.1", incarnation, 3)
    # Placed in another cell: exists, and is not created at the door asked.
    for door in (home, third):
        validated = cluster.create(door, topic_name, 1, validate_only=True)
        assert validated.error_code == ErrorCode.TOPIC_ALREADY_EXISTS, door.cell
        again = cluster.create(door, topic_name, 1)
        assert again.error_code == ErrorCode.TOPIC_ALREADY_EXISTS, door.cell
        assert topic_name not in door.engine.list_topics()
    assert catalog.placements[topic_name] == "_cell.1"
    assert catalog.shapes[topic_name].partitions == 3

    # Metadata's auto-creation places the topic in the asking door's cell...
    auto = f"{topic_name}.auto"
    shown = metadata(third, [auto], auto_create=True).topics[0]
    assert shown.error_code == ErrorCode.NONE
    assert {p.leader_id for p in shown.partitions} == {3}
    assert catalog.placements[auto] == "_cell.2"
    assert catalog.shapes[auto] == ShapeRecord(
        auto, "_cell.2", third.engine.describe_topic(auto).incarnation, 1
    )
    # ...and another door asking for it then shows it, creating nothing.
    other = metadata(home, [auto], auto_create=True).topics[0]
    assert (other.error_code, other.topic_id, {p.leader_id for p in other.partitions}) == (
        ErrorCode.NONE,
        shown.topic_id,
        {3},
    )
    assert auto not in home.engine.list_topics()

    # librdkafka's producer at one door auto-creates in that door's cell.
    produced = f"{topic_name}.produced"
    producer = confluent_kafka.Producer({"bootstrap.servers": f"127.0.0.1:{home.port}", **FAST})
    producer.produce(produced, value=b"v")
    assert producer.flush(20) == 0
    assert catalog.placements[produced] == "_cell"
    assert door_values(home, produced) == [b"v"]


def test_a_topic_the_engine_refuses_is_placed_nowhere(tmp_path: Path) -> None:
    with three_doors(tmp_path, topics_max=1) as cluster:
        home, second, _ = cluster.doors
        catalog = cluster.catalog
        # A name reserved for the system: refused, and no cell holds it.
        refused = cluster.create(second, "_private.orders")
        assert refused.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
        shown = metadata(home, ["_private.auto"], auto_create=True).topics[0]
        assert shown.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
        # Beyond the engine's topic count: refused, and no cell holds it.
        assert cluster.create(second, "orders.first").error_code == ErrorCode.NONE
        beyond = cluster.create(second, "orders.second")
        assert beyond.error_code != ErrorCode.NONE
        assert "orders.second" not in second.engine.list_topics()
        assert sorted(catalog.placements) == ["orders.first"]
        assert sorted(catalog.shapes) == ["orders.first"]
        # ...so that another cell's door can create it.
        assert cluster.create(home, "orders.second").error_code == ErrorCode.NONE
        assert catalog.placements["orders.second"] == "_cell"


def test_deleting_another_cells_topic_is_refused_and_deletes_nothing(
    cluster: Cluster, topic_name: str
) -> None:
    home, second, _ = cluster.doors
    catalog = cluster.catalog
    assert cluster.create(second, topic_name).error_code == ErrorCode.NONE
    second.engine.append(topic_name, [{"value": b"kept"}])
    shape = catalog.shapes[topic_name]

    def delete(door: CellDoor) -> a.DeletableTopicResult:
        wire = door.wire()
        try:
            response = wire.call(
                ApiKey.DELETE_TOPICS, 5, a.DeleteTopicsRequest(topic_names=(topic_name,), timeout_ms=5000)
            )
        finally:
            wire.close()
        result: a.DeletableTopicResult = response.responses[0]
        return result

    refused = delete(home)
    assert refused.error_code == ErrorCode.INVALID_REQUEST
    assert refused.error_message is not None and "odradek topic delete" in refused.error_message
    assert door_values(second, topic_name) == [b"kept"]
    assert catalog.placements[topic_name] == "_cell.1" and catalog.shapes[topic_name] == shape

    # librdkafka's AdminClient sees the refusal.
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{home.port}", **FAST})
    future = admin.delete_topics([topic_name], operation_timeout=5)[topic_name]
    assert future.exception(timeout=10).args[0].code() == confluent_kafka.KafkaError.INVALID_REQUEST
    assert door_values(second, topic_name) == [b"kept"]

    # At its own cell's door the topic goes, with its placement and shape.
    assert delete(second).error_code == ErrorCode.NONE
    assert topic_name not in second.engine.list_topics()
    assert topic_name not in catalog.placements and topic_name not in catalog.shapes
    assert topic_name not in {t.name for t in metadata(home).topics}


def test_topic_admin_requests_for_another_cells_topic_name_its_broker(
    cluster: Cluster, topic_name: str
) -> None:
    home, second, _ = cluster.doors
    catalog = cluster.catalog
    assert cluster.create(second, topic_name).error_code == ErrorCode.NONE
    config = second.engine.describe_topic(topic_name).config
    topic_resource = 2
    wire = home.wire()
    try:
        grown = wire.call(
            ApiKey.CREATE_PARTITIONS,
            3,
            a.CreatePartitionsRequest(
                topics=(a.CreatePartitionsTopic(name=topic_name, count=4),),
                timeout_ms=5000,
                validate_only=False,
            ),
        ).results[0]
        described = wire.call(
            ApiKey.DESCRIBE_CONFIGS,
            4,
            a.DescribeConfigsRequest(
                resources=(a.DescribeConfigsResource(resource_type=topic_resource, resource_name=topic_name),)
            ),
        ).results[0]
        altered = wire.call(
            ApiKey.ALTER_CONFIGS,
            2,
            a.AlterConfigsRequest(
                resources=(
                    a.AlterConfigsResource(
                        resource_type=topic_resource,
                        resource_name=topic_name,
                        configs=(a.AlterableConfig(name="retention.ms", value="1000"),),
                    ),
                ),
            ),
        ).responses[0]
        incremental = wire.call(
            ApiKey.INCREMENTAL_ALTER_CONFIGS,
            1,
            a.IncrementalAlterConfigsRequest(
                resources=(
                    a.IncrementalAlterConfigsResource(
                        resource_type=topic_resource,
                        resource_name=topic_name,
                        configs=(
                            a.IncrementalAlterableConfig(
                                name="retention.ms", config_operation=0, value="1000"
                            ),
                        ),
                    ),
                ),
            ),
        ).responses[0]
    finally:
        wire.close()
    for answer in (grown, described, altered, incremental):
        assert answer.error_code == ErrorCode.INVALID_REQUEST, answer
        assert answer.error_message is not None and "broker 2" in answer.error_message, answer.error_message
    # Nothing changed: the topic's partitions and configs are its cell's door's.
    assert catalog.shapes[topic_name].partitions == 1
    assert second.engine.describe_topic(topic_name).config == config

    # librdkafka's AdminClient told of the topic's broker alone grows it there, and
    # every door then shows the new count.
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{second.port}", **FAST})
    future = admin.create_partitions([confluent_kafka.admin.NewPartitions(topic_name, 4)])[topic_name]
    assert future.result(timeout=10) is None
    assert catalog.shapes[topic_name].partitions == 4
    assert len(metadata(home, [topic_name]).topics[0].partitions) == 4


# -- 6. DescribeCluster ---------------------------------------------------------------


def test_describe_cluster_lists_every_door(cluster: Cluster) -> None:
    expected = [(door.node_id, door.port) for door in cluster.doors]
    for door in cluster.doors:
        wire = door.wire()
        try:
            answer = wire.call(ApiKey.DESCRIBE_CLUSTER, 0, a.DescribeClusterRequest())
        finally:
            wire.close()
        assert answer.error_code == ErrorCode.NONE
        assert answer.cluster_id == cluster.catalog.cluster_id
        assert [(b.broker_id, b.port) for b in answer.brokers] == expected
        assert answer.controller_id == door.node_id
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{cluster.doors[1].port}", **FAST})
    described = admin.describe_cluster(request_timeout=10).result(timeout=15)
    assert described.cluster_id == cluster.catalog.cluster_id
    assert sorted((node.id, node.port) for node in described.nodes) == expected
