"""The Kafka door's transaction coordinator: stage, then apply (decision 0016).

Theory of operation
-------------------
A transactional producer's records never enter their topics while the transaction is
open. Each transactional Produce appends them to the transaction's *staging file*
(staging.py) and is acknowledged from there, with a lower bound of the records' offsets
(stage). EndTxn(commit)

1. appends the *decision* to the staging file and syncs it (the commit point): per
   topic-partition the engine sequence range its records take, and the group offsets
   committed in the transaction;
2. *applies* it: each topic-partition's staged records are appended to their topic as
   batches, under the engine range producer ``kafka-txn:<producer id>:<partition>``
   with the sequences of step 1, and the offsets are committed to their groups.

EndTxn is answered after step 1; step 2 runs as a task of the event loop, overlapping
the producer's next transaction. What must see the commit waits for it: the id's next
commit and InitProducerId (_settle), a Fetch or ListOffsets of its topics (settled),
OffsetFetch with require_stable (pending_offset); other threads ask with wait_applied.
So an id has at most one decided commit not applied yet (its ``commit``) beside its open
transaction, and its commits are applied in order.

A crash after step 1 is finished at the next start: the same appends with the same
sequences, which the engine's durable producer state answers as duplicates where they
were written already; a crash before it leaves a staging file without a decision, which
the next start aborts (and fences the producer). EndTxn(abort) notes the abort. So topics only ever hold
committed records: read_committed and read_uncommitted consumers see the same log, its
last stable offset is its high watermark, no aborted transaction is ever listed, and
the native door, compaction and groups need nothing new.

States (Kafka's names): Empty -> Ongoing (first AddPartitionsToTxn or AddOffsetsToTxn)
-> PrepareCommit -> CompleteCommit, or Ongoing -> CompleteAbort. A producer is fenced
by its epoch: InitProducerId with the transactional id bumps it (aborting what is
open), and so does an abort by timeout or by a restart, so the old producer's next
request gets PRODUCER_FENCED (INVALID_PRODUCER_EPOCH in versions before KIP-588).
KIP-890's server-side defence: a transactional Produce to a partition not added to the
ongoing transaction is refused (INVALID_TXN_STATE), and AddPartitionsToTxn's
verify-only form answers whether partitions are in it.

State lives on the event loop; file and engine work runs on the broker's threads, one
operation of a transactional id at a time (its lock), apart from AddPartitionsToTxn's
look at its topics (schemas, log ends), which reads the engine's open topics on the
loop. Opening a transaction writes its number to its staging slot in the background;
what the transaction acknowledges waits for that write (_opened), so a restart after an
acknowledged Produce, TxnOffsetCommit or commit finds it (decision 0016).

Files, in ``<data dir>/kafka/transactions/``: ``<hash>.json`` (the id's document:
producer id, epoch and timeout, written by InitProducerId and when the producer is
fenced) and ``<hash>.0.stage``, ``<hash>.1.stage`` (the id's two staging slots: the
open transaction's, and the latest committed decision, with the sequences it leaves).
``<hash>`` is the SHA-256 of the transactional id. Once a commit's decision is durable,
the slot the id's next transaction takes holds only applied work (the commit before
was applied before this one was decided): it is emptied then, in the background (the
id's ``spare``), so that opening the next transaction only writes its number.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from odradek import limits
from odradek.engine.producers import RANGE_SEQUENCE_MODULUS
from odradek.errors import InvalidRequest, OdradekError, SequenceError, StorageError, TopicNotFound
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.primitives import DecodeError
from odradek.protocols.kafka.staging import (
    StageFile,
    batches_frame,
    batches_records,
    read_stage,
    remove_stage,
)
from odradek.protocols.kafka.store import OffsetEntry, _load, _save
from odradek.storage.documents import COPY_SUFFIX, Document

if TYPE_CHECKING:
    from odradek.protocols.kafka.broker import Broker
    from odradek.protocols.kafka.txn_cells import CellsLedger

log = logging.getLogger(__name__)

EMPTY = "Empty"
ONGOING = "Ongoing"
PREPARE_COMMIT = "PrepareCommit"
COMPLETE_COMMIT = "CompleteCommit"
COMPLETE_ABORT = "CompleteAbort"
STATES = (EMPTY, ONGOING, PREPARE_COMMIT, "PrepareAbort", COMPLETE_COMMIT, COMPLETE_ABORT)

_EPOCH_MAX = 0x7FFF
TopicPartition = tuple[str, int]


class TransactionError(Exception):
    """A refusal: the Kafka error code and what it means, for the log and the client."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TopicsRefused(TransactionError):
    """Topics a transaction cannot write (a schema checks records as they are appended,
    which for a transaction is at its commit: a refusal then would break its
    atomicity)."""

    def __init__(self, topics: Sequence[str]) -> None:
        super().__init__(
            ErrorCode.INVALID_RECORD,
            f"{', '.join(topics)} has a schema, which transactions do not cover yet",
        )
        self.topics = list(topics)


@dataclasses.dataclass
class Transaction:
    """One transactional id's state."""

    transactional_id: str
    producer_id: int
    epoch: int
    timeout_ms: int
    state: str = EMPTY
    number: int = 0  # transactions begun under this id
    slot: int = 0  # the staging slot of the open (or last) transaction
    committed_slot: int | None = None  # the slot holding the latest committed decision
    started_ms: int = -1  # wall clock, for DescribeTransactions
    started: float = 0.0  # monotonic, for the timeout
    partitions: set[TopicPartition] = dataclasses.field(default_factory=set)
    groups: set[str] = dataclasses.field(default_factory=set)
    offsets: dict[str, dict[TopicPartition, OffsetEntry]] = dataclasses.field(default_factory=dict)
    staged: dict[TopicPartition, int] = dataclasses.field(default_factory=dict)  # records
    # Per partition, the last batches staged: (first sequence, last sequence, base offset
    # answered), so that a retry gets its original answer.
    remembered: dict[TopicPartition, collections.deque[tuple[int, int, int]]] = dataclasses.field(
        default_factory=dict
    )
    # Per partition, a lower bound of the offset of the next record staged: in the open
    # transaction (``open_offsets``) and after the latest commit (``next_offsets``).
    open_offsets: dict[TopicPartition, int] = dataclasses.field(default_factory=dict)
    next_offsets: dict[TopicPartition, int] = dataclasses.field(default_factory=dict)
    sequences: dict[TopicPartition, int] = dataclasses.field(default_factory=dict)  # next, applied
    # The open transaction's staged records also kept in memory, decoded (None: only in
    # the staging file), so that a commit need not read them back; within the
    # coordinator's memory budget. A Produce's entry is None until its records are
    # decoded, after its answer (_decode).
    tables: dict[TopicPartition, list[pa.Table | None]] | None = None
    # The decodes of the open transaction's Produces, in staging order: a commit waits
    # for them, and is refused if one failed.
    decodes: list[asyncio.Future[None]] = dataclasses.field(default_factory=list)
    # Their frames not written to the staging file yet: written with the decision.
    unwritten: list[bytes] = dataclasses.field(default_factory=list)
    unwritten_bytes: int = 0
    memory: int = 0  # bytes of tables and unwritten frames, in the coordinator's budget
    table_bytes: int = 0  # the share of ``memory`` that the decoded tables hold
    ends: dict[str, int] = dataclasses.field(default_factory=dict)  # log ends when added
    stage: StageFile | None = None
    # The open transaction's staging file while its number is written, in the
    # background (_opened): what the transaction acknowledges waits for it.
    opening: asyncio.Future[StageFile] | None = None
    commit: Commit | None = None  # the decided commit not applied yet
    # The staging file holds a decision whose sync failed: it may reach the disk, so an
    # abort must be made durable after it (a synced note) before it is answered.
    in_doubt: bool = False
    spare: asyncio.Future[StageFile] | None = None  # the next transaction's slot, emptied
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    # Over cells (txn_cells.py): the open transaction's partitions of other cells, by
    # cell (a coordinator's); an open transaction a restart found, waiting for etcd's
    # word (a participant's); the number of the latest commit a cell's veto voided.
    remote: dict[str, set[TopicPartition]] = dataclasses.field(default_factory=dict)
    recovering: bool = False
    voided: int = -1

    def describe_partitions(self) -> dict[str, list[int]]:
        return partitions_by_topic(self.partitions)


