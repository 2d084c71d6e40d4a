"""The transaction APIs on the wire, request by request.

Goal: each transaction API answers as Kafka's brokers do where clients depend on it:
ApiVersions advertises them; FindCoordinator with key type 1 names this node;
InitProducerId refuses a timeout over the bound and bumps the epoch of a
transactional.id, fencing the older producer with PRODUCER_FENCED (INVALID_PRODUCER_EPOCH
before KIP-588's versions); a transactional Produce to a partition not added to the
transaction is refused and writes nothing (KIP-890's server-side defence), and
AddPartitionsToTxn v4's verify-only form tells which partitions are in it;
DescribeTransactions and ListTransactions show the coordinator's state; the bounds
(staged bytes, open transactions, transactional ids) refuse with a code and stage
nothing; TxnOffsetCommit needs its group added first and its offsets become the
group's only at the commit (until then OffsetFetch with require_stable answers
UNSTABLE_OFFSET_COMMIT, KIP-447); one id's damaged state file leaves the others served. A
commit whose
apply a crash interrupted (one topic written, the other not) is finished at the next
start, each record once, and a transaction open at a restart is aborted and its
producer fenced. A transactional Produce is answered with a lower bound of its records'
offsets that never goes back for the id's later records (a retry gets its first answer).
The id's next transaction opens and stages while its previous commit is still applied
(that commit's offsets stay unstable meanwhile), its commit waits for that apply, and a
restart then finishes the one and aborts the other; the slot emptied ahead for the next
transaction is no open transaction at a restart. AddPartitionsToTxn refuses a topic with
a schema (INVALID_RECORD) and opens nothing. Staged frames are written with the decision
while they fit the memory budget, and as they come beyond it (the commit then reads the
records back). While the transaction's number cannot be written to its staging slot
(AddPartitionsToTxn was answered before it), its Produce, TxnOffsetCommit and commit are
refused with retriable errors and nothing is staged. A transactional Produce is answered
after checks that decode no record (its batches are decoded after the answer): a damaged
batch is refused at once and nothing of its request is staged, every record of the
batches that pass is applied at the commit (decoded records kept in memory, or read
back beyond the budget), and a batch whose decode fails after the answer (a malformed
record under a right CRC) refuses the commit and aborts the transaction.

Method: raw requests on one connection (wire.py) to the in-process door, built and read
with the door's codec; the interrupted apply is a coordinator whose apply writes the
first topic and then fails as a crash would, closed without finishing and opened again
on the same directory; what topics hold is read through the engine.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import crc32c
import pyarrow as pa
import pytest
from wire import Wire, connections, door_settled, door_values

from odradek import limits
from odradek.errors import StorageError
from odradek.node import Node
from odradek.protocols.kafka import start_kafka_listener
from odradek.protocols.kafka.codec import messages_data as d
from odradek.protocols.kafka.codec import messages_groups as g
from odradek.protocols.kafka.codec import messages_txn as t
from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.records import encode_batch
from odradek.protocols.kafka.staging import batches_frame, read_stage
from odradek.protocols.kafka.transactions import TransactionCoordinator
from odradek.records import STORED_SCHEMA


class TxnWire(Wire):
    last_produce_message: str | None = None

    def init(self, transactional_id: str, version: int = 4, **fields: Any) -> d.InitProducerIdResponse:
        request = d.InitProducerIdRequest(
            transactional_id=transactional_id,
            transaction_timeout_ms=fields.pop("timeout_ms", 60_000),
            **fields,
        )
        response: d.InitProducerIdResponse = self.call(ApiKey.INIT_PRODUCER_ID, version, request)
        return response

    def add(
        self, transactional_id: str, pid: int, epoch: int, topics: dict[str, list[int]], version: int = 3
    ) -> dict[tuple[str, int], int]:
        request = t.AddPartitionsToTxnRequest(
            v3_and_below_transactional_id=transactional_id,
            v3_and_below_producer_id=pid,
            v3_and_below_producer_epoch=epoch,
            v3_and_below_topics=tuple(
                t.AddPartitionsToTxnTopic(name=n, partitions=tuple(p)) for n, p in topics.items()
            ),
        )
        response = self.call(ApiKey.ADD_PARTITIONS_TO_TXN, version, request)
        return {
            (topic.name, p.partition_index): p.partition_error_code
            for topic in response.results_by_topic_v3_and_below
            for p in topic.results_by_partition
        }

    def produce(
        self,
        transactional_id: str | None,
        topic: str,
        values: list[bytes],
        pid: int,
        epoch: int,
        sequence: int,
    ) -> tuple[int, int]:
        return self.produce_raw(transactional_id, topic, batch_of(values, pid, epoch, sequence))

    def produce_raw(self, transactional_id: str | None, topic: str, records: bytes) -> tuple[int, int]:
        """A Produce of ``records`` (record batches) to the topic's partition 0."""
        request = _produce_request(transactional_id, topic, records)
        result = self.call(ApiKey.PRODUCE, 9, request).responses[0].partition_responses[0]
        self.last_produce_message = result.error_message
        return result.error_code, result.base_offset

    def end(self, transactional_id: str, pid: int, epoch: int, commit: bool, version: int = 3) -> int:
        request = t.EndTxnRequest(
            transactional_id=transactional_id, producer_id=pid, producer_epoch=epoch, committed=commit
        )
        code: int = self.call(ApiKey.END_TXN, version, request).error_code
        return code

    def describe(self, transactional_id: str) -> t.DescribedTransaction:
        response = self.call(
            ApiKey.DESCRIBE_TRANSACTIONS,
            0,
            t.DescribeTransactionsRequest(transactional_ids=(transactional_id,)),
        )
        described: t.DescribedTransaction = response.transaction_states[0]
        return described


values_of = door_values


def _produce_request(transactional_id: str | None, topic: str, records: bytes) -> d.ProduceRequest:
    return d.ProduceRequest(
        transactional_id=transactional_id,
        acks=-1,
        timeout_ms=5000,
        topic_data=(
            d.TopicProduceData(
                name=topic, partition_data=(d.PartitionProduceData(index=0, records=records),)
            ),
        ),
    )


def batch_of(values: list[bytes], pid: int, epoch: int, sequence: int) -> bytes:
    """A record batch of keyless ``values``, as a producer of ``pid`` sends it."""
    rows = [
        {"offset": i, "timestamp": 1_000_000, "key": None, "value": v, "headers": None, "version": None}
        for i, v in enumerate(values)
    ]
    return encode_batch(
        pa.RecordBatch.from_pylist(rows, schema=STORED_SCHEMA),
        base_offset=0,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=sequence,
    )


def with_crc(batch: bytes | bytearray) -> bytes:
    """``batch`` with its CRC-32C (of everything after the crc field) made right."""
    crc = crc32c.crc32c(bytes(batch[21:]))
    return bytes(batch[:17]) + crc.to_bytes(4, "big") + bytes(batch[21:])


@pytest.fixture
def connect(kafka_door: Any) -> Iterator[Callable[[], TxnWire]]:
    """``connect()``: a new connection to the door as it is now; all closed at the end."""
    with connections(lambda: TxnWire(kafka_door.listener.port)) as do_connect:
        yield do_connect


def test_api_versions_and_find_coordinator_serve_transactions(
    kafka_door: Any, connect: Callable[[], TxnWire]
) -> None:
    wire = connect()
    versions = wire.call(
        ApiKey.API_VERSIONS, 3, d.ApiVersionsRequest(client_software_name="t", client_software_version="1")
    )
    served = {api.api_key: (api.min_version, api.max_version) for api in versions.api_keys}
    assert served[ApiKey.ADD_PARTITIONS_TO_TXN] == (0, 4)
    for key in (ApiKey.ADD_OFFSETS_TO_TXN, ApiKey.END_TXN, ApiKey.TXN_OFFSET_COMMIT):
        assert served[key] == (0, 4)
    assert served[ApiKey.DESCRIBE_TRANSACTIONS] == (0, 0)
    assert served[ApiKey.LIST_TRANSACTIONS] == (0, 2)
    found = wire.call(
        ApiKey.FIND_COORDINATOR, 4, g.FindCoordinatorRequest(key_type=1, coordinator_keys=("my-txn",))
    )
    (coordinator,) = found.coordinators
    assert coordinator.error_code == ErrorCode.NONE
    assert coordinator.port == kafka_door.listener.port
    old = wire.call(ApiKey.FIND_COORDINATOR, 3, g.FindCoordinatorRequest(key="my-txn", key_type=1))
    assert (old.error_code, old.port) == (ErrorCode.NONE, kafka_door.listener.port)


def test_init_producer_id_bumps_the_epoch_and_fences(kafka_door: Any, connect: Callable[[], TxnWire]) -> None:
    wire = connect()
    too_long = wire.init("w", timeout_ms=3_600_000)
    assert too_long.error_code == ErrorCode.INVALID_TRANSACTION_TIMEOUT
    first = wire.init("w")
    assert first.error_code == ErrorCode.NONE
    second = wire.init("w")
    assert (second.producer_id, second.producer_epoch) == (first.producer_id, first.producer_epoch + 1)
    # The older producer asking to bump its own epoch (KIP-360) is fenced.
    stale = wire.init("w", producer_id=first.producer_id, producer_epoch=first.producer_epoch)
    assert stale.error_code == ErrorCode.PRODUCER_FENCED
    fenced_new = wire.add("w", first.producer_id, first.producer_epoch, {"x": [0]}, version=2)
    fenced_old = wire.add("w", first.producer_id, first.producer_epoch, {"x": [0]}, version=1)
    assert set(fenced_new.values()) == {ErrorCode.PRODUCER_FENCED}
    assert set(fenced_old.values()) == {ErrorCode.INVALID_PRODUCER_EPOCH}
    unknown = wire.end("nobody", 1, 0, True)
    assert unknown == ErrorCode.INVALID_PRODUCER_ID_MAPPING


def test_a_produce_to_a_partition_not_in_the_transaction_is_refused(
    kafka_door: Any, topic_name: str, connect: Callable[[], TxnWire]
) -> None:
    added, other = topic_name + ".a", topic_name + ".b"
    kafka_door.engine.create_topic(added)
    kafka_door.engine.create_topic(other)
    wire = connect()
    init = wire.init("guarded")
    pid, epoch = init.producer_id, init.producer_epoch
    # Before any AddPartitionsToTxn: no transaction at all.
    assert wire.produce("guarded", added, [b"early"], pid, epoch, 0)[0] == ErrorCode.INVALID_TXN_STATE
    assert wire.add("guarded", pid, epoch, {added: [0]}) == {(added, 0): ErrorCode.NONE}
    assert wire.produce("guarded", other, [b"stray"], pid, epoch, 0)[0] == ErrorCode.INVALID_TXN_STATE
    assert "AddPartitionsToTxn first" in (wire.last_produce_message or "")  # the broker's own words
    assert wire.produce("guarded", added, [b"kept"], pid, epoch, 0) == (ErrorCode.NONE, 0)
    # KIP-890's verify-only form, as a broker sends it (v4, batched).
    request = t.AddPartitionsToTxnRequest(
        transactions=(
            t.AddPartitionsToTxnTransaction(
                transactional_id="guarded",
                producer_id=pid,
                producer_epoch=epoch,
                verify_only=True,
                topics=(
                    t.AddPartitionsToTxnTopic(name=added, partitions=(0,)),
                    t.AddPartitionsToTxnTopic(name=other, partitions=(0,)),
                ),
            ),
        )
    )
    verified = wire.call(ApiKey.ADD_PARTITIONS_TO_TXN, 4, request)
    (result,) = verified.results_by_transaction
    codes = {
        (r.name, p.partition_index): p.partition_error_code
        for r in result.topic_results
        for p in r.results_by_partition
    }
    assert codes == {(added, 0): ErrorCode.NONE, (other, 0): ErrorCode.INVALID_TXN_STATE}
    assert wire.describe("guarded").topics == (
        t.TopicData(topic=added, partitions=(0,)),
    )  # verify added nothing
    assert wire.end("guarded", pid, epoch, True) == ErrorCode.NONE
    assert values_of(kafka_door, added) == [b"kept"]
    assert values_of(kafka_door, other) == []