def partitions_by_topic(partitions: Iterable[TopicPartition]) -> dict[str, list[int]]:
    """Each topic's partition numbers, in order."""
    topics: dict[str, list[int]] = {}
    for topic, partition in sorted(partitions):
        topics.setdefault(topic, []).append(partition)
    return topics


def _sequences_of(decision: dict[str, Any]) -> dict[TopicPartition, int]:
    """The engine sequences a committed decision leaves each partition at."""
    return {(str(t), int(p)): int(n) for t, p, n in decision["sequences"]}


@dataclasses.dataclass
class Commit:
    """A decided commit until it is applied: what the apply needs, apart from the
    transaction its id may open meanwhile."""

    decision: dict[str, Any]
    slot: int  # the staging slot holding its records and decision
    stage: StageFile | None = None  # to note "applied" in (None: reopened then)
    tables: dict[TopicPartition, list[pa.Table]] | None = None  # None: read back
    memory: int = 0
    applying: asyncio.Task[None] | None = None  # its apply, running
    # A decision enlisting other cells is the commit once etcd says so (txn_cells.py);
    # the offsets' lower bounds before it, for a veto that voids it.
    confirmed: bool = True
    offsets_before: dict[TopicPartition, int] | None = None

    def holds_offset(self, group_id: str, partition: TopicPartition) -> bool:
        return any((t, p) == partition for t, p, *_ in self.decision["offsets"].get(group_id, ()))


def _hash(transactional_id: str) -> str:
    return hashlib.sha256(transactional_id.encode()).hexdigest()


def engine_producer_id(producer_id: int, partition: int) -> str:
    """The engine range producer a transactional id's commits append under."""
    return f"kafka-txn:{producer_id}:{partition}"