def test_describe_and_list_transactions(
    kafka_door: Any, topic_name: str, connect: Callable[[], TxnWire]
) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire = connect()
    init = wire.init("described", timeout_ms=30_000)
    wire.add("described", init.producer_id, init.producer_epoch, {topic_name: [0]})
    described = wire.describe("described")
    assert (described.error_code, described.transaction_state, described.transaction_timeout_ms) == (
        ErrorCode.NONE,
        "Ongoing",
        30_000,
    )
    assert described.transaction_start_time_ms > 0
    assert described.topics == (t.TopicData(topic=topic_name, partitions=(0,)),)
    assert wire.describe("nobody").error_code == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
    listed = wire.call(
        ApiKey.LIST_TRANSACTIONS, 2, t.ListTransactionsRequest(state_filters=("Ongoing", "Nonsense"))
    )
    assert listed.unknown_state_filters == ("Nonsense",)
    assert [(x.transactional_id, x.producer_id) for x in listed.transaction_states] == [
        ("described", init.producer_id)
    ]
    assert wire.end("described", init.producer_id, init.producer_epoch, False) == ErrorCode.NONE
    listed = wire.call(ApiKey.LIST_TRANSACTIONS, 0, t.ListTransactionsRequest(state_filters=("Ongoing",)))
    assert listed.transaction_states == ()


def test_a_commit_interrupted_between_topics_is_finished_at_the_next_start(
    kafka_door: Any, topic_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = topic_name + ".a", topic_name + ".b"
    kafka_door.engine.create_topic(first)
    kafka_door.engine.create_topic(second)
    wire = TxnWire(kafka_door.listener.port)
    init = wire.init("crashing")
    pid, epoch = init.producer_id, init.producer_epoch
    wire.add("crashing", pid, epoch, {first: [0], second: [0]})
    assert wire.produce("crashing", first, [b"a1", b"a2"], pid, epoch, 0)[0] == ErrorCode.NONE
    assert wire.produce("crashing", second, [b"b1"], pid, epoch, 0)[0] == ErrorCode.NONE
    assert wire.produce("crashing", first, [b"a3"], pid, epoch, 2)[0] == ErrorCode.NONE
    other = wire.init("left-open")
    wire.add("left-open", other.producer_id, other.producer_epoch, {first: [0]})
    assert wire.produce("left-open", first, [b"open"], other.producer_id, other.producer_epoch, 0)[0] == 0

    original = TransactionCoordinator._append_all

    def crash_after_the_first_topic(self: TransactionCoordinator, txn: Any, decision: dict[str, Any]) -> None:
        original(self, txn, {**decision, "ranges": decision["ranges"][:1]})
        raise StorageError("the process died here")

    monkeypatch.setattr(TransactionCoordinator, "_append_all", crash_after_the_first_topic)
    # Answered once decided; the apply, in the background, fails after the first topic.
    assert wire.end("crashing", pid, epoch, True) == ErrorCode.NONE
    assert values_of(kafka_door, first) == [b"a1", b"a2", b"a3"]
    assert values_of(kafka_door, second) == []
    wire.close()
    kafka_door.close()
    monkeypatch.undo()

    kafka_door.node = Node.open(kafka_door.data_dir, fsync=False)
    kafka_door.listener = start_kafka_listener(kafka_door.node, "127.0.0.1", 0)
    wire = TxnWire(kafka_door.listener.port)
    try:
        state = wire.describe("crashing").transaction_state
        assert state in ("PrepareCommit", "CompleteCommit")
        assert wire.end("crashing", pid, epoch, True) == ErrorCode.NONE  # the client's retry
        assert wire.describe("crashing").transaction_state == "CompleteCommit"
        assert values_of(kafka_door, first) == [b"a1", b"a2", b"a3"]
        assert values_of(kafka_door, second) == [b"b1"]
        reopened = wire.describe("left-open")
        assert (reopened.transaction_state, reopened.producer_epoch) == (
            "CompleteAbort",
            other.producer_epoch + 1,
        )
        assert (
            wire.end("left-open", other.producer_id, other.producer_epoch, True) == ErrorCode.PRODUCER_FENCED
        )
    finally:
        wire.close()


def test_bounds_are_refused_and_leave_nothing_behind(
    kafka_door: Any, topic_name: str, connect: Callable[[], TxnWire], monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire = connect()
    monkeypatch.setattr(limits, "kafka_transaction_staged_bytes_max", 2000)
    init = wire.init("bounded")
    pid, epoch = init.producer_id, init.producer_epoch
    wire.add("bounded", pid, epoch, {topic_name: [0]})
    code, _ = wire.produce("bounded", topic_name, [b"x" * 5000], pid, epoch, 0)
    assert code == ErrorCode.MESSAGE_TOO_LARGE
    assert wire.produce("bounded", topic_name, [b"small"], pid, epoch, 0) == (ErrorCode.NONE, 0)
    assert wire.end("bounded", pid, epoch, True) == ErrorCode.NONE
    assert values_of(kafka_door, topic_name) == [b"small"]

    monkeypatch.setattr(limits, "kafka_open_transactions_max", 1)
    wire.add("bounded", pid, epoch, {topic_name: [0]})  # the one open transaction
    other = wire.init("second")
    refused = wire.add("second", other.producer_id, other.producer_epoch, {topic_name: [0]})
    assert set(refused.values()) == {ErrorCode.COORDINATOR_LOAD_IN_PROGRESS}  # retriable
    assert wire.describe("second").transaction_state == "Empty"

    monkeypatch.setattr(limits, "kafka_transactional_ids_max", 2)
    assert wire.init("third").error_code == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert wire.describe("third").error_code == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND


def test_offsets_need_their_group_in_the_transaction(
    kafka_door: Any, topic_name: str, connect: Callable[[], TxnWire]
) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire = connect()
    init = wire.init("offsets")
    pid, epoch = init.producer_id, init.producer_epoch
    wire.add("offsets", pid, epoch, {topic_name: [0]})
    request = t.TxnOffsetCommitRequest(
        transactional_id="offsets",
        group_id="g1",
        producer_id=pid,
        producer_epoch=epoch,
        topics=(
            t.TxnOffsetCommitRequestTopic(
                name=topic_name,
                partitions=(t.TxnOffsetCommitRequestPartition(partition_index=0, committed_offset=3),),
            ),
        ),
    )
    refused = wire.call(ApiKey.TXN_OFFSET_COMMIT, 3, request)
    assert refused.topics[0].partitions[0].error_code == ErrorCode.INVALID_TXN_STATE
    added = t.AddOffsetsToTxnRequest(
        transactional_id="offsets", producer_id=pid, producer_epoch=epoch, group_id="g1"
    )
    assert wire.call(ApiKey.ADD_OFFSETS_TO_TXN, 3, added).error_code == ErrorCode.NONE
    accepted = wire.call(ApiKey.TXN_OFFSET_COMMIT, 3, request)
    assert accepted.topics[0].partitions[0].error_code == ErrorCode.NONE
    coordinator = kafka_door.listener.listener.broker.coordinator
    assert coordinator.committed("g1") == {}  # not before the commit
    # KIP-447: a read_committed consumer asks for stable offsets and is told to retry.
    assert fetch_offset(wire, "g1", topic_name, require_stable=True) == (ErrorCode.UNSTABLE_OFFSET_COMMIT, -1)
    assert fetch_offset(wire, "g1", topic_name, require_stable=False) == (ErrorCode.NONE, -1)
    assert wire.end("offsets", pid, epoch, True) == ErrorCode.NONE
    door_settled(kafka_door)  # offsets are committed by the apply, after EndTxn's answer
    assert coordinator.committed("g1") == {(topic_name, 0): (3, -1, None)}
    assert fetch_offset(wire, "g1", topic_name, require_stable=True) == (ErrorCode.NONE, 3)


def fetch_offset(wire: TxnWire, group: str, topic: str, *, require_stable: bool) -> tuple[int, int]:
    request = g.OffsetFetchRequest(
        groups=(
            g.OffsetFetchRequestGroup(
                group_id=group, topics=(g.OffsetFetchRequestTopics(name=topic, partition_indexes=(0,)),)
            ),
        ),
        require_stable=require_stable,
    )
    (partition,) = wire.call(ApiKey.OFFSET_FETCH, 8, request).groups[0].topics[0].partitions
    return partition.error_code, partition.committed_offset


def test_a_damaged_state_file_leaves_the_other_ids_served(
    kafka_door: Any, topic_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire = TxnWire(kafka_door.listener.port)
    healthy, damaged = wire.init("healthy"), wire.init("damaged")
    wire.close()
    kafka_door.close()
    directory = os.path.join(kafka_door.data_dir, "kafka", "transactions")
    hashed = hashlib.sha256(b"damaged").hexdigest()
    for name in (hashed + ".json", hashed + ".json.copy"):
        with open(os.path.join(directory, name), "wb") as file:
            file.write(b"not a document")
    kafka_door.node = Node.open(kafka_door.data_dir, fsync=False)
    kafka_door.listener = start_kafka_listener(kafka_door.node, "127.0.0.1", 0)
    assert "cannot be loaded" in caplog.text
    wire = TxnWire(kafka_door.listener.port)
    try:
        pid, epoch = healthy.producer_id, healthy.producer_epoch
        assert wire.add("healthy", pid, epoch, {topic_name: [0]}) == {(topic_name, 0): ErrorCode.NONE}
        assert wire.end("healthy", pid, epoch, False) == ErrorCode.NONE
        assert wire.describe("damaged").error_code == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
        assert damaged.error_code == ErrorCode.NONE
    finally:
        wire.close()


def test_a_transactional_produce_answers_a_lower_bound_of_its_offsets(
    kafka_door: Any, topic_name: str, connect: Callable[[], TxnWire]
) -> None:
    engine = kafka_door.engine
    engine.create_topic(topic_name)
    engine.append(topic_name, [{"value": b"native"} for _ in range(5)])
    wire = connect()
    init = wire.init("bounding")
    pid, epoch = init.producer_id, init.producer_epoch
    answered: dict[bytes, int] = {}

    def produce(values: list[bytes], sequence: int) -> int:
        code, base = wire.produce("bounding", topic_name, values, pid, epoch, sequence)
        assert code == ErrorCode.NONE
        for index, value in enumerate(values):
            answered[value] = base + index
        return base

    wire.add("bounding", pid, epoch, {topic_name: [0]})
    assert produce([b"a", b"b"], 0) == 5  # the log's end when the partition was added
    assert produce([b"c"], 2) == 7  # after the records staged before it
    assert wire.produce("bounding", topic_name, [b"a", b"b"], pid, epoch, 0) == (ErrorCode.NONE, 5)
    engine.append(topic_name, [{"value": b"native"} for _ in range(3)])
    assert produce([b"d"], 3) == 8  # the log grew meanwhile: still a lower bound
    assert wire.add("bounding", pid, epoch, {topic_name: [0]}) == {(topic_name, 0): ErrorCode.NONE}
    assert produce([b"d2"], 4) == 12  # added again: the end read then, after a, b, c, d
    assert wire.end("bounding", pid, epoch, True) == ErrorCode.NONE
    # Applied or not yet, the commit's records come first: the next answer follows them.
    wire.add("bounding", pid, epoch, {topic_name: [0]})
    assert produce([b"e"], 5) == 13
    assert wire.end("bounding", pid, epoch, True) == ErrorCode.NONE
    door_settled(kafka_door)
    engine.append(topic_name, [{"value": b"native"} for _ in range(2)])
    wire.add("bounding", pid, epoch, {topic_name: [0]})
    assert produce([b"e2"], 6) == 16  # the log's end, past the commits and the natives
    assert wire.end("bounding", pid, epoch, True) == ErrorCode.NONE
    door_settled(kafka_door)
    # An aborted transaction's answers are not a bound for the next one's records.
    wire.add("bounding", pid, epoch, {topic_name: [0]})
    assert produce([b"x%d" % i for i in range(10)], 7) == 17
    assert wire.end("bounding", pid, epoch, False) == ErrorCode.NONE
    wire.add("bounding", pid, epoch, {topic_name: [0]})
    assert produce([b"f"], 7) == 17
    assert wire.end("bounding", pid, epoch, True) == ErrorCode.NONE
    door_settled(kafka_door)
    stored = pa.Table.from_batches(engine.fetch(topic_name, 0))
    offsets = dict(zip(stored.column("value").to_pylist(), stored.column("offset").to_pylist(), strict=False))
    for value in (b"a", b"b", b"c", b"d", b"d2", b"e", b"e2", b"f"):
        assert answered[value] <= offsets[value], value


def test_end_txn_is_answered_before_the_apply_and_readers_wait_for_it(
    kafka_door: Any, topic_name: str, connect: Callable[[], TxnWire], monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire, reader = connect(), connect()
    init = wire.init("early")
    pid, epoch = init.producer_id, init.producer_epoch
    wire.add("early", pid, epoch, {topic_name: [0]})
    assert wire.produce("early", topic_name, [b"a", b"b", b"c"], pid, epoch, 0)[0] == ErrorCode.NONE
    reader_waits, applied = threading.Event(), threading.Event()
    original_append = TransactionCoordinator._append_all
    original_settled = TransactionCoordinator.settled

    def held_append(self: TransactionCoordinator, txn: Any, decision: dict[str, Any]) -> None:
        reader_waits.wait(30.0)  # the apply goes on once a reader waits for it
        original_append(self, txn, decision)
        applied.set()

    async def settled(self: TransactionCoordinator, topics: set[str], timeout: float) -> None:
        if topics & self._applying.keys():
            reader_waits.set()
        await original_settled(self, topics, timeout)

    monkeypatch.setattr(TransactionCoordinator, "_append_all", held_append)
    monkeypatch.setattr(TransactionCoordinator, "settled", settled)
    assert wire.end("early", pid, epoch, True) == ErrorCode.NONE
    # Answered on the durable decision, not after the apply (held until a reader comes).
    assert not applied.is_set()
    request = d.ListOffsetsRequest(
        replica_id=-1,
        isolation_level=1,
        topics=(
            d.ListOffsetsTopic(
                name=topic_name, partitions=(d.ListOffsetsPartition(partition_index=0, timestamp=-1),)
            ),
        ),
    )
    (answer,) = reader.call(ApiKey.LIST_OFFSETS, 5, request).topics[0].partitions
    # The end a reader asks for after EndTxn's answer includes the commit.
    assert (answer.error_code, answer.offset) == (ErrorCode.NONE, 3)
    assert applied.is_set()


def _add_offsets(wire: TxnWire, transactional_id: str, pid: int, epoch: int, topic: str, offset: int) -> None:
    added = t.AddOffsetsToTxnRequest(
        transactional_id=transactional_id, producer_id=pid, producer_epoch=epoch, group_id="g2"
    )
    assert wire.call(ApiKey.ADD_OFFSETS_TO_TXN, 3, added).error_code == ErrorCode.NONE
    request = t.TxnOffsetCommitRequest(
        transactional_id=transactional_id,
        group_id="g2",
        producer_id=pid,
        producer_epoch=epoch,
        topics=(
            t.TxnOffsetCommitRequestTopic(
                name=topic,
                partitions=(t.TxnOffsetCommitRequestPartition(partition_index=0, committed_offset=offset),),
            ),
        ),
    )
    assert wire.call(ApiKey.TXN_OFFSET_COMMIT, 3, request).topics[0].partitions[0].error_code == 0


def test_the_next_transaction_opens_while_the_commit_before_is_applied(
    kafka_door: Any, topic_name: str, connect: Callable[[], TxnWire], monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire = connect()
    init = wire.init("overlap")
    pid, epoch = init.producer_id, init.producer_epoch
    wire.add("overlap", pid, epoch, {topic_name: [0]})
    assert wire.produce("overlap", topic_name, [b"a", b"b"], pid, epoch, 0)[0] == ErrorCode.NONE
    _add_offsets(wire, "overlap", pid, epoch, topic_name, 5)
    release, settling = threading.Event(), threading.Event()
    applied: list[int] = []
    original_append = TransactionCoordinator._append_all
    original_settle = TransactionCoordinator._settle

    def held_append(self: TransactionCoordinator, txn: Any, decision: dict[str, Any]) -> None:
        release.wait(30.0)  # the first commit's apply waits until the next commit asks for it
        original_append(self, txn, decision)
        applied.append(int(decision["number"]))

    async def settle(self: TransactionCoordinator, txn: Any) -> None:
        if txn.commit is not None:
            settling.set()
        await original_settle(self, txn)

    monkeypatch.setattr(TransactionCoordinator, "_append_all", held_append)
    monkeypatch.setattr(TransactionCoordinator, "_settle", settle)
    releaser = threading.Thread(target=lambda: release.set() if settling.wait(30.0) else None)
    releaser.start()
    try:
        assert wire.end("overlap", pid, epoch, True) == ErrorCode.NONE
        # The next transaction opens and stages while the first commit is not applied...
        assert wire.add("overlap", pid, epoch, {topic_name: [0]}) == {(topic_name, 0): ErrorCode.NONE}
        assert wire.produce("overlap", topic_name, [b"c"], pid, epoch, 2) == (ErrorCode.NONE, 2)
        assert applied == [] and not release.is_set()
        # ...and the first commit's offsets stay unstable until it is applied (KIP-447).
        assert fetch_offset(wire, "g2", topic_name, require_stable=True) == (
            ErrorCode.UNSTABLE_OFFSET_COMMIT,
            -1,
        )
        # The next commit waits for the one before: one id's commits land in order.
        assert wire.end("overlap", pid, epoch, True) == ErrorCode.NONE
        assert applied[:1] == [1]
    finally:
        release.set()
        releaser.join()
    assert values_of(kafka_door, topic_name) == [b"a", b"b", b"c"]
    assert applied == [1, 2]
    assert fetch_offset(wire, "g2", topic_name, require_stable=True) == (ErrorCode.NONE, 5)


def test_a_restart_finishes_the_commit_before_and_aborts_the_open_one(
    kafka_door: Any, topic_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire = TxnWire(kafka_door.listener.port)
    init = wire.init("restarted")
    pid, epoch = init.producer_id, init.producer_epoch
    wire.add("restarted", pid, epoch, {topic_name: [0]})
    assert wire.produce("restarted", topic_name, [b"a", b"b"], pid, epoch, 0)[0] == ErrorCode.NONE

    def crash(self: TransactionCoordinator, txn: Any, decision: dict[str, Any]) -> None:
        raise StorageError("the process died here")

    monkeypatch.setattr(TransactionCoordinator, "_append_all", crash)
    assert wire.end("restarted", pid, epoch, True) == ErrorCode.NONE  # decided, never applied
    wire.add("restarted", pid, epoch, {topic_name: [0]})
    assert wire.produce("restarted", topic_name, [b"open"], pid, epoch, 2)[0] == ErrorCode.NONE
    assert values_of(kafka_door, topic_name) == []
    wire.close()
    kafka_door.close()
    monkeypatch.undo()

    kafka_door.node = Node.open(kafka_door.data_dir, fsync=False)
    kafka_door.listener = start_kafka_listener(kafka_door.node, "127.0.0.1", 0)
    wire = TxnWire(kafka_door.listener.port)
    try:
        assert values_of(kafka_door, topic_name) == [b"a", b"b"]
        reopened = wire.describe("restarted")
        assert (reopened.transaction_state, reopened.producer_epoch) == ("CompleteAbort", epoch + 1)
        assert wire.end("restarted", pid, epoch, True) == ErrorCode.PRODUCER_FENCED
    finally:
        wire.close()


def test_a_restart_after_commits_fences_nothing(kafka_door: Any, topic_name: str) -> None:
    """Once a commit is decided, the other slot is emptied ahead for the next
    transaction: an emptied slot is no open transaction at a restart."""
    kafka_door.engine.create_topic(topic_name)
    wire = TxnWire(kafka_door.listener.port)
    init = wire.init("quiet")
    pid, epoch = init.producer_id, init.producer_epoch
    for sequence, value in enumerate((b"a", b"b")):
        wire.add("quiet", pid, epoch, {topic_name: [0]})
        assert wire.produce("quiet", topic_name, [value], pid, epoch, sequence)[0] == ErrorCode.NONE
        assert wire.end("quiet", pid, epoch, True) == ErrorCode.NONE
    door_settled(kafka_door)
    hashed = hashlib.sha256(b"quiet").hexdigest()
    first_slot = os.path.join(kafka_door.data_dir, "kafka", "transactions", f"{hashed}.0.stage")
    emptied = threading.Event()
    for _ in range(3000):  # the emptying runs in the background
        if os.path.getsize(first_slot) == 0:
            emptied.set()
            break
        emptied.wait(0.01)
    assert emptied.is_set(), "the first transaction's slot was not emptied"
    wire.close()
    kafka_door.close()

    kafka_door.node = Node.open(kafka_door.data_dir, fsync=False)
    kafka_door.listener = start_kafka_listener(kafka_door.node, "127.0.0.1", 0)
    wire = TxnWire(kafka_door.listener.port)
    try:
        described = wire.describe("quiet")
        assert (described.transaction_state, described.producer_epoch) == ("CompleteCommit", epoch)
        assert wire.add("quiet", pid, epoch, {topic_name: [0]}) == {(topic_name, 0): ErrorCode.NONE}
        assert wire.produce("quiet", topic_name, [b"c"], pid, epoch, 2)[0] == ErrorCode.NONE
        assert wire.end("quiet", pid, epoch, True) == ErrorCode.NONE
        assert values_of(kafka_door, topic_name) == [b"a", b"b", b"c"]
    finally:
        wire.close()


def test_a_topic_with_a_schema_is_refused_and_opens_nothing(
    kafka_door: Any, topic_name: str, connect: Callable[[], TxnWire]
) -> None:
    typed, plain = topic_name + ".typed", topic_name + ".plain"
    kafka_door.engine.create_topic(typed)
    kafka_door.engine.create_topic(plain)
    kafka_door.engine.set_schema(typed, {"type": "object", "properties": {"id": {"type": "integer"}}})
    wire = connect()
    init = wire.init("typed")
    pid, epoch = init.producer_id, init.producer_epoch
    assert wire.add("typed", pid, epoch, {typed: [0], plain: [0]}) == {
        (typed, 0): ErrorCode.INVALID_RECORD,
        (plain, 0): ErrorCode.OPERATION_NOT_ATTEMPTED,
    }
    assert wire.describe("typed").transaction_state == "Empty"
    missing = topic_name + ".missing"
    assert wire.add("typed", pid, epoch, {typed: [0], missing: [0], plain: [0]}) == {
        (typed, 0): ErrorCode.INVALID_RECORD,
        (missing, 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        (plain, 0): ErrorCode.OPERATION_NOT_ATTEMPTED,
    }
    assert wire.describe("typed").transaction_state == "Empty"
    assert wire.add("typed", pid, epoch, {plain: [0]}) == {(plain, 0): ErrorCode.NONE}
    assert wire.describe("typed").transaction_state == "Ongoing"


def test_frames_are_written_with_the_decision_or_beyond_the_memory_budget_as_they_come(
    kafka_door: Any, topic_name: str, connect: Callable[[], TxnWire], monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire = connect()
    init = wire.init("budget")
    pid, epoch = init.producer_id, init.producer_epoch
    hashed = hashlib.sha256(b"budget").hexdigest()
    directory = os.path.join(kafka_door.data_dir, "kafka", "transactions")

    def staged(slot: int) -> tuple[list[bytes], bool]:
        stage = read_stage(kafka_door.node.engine.disk, os.path.join(directory, f"{hashed}.{slot}.stage"))
        assert stage is not None
        values = [v for _, _, table in stage.frames for v in table.column("value").to_pylist()]
        return values, stage.decision is not None

    # Within the budget a Produce writes nothing: its frame goes with the decision.
    wire.add("budget", pid, epoch, {topic_name: [0]})
    assert wire.produce("budget", topic_name, [b"a"], pid, epoch, 0)[0] == ErrorCode.NONE
    assert staged(0) == ([], False)
    assert wire.end("budget", pid, epoch, True) == ErrorCode.NONE
    assert staged(0) == ([b"a"], True)
    # Beyond it, what was kept is written at once, then each frame as it comes, and the
    # commit reads the records back.
    wire.add("budget", pid, epoch, {topic_name: [0]})
    assert wire.produce("budget", topic_name, [b"b"], pid, epoch, 1)[0] == ErrorCode.NONE
    assert staged(1) == ([], False)
    monkeypatch.setattr(limits, "kafka_transaction_memory_bytes_max", 0)
    assert wire.produce("budget", topic_name, [b"c"], pid, epoch, 2)[0] == ErrorCode.NONE
    assert staged(1) == ([b"b", b"c"], False)
    assert wire.produce("budget", topic_name, [b"d"], pid, epoch, 3)[0] == ErrorCode.NONE
    assert staged(1) == ([b"b", b"c", b"d"], False)
    assert wire.end("budget", pid, epoch, True) == ErrorCode.NONE
    assert staged(1) == ([b"b", b"c", b"d"], True)
    assert values_of(kafka_door, topic_name) == [b"a", b"b", b"c", b"d"]
    assert kafka_door.listener.listener.broker.transactions.memory == 0


def test_a_transaction_whose_number_cannot_be_written_acknowledges_nothing(
    kafka_door: Any, topic_name: str, connect: Callable[[], TxnWire], monkeypatch: pytest.MonkeyPatch
) -> None:
    """AddPartitionsToTxn is answered before the transaction's number reaches its
    staging slot (decision 0016); while that write fails, the transaction's Produce is
    refused with a retriable error and stages nothing, and so are its TxnOffsetCommit
    and its commit; once the write succeeds the retried Produce is staged and committed
    once."""
    kafka_door.engine.create_topic(topic_name)
    wire = connect()
    init = wire.init("unwritten")
    pid, epoch = init.producer_id, init.producer_epoch
    original = TransactionCoordinator._open_stage

    def failing(self: TransactionCoordinator, *args: Any) -> Any:
        raise StorageError("the disk is full")

    monkeypatch.setattr(TransactionCoordinator, "_open_stage", failing)
    assert wire.add("unwritten", pid, epoch, {topic_name: [0]}) == {(topic_name, 0): ErrorCode.NONE}
    assert wire.produce("unwritten", topic_name, [b"a"], pid, epoch, 0)[0] == ErrorCode.KAFKA_STORAGE_ERROR
    added = t.AddOffsetsToTxnRequest(
        transactional_id="unwritten", producer_id=pid, producer_epoch=epoch, group_id="g"
    )
    assert wire.call(ApiKey.ADD_OFFSETS_TO_TXN, 3, added).error_code == ErrorCode.NONE
    offsets = t.TxnOffsetCommitRequest(
        transactional_id="unwritten",
        group_id="g",
        producer_id=pid,
        producer_epoch=epoch,
        topics=(
            t.TxnOffsetCommitRequestTopic(
                name=topic_name,
                partitions=(t.TxnOffsetCommitRequestPartition(partition_index=0, committed_offset=1),),
            ),
        ),
    )
    answer = wire.call(ApiKey.TXN_OFFSET_COMMIT, 3, offsets)
    assert answer.topics[0].partitions[0].error_code == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert wire.end("unwritten", pid, epoch, True) == ErrorCode.COORDINATOR_NOT_AVAILABLE
    hashed = hashlib.sha256(b"unwritten").hexdigest()
    directory = os.path.join(kafka_door.data_dir, "kafka", "transactions")
    assert all(
        read_stage(kafka_door.engine.disk, os.path.join(directory, f"{hashed}.{slot}.stage")) is None
        for slot in (0, 1)
    )

    monkeypatch.setattr(TransactionCoordinator, "_open_stage", original)
    assert wire.produce("unwritten", topic_name, [b"a"], pid, epoch, 0)[0] == ErrorCode.NONE
    assert wire.end("unwritten", pid, epoch, True) == ErrorCode.NONE
    door_settled(kafka_door)
    assert values_of(kafka_door, topic_name) == [b"a"]
    assert kafka_door.listener.listener.broker.coordinator.committed("g") == {}


def _staged(door: Any, transactional_id: str, slot: int) -> tuple[list[bytes], bool]:
    """The values a staging slot holds and whether it holds a decision."""
    hashed = hashlib.sha256(transactional_id.encode()).hexdigest()
    path = os.path.join(door.data_dir, "kafka", "transactions", f"{hashed}.{slot}.stage")
    stage = read_stage(door.node.engine.disk, path)
    assert stage is not None
    values = [v for _, _, table in stage.frames for v in table.column("value").to_pylist()]
    return values, stage.decision is not None


def test_staged_batches_are_decoded_after_the_answer_and_applied_whole(
    kafka_door: Any, topic_name: str, connect: Callable[[], TxnWire], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transactional Produce is answered after checking its batches, without decoding
    them; they are decoded after the answer and the commit applies every record of
    every batch, in order, whether the decoded records are kept in memory or (beyond the
    memory budget) read back from the staging file."""
    kafka_door.engine.create_topic(topic_name)
    wire = connect()
    init = wire.init("whole")
    pid, epoch = init.producer_id, init.producer_epoch
    coordinator = kafka_door.listener.listener.broker.transactions
    wire.add("whole", pid, epoch, {topic_name: [0]})
    two_batches = batch_of([b"a", b"b"], pid, epoch, 0) + batch_of([b"c"], pid, epoch, 2)
    assert wire.produce_raw("whole", topic_name, two_batches) == (ErrorCode.NONE, 0)
    assert wire.produce("whole", topic_name, [b"d", b"e"], pid, epoch, 3) == (ErrorCode.NONE, 3)
    assert wire.end("whole", pid, epoch, True) == ErrorCode.NONE
    assert values_of(kafka_door, topic_name) == [b"a", b"b", b"c", b"d", b"e"]
    assert _staged(kafka_door, "whole", 0) == ([b"a", b"b", b"c", b"d", b"e"], True)
    assert coordinator.memory == 0
    # A budget that holds the frames as sent but not their decoded records: the commit
    # reads the records back from the staging file, where its decision put the frames.
    frame_bytes = len(batches_frame(topic_name, 0, batch_of([b"f"], pid, epoch, 5), 1))
    monkeypatch.setattr(limits, "kafka_transaction_memory_bytes_max", frame_bytes)
    wire.add("whole", pid, epoch, {topic_name: [0]})
    assert wire.produce("whole", topic_name, [b"f"], pid, epoch, 5) == (ErrorCode.NONE, 5)
    assert _staged(kafka_door, "whole", 1) == ([], False)  # the frame is kept for the decision
    assert wire.end("whole", pid, epoch, True) == ErrorCode.NONE
    assert _staged(kafka_door, "whole", 1) == ([b"f"], True)
    assert values_of(kafka_door, topic_name) == [b"a", b"b", b"c", b"d", b"e", b"f"]
    assert coordinator.memory == 0


def test_a_damaged_batch_is_refused_at_the_produce_and_nothing_of_it_is_staged(
    kafka_door: Any, topic_name: str, connect: Callable[[], TxnWire]
) -> None:
    """What the Produce checks without decoding (the CRC, the batch's framing, the
    records delimited by their lengths) refuses a damaged batch at once, CORRUPT_MESSAGE,
    and stages nothing of the request; the client's retry with the batch whole is staged
    and committed once."""
    kafka_door.engine.create_topic(topic_name)
    wire = connect()
    init = wire.init("damaged")
    pid, epoch = init.producer_id, init.producer_epoch
    wire.add("damaged", pid, epoch, {topic_name: [0]})
    good = batch_of([b"a", b"b"], pid, epoch, 0)
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF  # a byte changed in transit: the CRC no longer matches
    # The CRC made right over records whose lengths do not fill the batch: the first
    # record's length varint one more than its fields.
    first_record = 61
    lengthened = bytearray(good)
    lengthened[first_record] += 2  # zigzag: one byte more
    cut = good[:-3]  # the last record cut short, the batch's length fixed to match
    cut = cut[:8] + (len(cut) - 12).to_bytes(4, "big") + cut[12:]
    for damaged in (bytes(flipped), with_crc(lengthened), with_crc(cut), good + b"\x00" * 5):
        code, _ = wire.produce_raw("damaged", topic_name, damaged)
        assert code == ErrorCode.CORRUPT_MESSAGE, wire.last_produce_message
        # A good batch followed by a damaged one is refused whole.
        assert wire.produce_raw("damaged", topic_name, good + damaged)[0] == ErrorCode.CORRUPT_MESSAGE
    coordinator = kafka_door.listener.listener.broker.transactions
    assert coordinator.transactions["damaged"].staged == {}
    assert coordinator.memory == 0
    assert wire.produce_raw("damaged", topic_name, good) == (ErrorCode.NONE, 0)
    assert wire.end("damaged", pid, epoch, True) == ErrorCode.NONE
    assert values_of(kafka_door, topic_name) == [b"a", b"b"]


def test_a_batch_whose_decode_fails_after_the_answer_refuses_the_commit(
    kafka_door: Any, topic_name: str, connect: Callable[[], TxnWire]
) -> None:
    """A batch whose client wrote a malformed record under a right CRC passes the
    Produce's checks (its records' lengths fill it) and fails its decode after the
    answer: the commit is refused (INVALID_RECORD) and the transaction aborted, so no
    record of it reaches the topic, the records produced with it included; the producer
    may then abort and go on."""
    kafka_door.engine.create_topic(topic_name)
    wire = connect()
    init = wire.init("malformed")
    pid, epoch = init.producer_id, init.producer_epoch
    wire.add("malformed", pid, epoch, {topic_name: [0]})
    assert wire.produce("malformed", topic_name, [b"a"], pid, epoch, 0) == (ErrorCode.NONE, 0)
    # One record: length, attributes, timestamp and offset deltas, key length -1 (zigzag
    # 0x01), value length 1, "x", no headers. A key length of -2 (0x03) is malformed.
    batch = bytearray(batch_of([b"x"], pid, epoch, 1))
    assert batch[-8:] == b"\x0e\x00\x00\x00\x01\x02x\x00"
    batch[-4] = 0x03
    assert wire.produce_raw("malformed", topic_name, with_crc(batch)) == (ErrorCode.NONE, 1)
    assert wire.end("malformed", pid, epoch, True) == ErrorCode.INVALID_RECORD
    assert wire.describe("malformed").transaction_state == "CompleteAbort"
    assert wire.end("malformed", pid, epoch, True) == ErrorCode.INVALID_TXN_STATE
    assert wire.end("malformed", pid, epoch, False) == ErrorCode.NONE
    assert values_of(kafka_door, topic_name) == []
    assert kafka_door.listener.listener.broker.transactions.memory == 0
    # The same batch with EndTxn sent right behind its Produce, before its answer: the
    # commit is read while the batch may not be decoded yet, and waits for the decode.
    wire.add("malformed", pid, epoch, {topic_name: [0]})
    produced = wire.send(ApiKey.PRODUCE, 9, _produce_request("malformed", topic_name, with_crc(batch)))
    ended = wire.send(
        ApiKey.END_TXN,
        3,
        t.EndTxnRequest(transactional_id="malformed", producer_id=pid, producer_epoch=epoch, committed=True),
    )
    correlation, answer = wire.receive(ApiKey.PRODUCE, 9)
    assert correlation == produced
    assert answer.responses[0].partition_responses[0].error_code == ErrorCode.NONE
    correlation, answer = wire.receive(ApiKey.END_TXN, 3)
    assert (correlation, answer.error_code) == (ended, ErrorCode.INVALID_RECORD)
    assert wire.end("malformed", pid, epoch, False) == ErrorCode.NONE
    # The producer goes on: its next transaction commits.
    wire.add("malformed", pid, epoch, {topic_name: [0]})
    assert wire.produce("malformed", topic_name, [b"b"], pid, epoch, 2) == (ErrorCode.NONE, 0)
    assert wire.end("malformed", pid, epoch, True) == ErrorCode.NONE
    assert values_of(kafka_door, topic_name) == [b"b"]