class TransactionCoordinator:
    """Every transactional id's state, its documents and staging files."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.disk = broker.engine.disk
        self.fsync = broker.engine.fsync
        self.directory = os.path.join(broker.store.directory, "transactions")
        self.transactions: dict[str, Transaction] = {}
        self._documents: dict[str, Document] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.memory = 0  # bytes of staged records kept in memory, all transactions
        # The applies running in the background, by topic (a Fetch of the topic waits for
        # them), and their number for other threads (wait_applied).
        self._applying: dict[str, set[asyncio.Task[None]]] = {}
        self._applies = 0
        self._applied = threading.Condition()
        # Over cells, the enlistments of other cells in etcd (txn_cells.py): the home
        # cell's door coordinates, another cell's door takes part.
        self.ledger: CellsLedger | None = None
        if broker.cells is not None:
            from odradek.protocols.kafka.txn_cells import CellsLedger

            self.ledger = CellsLedger(self, broker.cells)
        self.participant = self.ledger is not None and not self.ledger.home
        self._aborted_at_restart: list[Transaction] = []
        self._load()
        if self.ledger is not None:
            self.ledger.recover(self.transactions.values())
            for txn in self._aborted_at_restart:
                self._spawn(self._abort_remote(txn, txn.number))
        self._aborted_at_restart.clear()
        self._checker = asyncio.get_running_loop().create_task(self._check_loop())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_retrieved)

    def saved(self, txn: Transaction) -> bool:
        """Whether the id's document was written or read (a restart finds the id)."""
        return txn.transactional_id in self._documents

    def schema_check(self, topics: Sequence[str]) -> Callable[[], None]:
        """A check refusing ``topics`` if one has a schema (TopicsRefused), for _begin."""

        def check() -> None:
            schemad = [name for name in topics if self.broker.engine.get_schema(name) is not None]
            if schemad:
                raise TopicsRefused(schemad)

        return check

    # -- documents --------------------------------------------------------------------

    def _document(self, transactional_id: str) -> Document:
        document = self._documents.get(transactional_id)
        if document is None:
            path = os.path.join(self.directory, _hash(transactional_id) + ".json")
            document = Document(self.disk, path, mode="mirror", sync=self.fsync)
            self._documents[transactional_id] = document
        return document

    def _stage_path(self, transactional_id: str, slot: int) -> str:
        return os.path.join(self.directory, f"{_hash(transactional_id)}.{slot}.stage")

    def _save(self, txn: Transaction) -> None:
        """Write the id's document (a file write: on the broker's threads)."""
        data = {
            "transactional_id": txn.transactional_id,
            "producer_id": txn.producer_id,
            "epoch": txn.epoch,
            "timeout_ms": txn.timeout_ms,
        }
        _save(self._document(txn.transactional_id), data)

    def _load(self) -> None:
        """Load every id's state from its document and staging slots. The latest
        committed decision not noted as applied is applied again (in the background); a
        newer transaction without a decision or an abort note was open: it is aborted and
        its producer fenced."""
        if not self.disk.isdir(self.directory):
            self.disk.makedirs(self.directory)
        names = self.disk.listdir(self.directory)
        hashes = {name.split(".")[0] for name in names if name.endswith((".json", ".json" + COPY_SUFFIX))}
        for hashed in sorted(hashes):
            document = Document(
                self.disk, os.path.join(self.directory, hashed + ".json"), mode="mirror", sync=self.fsync
            )
            try:
                data = _load(document)
                if not data:
                    continue
                txn = Transaction(
                    str(data["transactional_id"]),
                    int(data["producer_id"]),
                    int(data["epoch"]),
                    int(data["timeout_ms"]),
                )
                self._documents[txn.transactional_id] = document
                self._recover(txn)
            except (OdradekError, KeyError, TypeError, ValueError) as exc:
                # One id's damaged state must not keep the door from serving the others;
                # its files stay for an operator to look at.
                log.error("transactional id state %s cannot be loaded; it is left out: %s", hashed, exc)
                continue
            self.transactions[txn.transactional_id] = txn
        for name in names:  # staging files of ids without a document: never acknowledged
            if name.endswith(".stage") and name.split(".")[0] not in hashes:
                remove_stage(self.disk, os.path.join(self.directory, name))

    def _recover(self, txn: Transaction) -> None:
        stages = [
            (slot, read_stage(self.disk, self._stage_path(txn.transactional_id, slot))) for slot in (0, 1)
        ]
        found = [(stage.number, slot, stage) for slot, stage in stages if stage is not None]
        if not found:
            return
        txn.number = max(number for number, _, _ in found)
        # A decision followed by an abort note is a commit whose sync failed and that the
        # producer aborted then (the note was synced before the abort was answered).
        decided = [
            (number, slot, stage)
            for number, slot, stage in found
            if stage.decision is not None and not stage.aborted
        ]
        if decided:
            _, slot, stage = max(decided, key=lambda item: item[0])
            decision = stage.decision
            assert decision is not None
            txn.committed_slot = txn.slot = slot
            txn.sequences = _sequences_of(decision)
            if stage.applied:
                txn.state = COMPLETE_COMMIT
            else:
                txn.state = PREPARE_COMMIT
                txn.commit = Commit(decision, slot, confirmed=not decision.get("cells"))
                log.info("transaction %r: finishing its commit", txn.transactional_id)
                self._start_apply(txn, txn.commit)
        _, newest_slot, newest = max(found, key=lambda item: item[0])
        if newest.decision is None and not newest.aborted and self.participant:
            # Open here when the server stopped: its coordinator may have committed it
            # meanwhile. etcd says (txn_cells.py); until then it admits nothing more.
            txn.state, txn.slot, txn.recovering = ONGOING, newest_slot, True
            txn.started = time.monotonic()
            log.info(
                "transaction %r was open at the restart: asking its coordinator's decision",
                txn.transactional_id,
            )
        elif newest.decision is None and not newest.aborted:
            # Open when the server stopped: aborted, and its producer fenced.
            self._aborted_at_restart.append(txn)
            txn.epoch = (txn.epoch + 1) & _EPOCH_MAX
            txn.state = COMPLETE_ABORT
            log.info("transaction %r was open at the restart: aborted", txn.transactional_id)
            try:
                self._save(txn)
            except StorageError as exc:  # fenced until the next restart only
                log.warning("transaction %r: its producer's fencing not saved: %s", txn.transactional_id, exc)

    # -- InitProducerId ---------------------------------------------------------------

    async def init_producer(
        self, transactional_id: str, timeout_ms: int, producer_id: int, epoch: int, version: int
    ) -> tuple[int, int]:
        """(producer id, epoch) for a producer of ``transactional_id``: a new epoch that
        fences every earlier one, after aborting what the id had open."""
        if not transactional_id or len(transactional_id) > limits.kafka_transactional_id_chars_max:
            raise TransactionError(
                ErrorCode.INVALID_REQUEST,
                f"a transactional.id is 1 to {limits.kafka_transactional_id_chars_max} characters long",
            )
        if not 1 <= timeout_ms <= limits.kafka_transaction_timeout_ms_max:
            raise TransactionError(
                ErrorCode.INVALID_TRANSACTION_TIMEOUT,
                f"transaction.timeout.ms must be 1 to {limits.kafka_transaction_timeout_ms_max}, "
                f"got {timeout_ms}",
            )
        txn = self.transactions.get(transactional_id)
        if txn is None:
            if len(self.transactions) >= limits.kafka_transactional_ids_max:
                raise TransactionError(
                    ErrorCode.COORDINATOR_NOT_AVAILABLE,
                    f"this server keeps {limits.kafka_transactional_ids_max} transactional ids, its limit",
                )
            new_id = await self.broker.call(self.broker.store.next_producer_id)
            txn = self.transactions.setdefault(
                transactional_id, Transaction(transactional_id, new_id, -1, timeout_ms)
            )
        async with txn.lock:
            if producer_id >= 0 and epoch >= 0 and (producer_id, epoch) != (txn.producer_id, txn.epoch):
                raise self._fenced(txn, version, 4)  # KIP-360: only the current producer may bump
            await self._settle(txn)
            if txn.state == ONGOING:
                await self._abort(txn, "a new producer of its transactional.id started")
            previous = (txn.producer_id, txn.epoch, txn.timeout_ms, txn.state)
            if txn.epoch >= _EPOCH_MAX - 1:
                txn.producer_id = await self.broker.call(self.broker.store.next_producer_id)
                txn.epoch = 0
                txn.sequences.clear()
            else:
                txn.epoch += 1
            txn.timeout_ms = timeout_ms
            txn.state = EMPTY
            try:
                await self.broker.call(self._save, txn)
            except StorageError:
                txn.producer_id, txn.epoch, txn.timeout_ms, txn.state = previous
                raise
            return txn.producer_id, txn.epoch

    # -- checks -----------------------------------------------------------------------

    def _fenced(self, txn: Transaction, version: int, fenced_from: int) -> TransactionError:
        code = ErrorCode.PRODUCER_FENCED if version >= fenced_from else ErrorCode.INVALID_PRODUCER_EPOCH
        return TransactionError(
            code,
            f"producer epoch is not the current one of transactional.id {txn.transactional_id!r} "
            f"({txn.epoch}): a newer producer took over, or the transaction timed out",
        )

    def identify(
        self, transactional_id: str, producer_id: int, epoch: int, version: int = 0, fenced_from: int = 99
    ) -> Transaction:
        """The id's state if the producer is its current one; TransactionError if not."""
        txn = self.transactions.get(transactional_id)
        if txn is None or txn.producer_id != producer_id:
            raise TransactionError(
                ErrorCode.INVALID_PRODUCER_ID_MAPPING,
                f"producer id {producer_id} is not that of transactional.id {transactional_id!r}; "
                "call InitProducerId (init_transactions) first",
            )
        if epoch != txn.epoch:
            raise self._fenced(txn, version, fenced_from)
        return txn

    def _begin(
        self,
        txn: Transaction,
        admit: Callable[[], None] | None = None,
        topics: Sequence[str] = (),
        number: int | None = None,
    ) -> None:
        """Open a transaction if none is open; note the log ends of ``topics``, its
        records' offsets' lower bound. The previous commit may still be applying: the
        next commit waits for it (end). ``admit`` runs first; if it raises, nothing is
        begun. The staging file is opened and the transaction's number written in the
        background (_opened): the request that opens the transaction waits for no
        thread."""
        if txn.state == ONGOING:
            if admit is not None or topics:
                txn.ends.update(self._admit(admit, topics))
            return
        open_now = sum(1 for other in self.transactions.values() if other.state == ONGOING)
        if open_now >= limits.kafka_open_transactions_max:
            raise TransactionError(
                ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
                f"{limits.kafka_open_transactions_max} transactions are open, this server's limit; retry",
            )
        ends = self._admit(admit, topics)
        txn.number = txn.number + 1 if number is None else number  # a participant's: its enlistment's
        txn.slot = 0 if txn.committed_slot is None else 1 - txn.committed_slot
        txn.stage = None
        txn.opening = self._open(txn)
        txn.state = ONGOING
        txn.started_ms = int(time.time() * 1000)
        txn.started = time.monotonic()
        txn.partitions.clear()
        txn.remote.clear()
        txn.groups.clear()
        txn.offsets.clear()
        txn.staged.clear()
        txn.remembered.clear()
        txn.open_offsets = dict(txn.next_offsets)
        txn.ends = ends
        self._forget_tables(txn)
        txn.tables = {}
        txn.decodes = []

    def _admit(self, admit: Callable[[], None] | None, topics: Sequence[str]) -> dict[str, int]:
        """``admit``, then the durable end of each topic. On the event loop: both read
        the engine's open topics in memory, as a Fetch's look at the log's end does
        (data.py _has_data)."""
        if admit is not None:
            admit()
        return {topic: self.broker.engine.resolve_start(topic, "latest") for topic in topics}

    def _open(self, txn: Transaction) -> asyncio.Future[StageFile]:
        """Open the open transaction's staging file in the background: the spare
        emptied ahead, its number written, or the slot opened and emptied now."""
        path = self._stage_path(txn.transactional_id, txn.slot)
        number = txn.number
        spare, txn.spare = txn.spare, None

        async def open_it() -> StageFile:
            await _after_the_answer()
            stage = None if spare is None else await self._take_spare(spare, txn, path)
            return await self.broker.call(self._open_stage, path, number, stage)

        opening = asyncio.ensure_future(open_it())
        opening.add_done_callback(_retrieved)
        return opening

    def _open_stage(self, path: str, number: int, spare: StageFile | None) -> StageFile:
        """The transaction's staging file with its number written (the broker's threads)."""
        if spare is None:
            return StageFile(self.disk, path, number, sync=self.fsync)
        spare.begin(number)  # closes it if it fails
        return spare

    async def _opened(self, txn: Transaction) -> StageFile:
        """The open transaction's staging file, once its number is written. What the
        transaction acknowledges waits for it (a Produce's records, TxnOffsetCommit's
        offsets, the commit), so that a restart after any of them finds the
        transaction open and fences its producer. StorageError if it could not be
        opened: nothing is acknowledged, and the next request tries again."""
        if txn.stage is not None:
            return txn.stage
        opening = txn.opening
        if opening is None:  # the last attempt failed
            opening = txn.opening = self._open(txn)
        try:
            stage = await asyncio.shield(opening)
        except BaseException:
            if txn.opening is opening and opening.done():
                txn.opening = None
            raise
        if txn.opening is opening:
            txn.opening, txn.stage = None, stage
        return stage

    # -- AddPartitionsToTxn, AddOffsetsToTxn ------------------------------------------

    async def add_partitions(
        self,
        txn: Transaction,
        partitions: list[TopicPartition],
        admit: Callable[[], None] | None = None,
        remote: Mapping[str, set[TopicPartition]] | None = None,
    ) -> None:
        """Add partitions to the id's transaction, opening it if none is open, once
        ``admit`` (the door's checks, on the broker's threads) has not raised.
        ``remote``: partitions of other cells' topics, by cell (txn_cells.py), enlisted
        in etcd before this returns."""
        async with txn.lock:
            await self._confirm_previous(txn)
            self._begin(txn, admit, sorted({topic for topic, _ in partitions}))
            txn.partitions.update(partitions)
            if remote:
                await self._enlist(txn, remote)

    async def _enlist(self, txn: Transaction, remote: Mapping[str, set[TopicPartition]]) -> None:
        from odradek.protocols.kafka.txn_cells import TransactionAbortable

        assert self.ledger is not None
        # The transaction's number durable first: a restart then finds it open, aborts
        # its enlistments and fences its producer, whatever the cells acknowledged.
        await self._opened(txn)
        try:
            await self.ledger.enlist(txn, _hash(txn.transactional_id), remote)
        except TransactionAbortable as exc:
            raise TransactionError(
                ErrorCode.TRANSACTION_ABORTABLE, f"{exc.message}; abort it and go on"
            ) from exc
        except OdradekError as exc:
            raise TransactionError(
                ErrorCode.COORDINATOR_NOT_AVAILABLE,
                f"the transaction's other cells cannot be told ({exc}); retry",
            ) from exc
        for partitions in remote.values():
            txn.partitions.update(partitions)

    async def _confirm_previous(self, txn: Transaction) -> None:
        """Before the id's next transaction opens: its decided commit that enlisted
        other cells is known committed or voided (a later number in etcd would say
        "committed" of it: txn_cells.py)."""
        commit = txn.commit
        if commit is not None and not commit.confirmed:
            await self._confirm(txn, commit)

    def verify(self, txn: Transaction, partition: TopicPartition) -> bool:
        """KIP-890: whether the partition is in the id's ongoing transaction."""
        return txn.state == ONGOING and partition in txn.partitions

    async def add_offsets(self, txn: Transaction, group_id: str) -> None:
        async with txn.lock:
            await self._confirm_previous(txn)
            self._begin(txn)
            txn.groups.add(group_id)

    def pending_offset(self, group_id: str, topic: str, partition: int) -> bool:
        """Whether an open or committing transaction holds an offset of the group's
        partition that is not applied yet (KIP-447's unstable offset)."""
        for txn in self.transactions.values():
            if txn.state == ONGOING and (topic, partition) in txn.offsets.get(group_id, {}):
                return True
            if txn.commit is not None and txn.commit.holds_offset(group_id, (topic, partition)):
                return True
        return False

    async def stage_offsets(
        self, txn: Transaction, group_id: str, offsets: dict[TopicPartition, OffsetEntry]
    ) -> None:
        """Stage TxnOffsetCommit's offsets (acknowledged once the transaction's number
        is written: _opened)."""
        async with txn.lock:
            if txn.state != ONGOING or group_id not in txn.groups:
                raise TransactionError(
                    ErrorCode.INVALID_TXN_STATE,
                    f"group {group_id!r} was not added to the transaction (AddOffsetsToTxn first)",
                )
            await self._opened(txn)
            txn.offsets.setdefault(group_id, {}).update(offsets)

    # -- Produce ----------------------------------------------------------------------

    async def stage(
        self,
        txn: Transaction,
        topic: str,
        partition: int,
        batches: bytes,
        first: int,
        count: int,
    ) -> int:
        """Stage a transactional Produce's records of one partition (its record batches
        as sent, which its frame holds, checked by records.check_batches); the base
        offset to answer. A retry of one of the partition's last batches is answered as
        it was, without staging it again. The batches are decoded into Arrow after the
        answer (_decode), off the client's serial path; the commit waits for that.

        The records' offsets are not known before the commit applies them, but a lower
        bound is: the log's end when the partition was added to the transaction plus
        the records staged before them for the partition, and never below what this id
        answered for its earlier records of the partition (its commits are applied in
        order). Kafka's clients report it as the records' offsets; stream processors
        (Quix Streams) keep the latest one as the position their state is restored
        from, which a lower bound keeps correct (the restore reads a few records more)
        and which must not go back.

        While the transaction's frames fit the coordinator's memory budget, they are
        kept and written with the decision (one write, one sync at the commit), and so
        are their decoded records while they fit too: a Produce then waits for no
        thread and no file. Beyond it, the frames are written as they come and the
        commit reads the records back."""
        async with txn.lock:
            key = (topic, partition)
            if not self.verify(txn, key):
                raise TransactionError(
                    ErrorCode.INVALID_TXN_STATE,
                    f"partition {partition} of {topic} is not in an ongoing transaction of "
                    f"{txn.transactional_id!r} (AddPartitionsToTxn first)",
                )
            last = (first + count - 1) % RANGE_SEQUENCE_MODULUS
            remembered = txn.remembered.setdefault(
                key, collections.deque(maxlen=limits.kafka_transaction_batches_remembered)
            )
            for known_first, known_last, known_base in remembered:
                if (known_first, known_last) == (first, last):
                    return known_base
            if remembered and first != (remembered[-1][1] + 1) % RANGE_SEQUENCE_MODULUS:
                raise TransactionError(
                    ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                    f"sequence {first} follows {remembered[-1][1]} in a transaction of "
                    f"{txn.transactional_id!r}",
                )
            stage = await self._opened(txn)
            frame = batches_frame(topic, partition, batches, count)
            if stage.bytes + txn.unwritten_bytes + len(frame) > limits.kafka_transaction_staged_bytes_max:
                raise TransactionError(
                    ErrorCode.MESSAGE_TOO_LARGE,
                    f"a transaction stages at most {limits.kafka_transaction_staged_bytes_max} bytes; "
                    "commit smaller transactions",
                )
            held = len(frame)
            tables = txn.tables
            if (
                tables is not None
                and not self.participant
                and self.memory + held <= limits.kafka_transaction_memory_bytes_max
            ):
                # Kept: the frame is written with the decision, the records (once
                # decoded) applied from here.
                txn.unwritten.append(frame)
                txn.unwritten_bytes += held
                txn.memory += held
                self.memory += held
            else:
                # Beyond the budget: what is kept goes to the staging file now, and from
                # here each frame as it comes; the commit reads the records back. A
                # participant's each as it comes, synced (txn_cells.py).
                try:
                    await self.broker.call(stage.append, b"".join([*txn.unwritten, frame]), self.participant)
                except StorageError as exc:
                    if self.participant and self.ledger is not None:
                        await self.ledger.veto(txn, f"its records could not be staged: {exc.message}")
                    raise
                self._forget_tables(txn)
                tables = None
            base = max(txn.ends[topic] + txn.staged.get(key, 0), txn.open_offsets.get(key, 0))
            txn.open_offsets[key] = base + count
            remembered.append((first, last, base))
            txn.staged[key] = txn.staged.get(key, 0) + count
            self._decode(txn, key, memoryview(frame)[len(frame) - len(batches) :], tables)
            if self.participant and self.ledger is not None:
                # Acknowledged once known to decode: its commit is not this door's to refuse.
                try:
                    await asyncio.shield(txn.decodes[-1])
                except Exception as exc:
                    await self.ledger.veto(txn, f"a record batch it staged cannot be decoded: {exc}")
                    raise TransactionError(
                        ErrorCode.INVALID_RECORD,
                        f"the transaction was aborted: a record batch cannot be decoded ({exc})",
                    ) from exc
            return base

    async def admit_produce(
        self, transactional_id: str, producer_id: int, epoch: int, key: TopicPartition
    ) -> Transaction:
        """The transaction a transactional Produce of ``key`` stages in: the id's here,
        or with this door another cell's participant, the one its enlistment names."""
        if self.participant and self.ledger is not None:
            try:
                return await self.ledger.admit(transactional_id, producer_id, epoch, key)
            except OdradekError as exc:  # (a TransactionError is no OdradekError: it passes)
                raise TransactionError(
                    ErrorCode.REQUEST_TIMED_OUT, f"the transaction's enlistment cannot be read ({exc}); retry"
                ) from exc
        return self.identify(transactional_id, producer_id, epoch)

    def _decode(
        self,
        txn: Transaction,
        key: TopicPartition,
        batches: memoryview,
        tables: dict[TopicPartition, list[pa.Table | None]] | None,
    ) -> None:
        """Decode a staged Produce's record batches into Arrow after its answer (one turn
        of the event loop later, while the client runs its delivery callbacks): the
        Produce checked them (check_batches) without building any table. The records
        are kept in ``tables``, in staging order, if those are still the transaction's
        and they fit the memory budget; if not, none of the transaction's are kept and
        the commit reads them back from the staging file. The commit waits for every
        decode and is refused if one failed (_decoded)."""
        index = -1
        if tables is not None:
            entries = tables.setdefault(key, [])
            index = len(entries)
            entries.append(None)

        async def decode_it() -> None:
            await _after_the_answer()
            records = batches_records(batches)
            if tables is None or txn.tables is not tables:
                return  # read back at the commit, or the transaction is gone
            held = records.nbytes
            if self.memory + held > limits.kafka_transaction_memory_bytes_max:
                self._forget_decoded(txn)
                return
            tables[key][index] = records
            txn.table_bytes += held
            txn.memory += held
            self.memory += held

        task = asyncio.get_running_loop().create_task(decode_it())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_retrieved)
        txn.decodes.append(task)

    async def _decoded(self, txn: Transaction) -> None:
        """Wait for the decodes of the open transaction's Produces. If one failed (a
        batch whose client wrote malformed records under a right CRC, or a record over
        a bound), the transaction is aborted and its commit refused (INVALID_RECORD):
        nothing of it is applied."""
        for decode in list(txn.decodes):
            try:
                await asyncio.shield(decode)
            except Exception as exc:
                if not isinstance(exc, DecodeError):
                    log.exception("transaction %r: decoding its records failed", txn.transactional_id)
                await self._abort(txn, f"a record batch it staged cannot be decoded: {exc}")
                raise TransactionError(
                    ErrorCode.INVALID_RECORD,
                    f"the transaction was aborted: a record batch it staged cannot be decoded ({exc})",
                ) from exc

    def _forget_decoded(self, txn: Transaction) -> None:
        """Release the open transaction's decoded records (beyond the memory budget):
        its commit reads them back from the staging file, where its frames are by
        then. Its frames kept for the decision stay."""
        self.memory -= txn.table_bytes
        txn.memory -= txn.table_bytes
        txn.table_bytes = 0
        txn.tables = None

    # -- EndTxn -----------------------------------------------------------------------

    async def end(self, txn: Transaction, commit: bool) -> None:
        async with txn.lock:
            if txn.state == PREPARE_COMMIT and commit:
                await self._settle(txn)  # a retry: answered once the decided commit is applied
                if txn.state == COMPLETE_ABORT:
                    raise self._voided(txn)
                return
            if commit and txn.state == COMPLETE_ABORT and txn.voided == txn.number:
                raise self._voided(txn)  # a retry of a commit a cell voided
            if txn.state == (COMPLETE_COMMIT if commit else COMPLETE_ABORT):
                return  # a retry of an EndTxn that was answered already
            if txn.state != ONGOING:
                raise TransactionError(
                    ErrorCode.INVALID_TXN_STATE,
                    f"transactional.id {txn.transactional_id!r} has no ongoing transaction to "
                    f"{'commit' if commit else 'abort'} (state {txn.state})",
                )
            if not commit:
                await self._abort(txn, "the producer aborted it")
                return
            await self._decoded(txn)  # every staged batch decodes, or nothing is committed
            await self._settle(txn)  # the previous commit is applied first
            await self._prepare(txn)
            assert txn.commit is not None
            if not await self._confirm(txn, txn.commit):  # other cells: etcd decides
                raise self._voided(txn)
            # Answered once the decision is durable (the commit point; a restart applies
            # it): the records are applied in the background, as Kafka writes its markers
            # after EndTxn is answered. What must see them waits for the apply: the id's
            # next commit and InitProducerId (_settle), a Fetch of their topics.
            assert txn.commit is not None
            self._start_apply(txn, txn.commit)
            self._empty_spare(txn)

    async def _prepare(self, txn: Transaction) -> None:
        """Decide: the sequences each partition's records take, the offsets; durable in
        the staging file before anything is applied."""
        ranges = []
        sequences = dict(txn.sequences)
        for (topic, partition), count in txn.staged.items():
            first = sequences.get((topic, partition), 0)
            ranges.append([topic, partition, first])
            sequences[(topic, partition)] = (first + count) % RANGE_SEQUENCE_MODULUS
        decision: dict[str, Any] = {
            "number": txn.number,
            "producer_id": txn.producer_id,
            "ranges": ranges,
            "sequences": [[topic, partition, next_] for (topic, partition), next_ in sequences.items()],
            "offsets": {
                group: [[t, p, o, e, m] for (t, p), (o, e, m) in offsets.items()]
                for group, offsets in txn.offsets.items()
            },
        }
        if txn.remote:  # committed once etcd says so (txn_cells.py)
            decision["cells"] = sorted(txn.remote)
        stage = await self._opened(txn)
        before = stage.bytes
        try:
            await self.broker.call(stage.decide, decision, b"".join(txn.unwritten))
        finally:
            if stage.bytes > before:  # the frames are in the file, synced or not
                self._written(txn)
                txn.in_doubt = True  # until the decide returns: its sync may have failed
        txn.in_doubt = False
        txn.sequences = sequences
        offsets_before = dict(txn.next_offsets)
        txn.next_offsets.update(txn.open_offsets)
        txn.committed_slot = txn.slot
        txn.state = PREPARE_COMMIT
        # The records, memory and staging file pass to the commit: the id's next
        # transaction may open while it is applied.
        tables = _decoded_tables(txn.tables)
        if tables is None and txn.tables is not None:
            self._forget_decoded(txn)
        txn.commit = Commit(decision, txn.slot, stage, tables, txn.memory)
        txn.commit.confirmed, txn.commit.offsets_before = not txn.remote, offsets_before
        txn.stage, txn.tables, txn.memory, txn.table_bytes = None, None, 0, 0

    # -- over cells (txn_cells.py) ----------------------------------------------------

    async def _confirm(self, txn: Transaction, commit: Commit) -> bool:
        """Whether a decided commit stands: at once without other cells; else once etcd
        has its enlistments at ``commit`` (swapped now, or found so). A cell's veto
        voids it (False). TransactionError (retriable) while etcd does not answer."""
        if commit.confirmed:
            return True
        assert self.ledger is not None
        decision = commit.decision
        try:
            committed = await self.ledger.decide(
                txn.transactional_id,
                _hash(txn.transactional_id),
                int(decision["producer_id"]),
                int(decision["number"]),
                commit=True,
            )
        except OdradekError as exc:
            log.warning("transaction %r: its commit cannot be decided yet: %s", txn.transactional_id, exc)
            raise TransactionError(
                ErrorCode.COORDINATOR_NOT_AVAILABLE, f"the commit could not be decided yet ({exc}); retry"
            ) from exc
        if committed:
            commit.confirmed = True
            return True
        await self._void(txn, commit)
        return False

    async def _void(self, txn: Transaction, commit: Commit) -> None:
        """A decision a cell vetoed: noted aborted (synced: a restart leaves it), its
        records dropped, and the id's latest decision the one before it again."""
        await self._note(txn, commit, "aborted", sync=True)
        self._forget_tables(commit)
        if txn.commit is commit:
            txn.commit = None
        txn.voided = int(commit.decision["number"])
        txn.state = COMPLETE_ABORT
        if commit.offsets_before is not None:  # its records never took those offsets
            txn.next_offsets = commit.offsets_before
        other = await self.broker.call(
            read_stage, self.disk, self._stage_path(txn.transactional_id, 1 - commit.slot)
        )
        if other is not None and other.decision is not None and not other.aborted:
            txn.committed_slot = 1 - commit.slot
            txn.sequences = _sequences_of(other.decision)
        else:
            txn.committed_slot = None
            txn.sequences = {}
        log.info("transaction %r aborted: another cell vetoed its commit", txn.transactional_id)

    def _voided(self, txn: Transaction) -> TransactionError:
        return TransactionError(
            ErrorCode.TRANSACTION_ABORTABLE,
            f"the transaction of {txn.transactional_id!r} was aborted: a cell it wrote could not keep "
            "its records (a restart, a failed write); abort it and go on",
        )

    async def _abort_remote(self, txn: Transaction, number: int) -> None:
        """Abort the id's enlistments of transaction ``number`` in etcd (best effort:
        its cells find it aborted at the id's next enlistment, or veto it after twice
        its timeout)."""
        if self.ledger is None or not self.ledger.home:
            return
        try:
            await self.ledger.decide(
                txn.transactional_id, _hash(txn.transactional_id), txn.producer_id, number, commit=False
            )
        except OdradekError as exc:
            log.warning(
                "transaction %r: its abort did not reach its other cells: %s", txn.transactional_id, exc
            )

    async def reopen_stage(self, txn: Transaction) -> None:
        """The open transaction's staging file a restart found, opened to note in."""
        txn.stage = await self._reopened(txn, txn.slot)
        txn.opening = None

    async def _reopened(self, txn: Transaction, slot: int) -> StageFile | None:
        """The id's staging file of ``slot``, opened as it is to append to."""
        return await self.broker.call(_reopen, self.disk, self._stage_path(txn.transactional_id, slot))

    async def _note(self, txn: Transaction, commit: Commit, what: str, sync: bool = False) -> None:
        """Note ``what`` in the commit's staging file (opened again if a restart closed
        it) and close it there."""
        stage, commit.stage = commit.stage, None
        if stage is None:
            stage = await self._reopened(txn, commit.slot)
        if stage is not None:
            await self.broker.call(stage.note, what, sync)

    async def commit_here(self, txn: Transaction) -> None:
        """A participant's open transaction that its coordinator committed: decided and
        applied here, as the coordinator's own (under the id's lock). After a restart,
        from what its staging file holds."""
        if txn.recovering:
            path = self._stage_path(txn.transactional_id, txn.slot)
            found = await self.broker.call(read_stage, self.disk, path)
            if found is None or found.number != txn.number:
                raise StorageError(f"{path} does not hold transaction {txn.number} any more")
            txn.staged.clear()
            for topic, partition, table in found.frames:
                txn.staged[(topic, partition)] = txn.staged.get((topic, partition), 0) + table.num_rows
            await self.reopen_stage(txn)
            if txn.stage is None:
                raise StorageError(f"{path} cannot be opened to decide transaction {txn.number}")
            txn.tables = None
            txn.recovering = False
        await self._settle(txn)
        await self._prepare(txn)
        assert txn.commit is not None
        self._start_apply(txn, txn.commit)
        self._empty_spare(txn)

    def _written(self, txn: Transaction) -> None:
        """The unwritten frames are in the staging file: their memory is released."""
        self.memory -= txn.unwritten_bytes
        txn.memory -= txn.unwritten_bytes
        txn.unwritten.clear()
        txn.unwritten_bytes = 0

    def _forget_tables(self, owner: Transaction | Commit) -> None:
        """Release the records kept in memory (and a transaction's unwritten frames)."""
        self.memory -= owner.memory
        owner.memory = 0
        owner.tables = None
        if isinstance(owner, Transaction):
            owner.unwritten.clear()
            owner.unwritten_bytes = 0
            owner.table_bytes = 0

    def _empty_spare(self, txn: Transaction) -> None:
        """Empty the slot the id's next transaction takes, in the background: it holds
        the commit before the one just decided, which was applied before that was
        decided, so nothing in it is needed any more."""
        if txn.committed_slot is None:
            return
        path = self._stage_path(txn.transactional_id, 1 - txn.committed_slot)

        async def empty_it() -> StageFile:
            await _after_the_answer()
            return await self.broker.call(StageFile, self.disk, path, None, sync=self.fsync, empty=True)

        spare = asyncio.ensure_future(empty_it())
        spare.add_done_callback(_retrieved)
        txn.spare = spare

    async def _take_spare(
        self, spare: asyncio.Future[StageFile], txn: Transaction, path: str
    ) -> StageFile | None:
        """The emptied staging file of ``path`` from ``spare`` (None if emptying it
        failed, or it is of another slot: then the caller opens it)."""
        try:
            stage = await asyncio.shield(spare)
        except (StorageError, OSError) as exc:
            log.info("transaction %r: its next slot was not emptied ahead: %s", txn.transactional_id, exc)
            return None
        if stage.path != path:
            stage.close()
            return None
        return stage

    def _start_apply(self, txn: Transaction, commit: Commit) -> None:
        """Apply a decided commit in the background (on the event loop)."""
        decision = commit.decision
        task = asyncio.get_running_loop().create_task(self._apply_quietly(txn, commit))
        commit.applying = task
        topics = {str(topic) for topic, _, _ in decision["ranges"]}
        for topic in topics:
            self._applying.setdefault(topic, set()).add(task)
        with self._applied:
            self._applies += 1

        def done(_: asyncio.Task[None]) -> None:
            if commit.applying is task:
                commit.applying = None
            for topic in topics:
                waiting = self._applying.get(topic)
                if waiting is not None:
                    waiting.discard(task)
                    if not waiting:
                        del self._applying[topic]
            with self._applied:
                self._applies -= 1
                self._applied.notify_all()

        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(done)

    async def _apply_quietly(self, txn: Transaction, commit: Commit) -> None:
        await _after_the_answer()
        try:
            await self._apply(txn, commit)
        except TransactionError:
            pass  # logged; the next check, or the id's next commit, applies it again

    async def _settle(self, txn: Transaction) -> None:
        """Wait for the id's decided commit to be applied, applying it again if its
        apply failed; TransactionError (retriable) if it cannot be applied yet."""
        commit = txn.commit
        if commit is None:
            return
        if commit.applying is not None:
            await asyncio.shield(commit.applying)
        if txn.commit is commit:
            await self._apply(txn, commit)

    async def settled(self, topics: set[str], timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the commits being applied to any of
        ``topics``: a Fetch that comes after EndTxn was answered sees the records."""
        tasks = set().union(*(self._applying.get(topic, ()) for topic in topics))
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def wait_applied(self, timeout: float) -> bool:
        """From any thread: wait at most ``timeout`` seconds until no commit is being
        applied; whether none is."""
        with self._applied:
            return self._applied.wait_for(lambda: self._applies == 0, timeout)

    async def _apply(self, txn: Transaction, commit: Commit) -> None:
        if not await self._confirm(txn, commit):
            return  # voided: nothing to apply
        decision = commit.decision
        # Without group offsets, the records are all the commit applies: its "applied"
        # note follows their appends in the same call to the broker's threads. With
        # offsets, it waits for their commit to the groups (below).
        noting = None if decision["offsets"] else commit.stage
        try:
            await self.broker.call(self._append_and_note, txn, decision, noting)
            if noting is not None and commit.stage is noting:
                commit.stage = None
            self._forget_tables(commit)
            for group, entries in decision["offsets"].items():
                offsets = {(str(t), int(p)): (int(o), int(e), m) for t, p, o, e, m in entries}
                try:
                    await self.broker.coordinator.commit(group, offsets)
                except InvalidRequest as exc:  # the name became an odradek group meanwhile
                    log.warning(
                        "transaction %r: offsets of %s not committed: %s", txn.transactional_id, group, exc
                    )
        except OdradekError as exc:
            log.warning("transaction %r: its commit could not be applied yet: %s", txn.transactional_id, exc)
            raise TransactionError(
                ErrorCode.COORDINATOR_NOT_AVAILABLE, f"the commit could not be applied yet ({exc}); retry"
            ) from exc
        if noting is None:
            await self._note(txn, commit, "applied")  # (opened again if applied after a restart)
        else:
            commit.stage = None
        if txn.commit is commit:
            txn.commit = None
        if txn.state == PREPARE_COMMIT:
            txn.state = COMPLETE_COMMIT

    def _append_and_note(self, txn: Transaction, decision: dict[str, Any], noting: StageFile | None) -> None:
        """_append_all, then the "applied" note in ``noting`` if given (blocking; the
        broker's threads)."""
        self._append_all(txn, decision)
        if noting is not None:
            noting.note("applied")

    def _append_all(self, txn: Transaction, decision: dict[str, Any]) -> None:
        """Append each partition's staged records of the id's decided commit (blocking;
        the broker's threads)."""
        commit = txn.commit
        if commit is None or commit.decision["number"] != decision["number"]:
            raise StorageError(f"transaction {decision['number']} is not the one being applied")
        by_partition = commit.tables
        if by_partition is None:
            path = self._stage_path(txn.transactional_id, commit.slot)
            stage = read_stage(self.disk, path)
            if stage is None or stage.number != decision["number"]:
                raise StorageError(f"{path} does not hold transaction {decision['number']} any more")
            by_partition = {}
            for topic, partition, table in stage.frames:
                by_partition.setdefault((topic, partition), []).append(table)
        engine = self.broker.engine
        pending = []
        for topic, partition, first in decision["ranges"]:
            tables = by_partition.get((topic, partition))
            if not tables:
                continue
            records = pa.concat_tables(tables)
            sequence = int(first)
            for chunk in _chunks(records, engine.append_bytes_max):
                last = (sequence + chunk.num_rows - 1) % RANGE_SEQUENCE_MODULUS
                producer = (engine_producer_id(int(decision["producer_id"]), partition), sequence, last)
                try:
                    pending.append(  # decided: its tenant's storage quota was checked at staging
                        engine.submit_append(
                            topic, chunk, producer=producer, partition=partition, bounded=False
                        )
                    )
                except SequenceError:
                    # Older than the engine remembers: applied before a restart (only
                    # the latest decision is ever applied again).
                    log.info("transaction %r: %s already holds its records", txn.transactional_id, topic)
                except TopicNotFound:
                    log.warning(
                        "transaction %r: topic %s was deleted; its records are dropped",
                        txn.transactional_id,
                        topic,
                    )
                    break
                sequence = (last + 1) % RANGE_SEQUENCE_MODULUS
        for append in pending:
            append.wait()

    async def _abort(self, txn: Transaction, why: str) -> None:
        if txn.in_doubt and txn.stage is not None:
            # A decision whose sync failed is in the staging file and may reach the
            # disk: the abort is answered only once a synced note after it says so (a
            # restart then leaves the decision unapplied); if the note cannot be synced
            # either, the abort fails (retriable) and nothing changes.
            await self.broker.call(txn.stage.note, "aborted", True)  # closes the file
            txn.in_doubt = False
            txn.stage, txn.opening = None, None  # noted: nothing more to note below
        self._forget_tables(txn)
        stage, txn.stage = txn.stage, None
        opening, txn.opening = txn.opening, None
        txn.state = COMPLETE_ABORT
        if stage is None and opening is not None:
            try:  # noted aborted once its number is written, or a restart would fence
                stage = await asyncio.shield(opening)
            except (OdradekError, OSError):
                stage = None  # no number written: nothing to note
        if stage is not None:
            await self.broker.call(stage.note, "aborted")
        log.info("transaction %r aborted: %s", txn.transactional_id, why)
        if txn.remote:
            await self._abort_remote(txn, txn.number)

    # -- timeouts ---------------------------------------------------------------------

    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(limits.kafka_transaction_check_seconds)
            try:
                await self.check()
            except Exception:
                log.exception("checking transactions failed")

    async def check(self) -> None:
        """Abort the transactions open longer than their timeout and fence their
        producers; retry the commits whose apply failed; as another cell's participant,
        look again at the enlistments whose last look failed."""
        now = time.monotonic()
        for txn in list(self.transactions.values()):
            if txn.state == ONGOING and not self.participant and now - txn.started > txn.timeout_ms / 1000:
                async with txn.lock:
                    if txn.state != ONGOING or now - txn.started <= txn.timeout_ms / 1000:
                        continue
                    await self._abort(txn, f"open longer than its timeout ({txn.timeout_ms} ms)")
                    txn.epoch = (txn.epoch + 1) & _EPOCH_MAX
                    try:
                        await self.broker.call(self._save, txn)
                    except StorageError as exc:
                        log.warning("transaction %r: fencing not saved: %s", txn.transactional_id, exc)
            if txn.commit is not None and txn.commit.applying is None and not txn.lock.locked():
                self._start_apply(txn, txn.commit)
            if (
                self.participant
                and self.ledger is not None
                and txn.state == ONGOING
                and now - txn.started > 2 * txn.timeout_ms / 1000
            ):
                try:
                    await self.ledger.check(txn)
                except OdradekError as exc:  # etcd out of reach: the next check tries again
                    log.info(
                        "transaction %r: its enlistment cannot be looked at: %s", txn.transactional_id, exc
                    )
        if self.participant and self.ledger is not None:
            self.ledger.look_again()

    def close(self) -> None:
        self._checker.cancel()
        if self.ledger is not None:
            self.ledger.close()
        for task in list(self._tasks):
            task.cancel()
        for txn in self.transactions.values():
            files = [txn.stage, txn.commit.stage if txn.commit is not None else None]
            for stage in files:
                if stage is not None:
                    stage.close()
            for pending in (txn.spare, txn.opening):
                if pending is not None:
                    if pending.done():
                        _close_spare(pending)
                    else:
                        # The broker's threads are shut down next and the loop stops:
                        # cancelled, it does not outlive them; the slot it was opening
                        # or emptying is left as a crash would leave it.
                        pending.cancel()


async def _after_the_answer() -> None:
    """Let one turn of the event loop pass. A request that starts work in the
    background (the commit's apply, a staging slot's opening or emptying) is answered
    in the turn after its handler returns, when its connection's writer sends the
    answer; work started before that takes the broker's threads and the interpreter
    lock while the answer waits to be sent, on the client's serial path."""
    await asyncio.sleep(0)


def _retrieved(spare: asyncio.Future[Any]) -> None:
    """A spare's or a decode's failure is logged by whoever takes it; never left
    unretrieved."""
    if not spare.cancelled():
        spare.exception()


def _decoded_tables(
    tables: dict[TopicPartition, list[pa.Table | None]] | None,
) -> dict[TopicPartition, list[pa.Table]] | None:
    """The open transaction's records, decoded, for its commit; None if any is not
    kept (then the commit reads them all back)."""
    if tables is None:
        return None
    decoded: dict[TopicPartition, list[pa.Table]] = {}
    for key, entries in tables.items():
        kept = [entry for entry in entries if entry is not None]
        if len(kept) != len(entries):
            return None
        decoded[key] = kept
    return decoded


def _close_spare(spare: asyncio.Future[StageFile]) -> None:
    if not spare.cancelled() and spare.exception() is None:
        spare.result().close()


def _reopen(disk: Any, path: str) -> StageFile | None:
    """A staging file opened to append a note to, keeping what it holds."""
    try:
        return StageFile(disk, path, None, sync=False)
    except StorageError:
        return None


def _chunks(records: pa.Table, bytes_max: int) -> list[pa.Table]:
    """The records in slices an append takes (at most append_records_max records and,
    with room to spare, at most ``bytes_max`` bytes each): deterministic, so that a
    commit applied again cuts the same slices under the same sequences."""
    rows = records.num_rows
    pieces = max(-(-rows // limits.append_records_max), -(-records.nbytes // max(bytes_max // 2, 1)), 1)
    size = -(-rows // pieces)
    return [records.slice(start, size) for start in range(0, rows, size)]
