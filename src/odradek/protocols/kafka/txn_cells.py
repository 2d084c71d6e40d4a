"""Kafka transactions that write topics of several cells (decision 0037).

Theory of operation
-------------------
With topics spread over cells (cells.py), a transaction's coordinator is the home
cell's door (transactions.py), but a Produce of another cell's topic reaches that cell's
door, its partition leader. Each door stages what it leads, as it does alone; etcd
carries the one decision, as the transaction log and its markers do in Kafka.

* **Enlistment.** AddPartitionsToTxn of another cell's topic writes the transaction's
  *enlistment* of that cell in etcd (``transactions/<id hash>/<cell>``: producer id,
  epoch, transaction number, the cell's partitions, state ``ongoing``) before it is
  answered. The cell's door (the *participant*) admits a transactional Produce only
  for a partition its enlistment names under the producer's id and epoch, looked at
  when it has no open transaction of that number (KIP-890's verification, asked of
  etcd instead of the coordinator). The coordinator makes the transaction's number
  durable before it enlists a cell, so that a restart finds it open and aborts it. The
  participant stages the records as the coordinator does, but writes and syncs each
  Produce's frames before answering and decodes them first: what it acknowledged
  survives a crash, and is known to decode.
* **Decision.** EndTxn writes the coordinator's own decision to its staging file, then
  swaps every enlistment from ``ongoing`` to ``commit`` in one etcd transaction
  comparing each key's revision: the commit point. It is answered after that. An abort
  swaps them to ``abort``.
* **Apply and acknowledgement.** A participant watches the enlistments of its cell. On
  ``commit`` it decides locally (its staging file's decision, as the coordinator's) and
  applies in the background; on ``abort`` it drops what it staged; then it swaps its
  enlistment to ``committed`` or ``aborted``. The coordinator enlists a cell again for
  the id's next transaction only once the cell acknowledged the previous one (until
  then AddPartitionsToTxn answers CONCURRENT_TRANSACTIONS, which clients retry): so a
  Produce never reaches a participant still holding the previous transaction open.
* **A participant's veto.** A participant that cannot keep what it acknowledged (its
  staging write failed, a batch does not decode, a restart found the transaction open,
  it was open for twice its timeout) swaps its enlistment from ``ongoing`` to
  ``aborted``: the coordinator's commit swap then fails, the coordinator aborts the
  rest and answers TRANSACTION_ABORTABLE, and the client aborts.
* **Restarts.** A coordinator that finds a decision of a transaction with enlistments
  and no note of its outcome asks etcd: an enlistment at ``commit``/``committed`` of
  that number, or one past it (the coordinator moved on only after answering), means
  committed; else it swaps the ``ongoing`` ones to ``abort``. A participant that finds
  a transaction open asks etcd likewise: ``commit`` applies what its file holds,
  ``abort`` drops it, ``ongoing`` is vetoed.

Every swap compares revisions, so two doors acting on one transaction reach one
outcome, and is fenced by the door's cell: it lands only while the cell's owner key in
etcd still carries the epoch the door opened under (cluster/kafka_seat.py), so a door
whose agent lost the cell (a paused agent waking, a door still closing) cannot
acknowledge for the cell a commit that its successor staged and has yet to apply. Each
door's own files are fenced by its cell's storage. A look at an enlistment that failed
(a staging write, etcd out of reach) is tried again at the door's next check, so that a
decided transaction is never left waiting for another change.

etcd holds one small key per transactional id and enlisted cell, written a few
times per transaction and never with records. A door keeps what etcd last said of the
enlistments it cares about (its reads, its own swaps, the watch's values) and goes by
that first: a compare that fails, or an enlistment that does not admit a Produce, reads
etcd again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from odradek import limits
from odradek.errors import DataDamaged, Fenced, OdradekError
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.transactions import ONGOING as OPEN
from odradek.protocols.kafka.transactions import (
    TopicPartition,
    TopicsRefused,
    Transaction,
    TransactionError,
    _hash,
    partitions_by_topic,
)

if TYPE_CHECKING:
    from odradek.protocols.kafka.cells import KafkaCells
    from odradek.protocols.kafka.transactions import TransactionCoordinator

log = logging.getLogger(__name__)

ONGOING = "ongoing"
COMMIT = "commit"
ABORT = "abort"
COMMITTED = "committed"
ABORTED = "aborted"
STATES = (ONGOING, COMMIT, ABORT, COMMITTED, ABORTED)
ACKNOWLEDGED = (COMMITTED, ABORTED)
_FORMAT = 1
_SWAP_TRIES = 5


@dataclasses.dataclass(frozen=True)
class Enlistment:
    """A transaction's enlistment of one cell, as etcd holds it."""

    transactional_id: str
    producer_id: int
    epoch: int
    timeout_ms: int
    number: int
    state: str
    partitions: frozenset[TopicPartition]
    revision: int = dataclasses.field(default=0, compare=False)

    def same_transaction(self, producer_id: int, epoch: int, number: int) -> bool:
        return (self.producer_id, self.epoch, self.number) == (producer_id, epoch, number)

    def but(self, state: str) -> Enlistment:
        return dataclasses.replace(self, state=state)

    def encode(self) -> bytes:
        body = {
            "v": _FORMAT,
            "id": self.transactional_id,
            "producer_id": self.producer_id,
            "epoch": self.epoch,
            "timeout_ms": self.timeout_ms,
            "number": self.number,
            "state": self.state,
            "partitions": partitions_by_topic(self.partitions),
        }
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes, revision: int) -> Enlistment:
        try:
            body = json.loads(data)
            if not isinstance(body, dict) or body.get("v") != _FORMAT:
                raise ValueError(f"format {body.get('v') if isinstance(body, dict) else None!r}")
            state = body["state"]
            if state not in STATES:
                raise ValueError(f"state {state!r}")
            partitions = frozenset(
                (str(topic), int(partition))
                for topic, numbers in body["partitions"].items()
                for partition in numbers
            )
            return cls(
                str(body["id"]),
                int(body["producer_id"]),
                int(body["epoch"]),
                int(body["timeout_ms"]),
                int(body["number"]),
                state,
                partitions,
                revision,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataDamaged(f"a Kafka transaction's enlistment in etcd cannot be read: {exc}") from exc


class TransactionAbortable(OdradekError):
    """A transaction one of its cells vetoed: the client must abort it."""


class CellsLedger:
    """The enlistments of one door's transactions in etcd: as the home cell's
    coordinator (enlist, decide, resolve) and as another cell's participant (admit,
    follow, acknowledge, veto). See the module docstring."""

    def __init__(self, coordinator: TransactionCoordinator, cells: KafkaCells) -> None:
        self.coordinator = coordinator
        self.cells = cells
        self.cell = cells.cell
        self.home = cells.node_id == 1
        self._changed = asyncio.Event()  # set on every change seen (coordinators wait on it)
        self._hashes: dict[str, str] = {}  # id hash: transactional id, of this door's ids
        self._syncing: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()  # ids whose enlistment changed while being looked at
        # Ids whose look failed (a staging write, etcd): looked at again by the door's
        # next check, so that a decided enlistment is not left waiting for a change.
        self._failed: set[str] = set()
        # What etcd last said of each id's enlistments this door cares about (the home
        # door: every cell's; another: its own cell's), from reads, its own swaps and the
        # watch: a first try goes by it, and a compare that fails reads again.
        self._known: dict[str, dict[str, Enlistment]] = {}
        loop = asyncio.get_running_loop()

        def notify(hashed: str | None, cell: str | None, value: bytes | None, revision: int) -> None:
            try:  # on the agent's loop: handed to the door's
                loop.call_soon_threadsafe(self._on_change, hashed, cell, value, revision)
            except RuntimeError:
                pass  # the door's loop is closed: it stopped

        self._stop = cells.follow_enlistments(notify)

    def close(self) -> None:
        self._stop()
        for task in self._syncing.values():
            task.cancel()

    def know(self, txn: Transaction, hashed: str) -> None:
        self._hashes[hashed] = txn.transactional_id

    # -- etcd ---------------------------------------------------------------------------

    async def read(self, hashed: str) -> dict[str, Enlistment]:
        """The id's enlistments as etcd has them now (and so known)."""
        raw = await self.coordinator.broker.call(self.cells.enlistments, hashed)
        records = {cell: Enlistment.decode(value, revision) for cell, (value, revision) in raw.items()}
        known = self._known.setdefault(hashed, {})
        for cell in list(known):
            if cell not in records:
                del known[cell]
        for cell, record in records.items():
            self._learn(hashed, cell, record)
        return records

    async def records(self, hashed: str, fresh: bool = False) -> dict[str, Enlistment]:
        """The id's enlistments as last known (read from etcd if never, or ``fresh``)."""
        known = self._known.get(hashed)
        if fresh or known is None:
            return await self.read(hashed)
        return dict(known)

    async def swap(self, hashed: str, changes: Mapping[str, tuple[Enlistment, int]]) -> dict[str, int] | None:
        encoded = {cell: (record.encode(), revision) for cell, (record, revision) in changes.items()}
        landed = await self.coordinator.broker.call(self.cells.swap_enlistments, hashed, encoded)
        if landed is not None:
            for cell, (record, _) in changes.items():
                self._learn(hashed, cell, dataclasses.replace(record, revision=landed[cell]))
        return landed

    def _learn(self, hashed: str, cell: str, record: Enlistment) -> None:
        if not self.home and cell != self.cell:
            return
        known = self._known.get(hashed)
        if known is None:
            if len(self._known) >= limits.kafka_transactional_ids_max:
                self._known.clear()  # a cache: read again when needed
            known = self._known[hashed] = {}
        held = known.get(cell)
        if held is None or held.revision <= record.revision:
            known[cell] = record

    def _on_change(self, hashed: str | None, cell: str | None, value: bytes | None, revision: int) -> None:
        if hashed is None or cell is None:  # changes may have been missed: forget, look again
            self._known.clear()
        elif hashed in self._known:
            if value is None:
                self._known[hashed].pop(cell, None)
            else:
                try:
                    self._learn(hashed, cell, Enlistment.decode(value, revision))
                except DataDamaged:
                    self._known.pop(hashed, None)
        self._changed.set()
        self._changed = asyncio.Event()
        if self.home:
            return
        if hashed is None:  # look at every id again
            for known in list(self._hashes):
                self.follow_up(known)
        elif cell == self.cell:
            self.follow_up(hashed)

    async def _wait_change(self, seconds: float) -> None:
        changed = self._changed
        try:
            async with asyncio.timeout(seconds):
                await changed.wait()
        except TimeoutError:
            pass

    # -- the coordinator's side -----------------------------------------------------------

    async def enlist(
        self, txn: Transaction, hashed: str, wanted: Mapping[str, Iterable[TopicPartition]]
    ) -> None:
        """Enlist ``wanted`` (cell: partitions) in the id's open transaction (under its
        lock). A cell still acknowledging the id's previous transaction is waited for
        a little, then CONCURRENT_TRANSACTIONS; a cell that vetoed this transaction is
        TransactionAbortable."""
        deadline = time.monotonic() + limits.kafka_transaction_enlist_wait_seconds
        conflicts = 0
        while conflicts < _SWAP_TRIES:
            records = await self.records(hashed, fresh=conflicts > 0)
            changes: dict[str, tuple[Enlistment, int]] = {}
            busy = []
            for cell, partitions in wanted.items():
                current = records.get(cell)
                if current is not None and current.same_transaction(txn.producer_id, txn.epoch, txn.number):
                    if current.state != ONGOING:
                        raise TransactionAbortable(f"cell {cell} aborted the transaction ({current.state})")
                    merged = current.partitions | frozenset(partitions)
                    if merged != current.partitions:
                        changes[cell] = (dataclasses.replace(current, partitions=merged), current.revision)
                    continue
                if current is not None and current.state not in ACKNOWLEDGED:
                    if current.state == ONGOING:
                        # Left open by an earlier transaction of the id (its coordinator
                        # restarted, or its abort did not reach etcd): aborted now.
                        changes[cell] = (current.but(ABORT), current.revision)
                    busy.append(cell)
                    continue
                record = Enlistment(
                    txn.transactional_id,
                    txn.producer_id,
                    txn.epoch,
                    txn.timeout_ms,
                    txn.number,
                    ONGOING,
                    frozenset(partitions),
                )
                changes[cell] = (record, 0 if current is None else current.revision)
            if busy:
                stale = {cell: change for cell, change in changes.items() if cell in busy}
                if stale:
                    await self.swap(hashed, stale)
                if time.monotonic() >= deadline:
                    raise TransactionError(
                        ErrorCode.CONCURRENT_TRANSACTIONS,
                        f"cells {', '.join(sorted(busy))} are still finishing the previous transaction of "
                        f"{txn.transactional_id!r}; retry",
                    )
                await self._wait_change(min(0.05, max(deadline - time.monotonic(), 0.0)))
                continue
            if changes and await self.swap(hashed, changes) is None:
                conflicts += 1
                continue  # changed meanwhile: read again
            for cell, partitions in wanted.items():
                txn.remote.setdefault(cell, set()).update(partitions)
            return
        raise TransactionError(
            ErrorCode.CONCURRENT_TRANSACTIONS,
            f"the enlistments of {txn.transactional_id!r} kept changing; retry",
        )

    async def decide(
        self, transactional_id: str, hashed: str, producer_id: int, number: int, commit: bool
    ) -> bool:
        """Swap the transaction's ``ongoing`` enlistments to ``commit`` (or ``abort``),
        all or none: whether the transaction is committed. A commit finds it decided
        already (an earlier try landed, or a coordinator before a restart decided):
        then it says so; an enlistment a cell vetoed makes it an abort. The caller's
        own decision must be durable before a commit."""
        for attempt in range(_SWAP_TRIES):
            records = {
                cell: record
                for cell, record in (await self.records(hashed, fresh=attempt > 0)).items()
                if record.producer_id == producer_id and record.number >= number
            }
            ours = {cell: record for cell, record in records.items() if record.number == number}
            if any(record.number > number for record in records.values()):
                return commit  # the id moved on: this one was answered, as decided then
            if any(record.state in (COMMIT, COMMITTED) for record in ours.values()):
                return True
            vetoed = any(record.state in (ABORT, ABORTED) for record in ours.values())
            target = ABORT if vetoed or not commit else COMMIT
            pending = {
                cell: (record.but(target), record.revision)
                for cell, record in ours.items()
                if record.state == ONGOING
            }
            if not pending:
                return target == COMMIT and not vetoed
            if await self.swap(hashed, pending) is not None:
                return target == COMMIT
        raise OdradekError(f"the enlistments of {transactional_id!r} kept changing; retry")

    # -- the participant's side -----------------------------------------------------------

    async def admit(
        self, transactional_id: str, producer_id: int, epoch: int, key: TopicPartition
    ) -> Transaction:
        """The id's open transaction here, for a Produce of ``key`` by this producer:
        begun here from its enlistment if it is not yet; TransactionError if the
        enlistment does not name the partition under this producer."""
        coordinator = self.coordinator
        txn = coordinator.transactions.get(transactional_id)
        if (
            txn is not None
            and txn.state == OPEN
            and not txn.recovering
            and (txn.producer_id, txn.epoch) == (producer_id, epoch)
            and key in txn.partitions
        ):
            return txn
        hashed = _hash(transactional_id)
        if txn is None:
            record = await self._admitting(hashed, transactional_id, producer_id, epoch, key)
            if len(coordinator.transactions) >= limits.kafka_transactional_ids_max:
                raise TransactionError(
                    ErrorCode.COORDINATOR_NOT_AVAILABLE,
                    f"this server keeps {limits.kafka_transactional_ids_max} transactional ids, its limit",
                )
            txn = coordinator.transactions.setdefault(
                transactional_id, Transaction(transactional_id, producer_id, epoch, record.timeout_ms)
            )
        self.know(txn, hashed)
        async with txn.lock:  # the enlistment is read under it: no commit or abort meanwhile
            if txn.recovering:
                await self._sync_locked(txn, hashed)  # settle what a restart left first
            record = await self._admitting(hashed, transactional_id, producer_id, epoch, key)
            if txn.state == OPEN and txn.number != record.number:
                await self._sync_locked(txn, hashed)  # a stale one: over
            if txn.number == record.number and txn.state != OPEN:
                raise TransactionError(
                    ErrorCode.INVALID_TXN_STATE,
                    f"transaction {record.number} of {transactional_id!r} has ended here already",
                )
            if txn.state != OPEN:
                try:
                    await coordinator._settle(txn)  # the id's previous commit here is applied first
                except TransactionError as exc:  # a Produce's retriable error, not a coordinator's
                    raise TransactionError(ErrorCode.REQUEST_TIMED_OUT, exc.message) from exc
                producer = (record.producer_id, record.epoch, record.timeout_ms)
                if (txn.producer_id, txn.epoch, txn.timeout_ms) != producer or not coordinator.saved(txn):
                    # A restart must find the id's staging files: its document first.
                    txn.producer_id, txn.epoch, txn.timeout_ms = producer
                    await coordinator.broker.call(coordinator._save, txn)
            try:
                self._begin_here(txn, record)
            except TopicsRefused as exc:
                # Refused before anything of it is staged here (a topic with a schema):
                # the transaction must not commit without these records.
                await self.swap(hashed, {self.cell: (record.but(ABORTED), record.revision)})
                log.info("transaction %r vetoed here: %s", transactional_id, exc.message)
                raise
            return txn

    async def _admitting(
        self, hashed: str, transactional_id: str, producer_id: int, epoch: int, key: TopicPartition
    ) -> Enlistment:
        """The enlistment admitting a Produce of ``key`` by this producer: as known if it
        does (one that stopped meanwhile is dropped here when its change arrives), else
        as etcd has it now; TransactionError if it does not."""
        known = (await self.records(hashed)).get(self.cell)
        try:
            return _check_enlisted(known, transactional_id, producer_id, epoch, key)
        except TransactionError:
            fresh = (await self.records(hashed, fresh=True)).get(self.cell)
            return _check_enlisted(fresh, transactional_id, producer_id, epoch, key)

    def _begin_here(self, txn: Transaction, record: Enlistment) -> None:
        """Open the enlistment's transaction here, or add the partitions it names now."""
        coordinator = self.coordinator
        if txn.state != OPEN:
            topics = sorted({topic for topic, _ in record.partitions})
            coordinator._begin(txn, coordinator.schema_check(topics), topics, number=record.number)
        else:
            added = sorted({topic for topic, _ in record.partitions} - set(txn.ends))
            if added:
                coordinator._begin(txn, coordinator.schema_check(added), added)
        txn.partitions.update(record.partitions)

    def follow_up(self, hashed: str) -> None:
        """Look at the id's enlistment of this cell in the background (one at a time)."""
        running = self._syncing.get(hashed)
        if running is not None and not running.done():
            self._again.add(hashed)  # looked at again once this look ends (once, however many)
            return
        task = asyncio.get_running_loop().create_task(self._sync(hashed))
        self._syncing[hashed] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self._syncing.get(hashed) is finished:
                del self._syncing[hashed]
            if finished.cancelled():
                return
            failure = finished.exception()
            if isinstance(failure, Fenced):  # this door's cell is served elsewhere now: for good
                log.info("transactional id %s: %s", hashed[:12], failure)
            elif failure is not None:
                log.warning("transactional id %s: %s; looked at again", hashed[:12], failure)
                self._failed.add(hashed)
            if hashed in self._again:
                self._again.discard(hashed)
                self.follow_up(hashed)

        task.add_done_callback(done)

    def look_again(self) -> None:
        """Look again at the ids whose last look failed (the door's periodic check): a
        commit this cell could not make durable or apply, an acknowledgement etcd did
        not take, a restart's question etcd did not answer. Until one succeeds the
        coordinator cannot enlist this cell for the id's next transaction."""
        failed, self._failed = self._failed, set()
        for hashed in failed:
            self.follow_up(hashed)

    async def _sync(self, hashed: str) -> None:
        transactional_id = self._hashes.get(hashed)
        txn = None if transactional_id is None else self.coordinator.transactions.get(transactional_id)
        if txn is None:
            record = (await self.records(hashed)).get(self.cell)
            if record is not None and record.state in (COMMIT, ABORT):
                await self._acknowledge(hashed, record)  # nothing of it staged here: no Produce came
            return
        async with txn.lock:
            await self._sync_locked(txn, hashed)

    async def _sync_locked(self, txn: Transaction, hashed: str, veto: str | None = None) -> None:
        """Act on the id's enlistment of this cell (under the id's lock): commit or drop
        what is staged and acknowledge; veto an ``ongoing`` one left by a restart, or
        ``veto`` (a reason) given."""
        coordinator = self.coordinator
        for attempt in range(_SWAP_TRIES):
            record = (await self.records(hashed, fresh=attempt > 0)).get(self.cell)
            if record is None:
                return
            if record.number != txn.number or record.producer_id != txn.producer_id:
                if txn.state == OPEN:  # the coordinator moved past it: it is over
                    await self._drop(txn, "its coordinator moved past it")
                if record.state in (COMMIT, ABORT):  # nothing of it staged here
                    await self._acknowledge(hashed, record)
                return
            if record.state == ONGOING:
                why = veto or ("found open at a restart" if txn.recovering else None)
                if why is None:
                    return
                if await self.swap(hashed, {self.cell: (record.but(ABORTED), record.revision)}) is None:
                    continue
                if txn.state == OPEN:
                    await self._drop(txn, f"this cell vetoed it: {why}")
                return
            if record.state in ACKNOWLEDGED:
                if txn.state == OPEN:  # acknowledged, yet open here: never kept
                    if record.state == COMMITTED:
                        log.error(
                            "transaction %r: acknowledged as committed, yet open here; dropped",
                            txn.transactional_id,
                        )
                    await self._drop(txn, f"its enlistment here is {record.state}")
                return
            if txn.state == OPEN:
                if record.state == COMMIT:
                    await coordinator.commit_here(txn)
                else:
                    await self._drop(txn, "its coordinator aborted it")
            if await self._acknowledge(hashed, record):
                return
        raise OdradekError(f"the enlistment of {txn.transactional_id!r} kept changing")

    async def _acknowledge(self, hashed: str, record: Enlistment) -> bool:
        """Swap this cell's decided enlistment to ``committed``/``aborted``: whether it
        landed (False: it changed meanwhile)."""
        state = COMMITTED if record.state == COMMIT else ABORTED
        return await self.swap(hashed, {self.cell: (record.but(state), record.revision)}) is not None

    async def _drop(self, txn: Transaction, why: str) -> None:
        """Abort the id's open transaction here (under its lock); one a restart found
        is noted aborted in its staging file too."""
        if txn.recovering:
            txn.recovering = False
            await self.coordinator.reopen_stage(txn)
        await self.coordinator._abort(txn, why)

    async def veto(self, txn: Transaction, why: str) -> None:
        """Abort the id's open transaction here and make its commit impossible (under
        the id's lock); logged if etcd cannot be told (its coordinator's commit swap
        then still finds it ``ongoing``: a veto that is lost)."""
        hashed = _hash(txn.transactional_id)
        try:
            await self._sync_locked(txn, hashed, veto=why)
        except OdradekError as exc:
            log.error(
                "transaction %r: its veto (%s) could not be written: %s", txn.transactional_id, why, exc
            )

    async def check(self, txn: Transaction) -> None:
        """A participant's open transaction past twice its timeout: its coordinator
        lost it (or its abort): vetoed."""
        hashed = _hash(txn.transactional_id)
        async with txn.lock:
            await self._sync_locked(
                txn, hashed, veto=f"open longer than twice its timeout ({txn.timeout_ms} ms)"
            )

    def recover(self, transactions: Iterable[Transaction]) -> None:
        """After a restart: settle every id's enlistment of this cell in the background."""
        for txn in transactions:
            self.know(txn, _hash(txn.transactional_id))
            if txn.recovering:
                self.follow_up(_hash(txn.transactional_id))


def _check_enlisted(
    record: Enlistment | None, transactional_id: str, producer_id: int, epoch: int, key: TopicPartition
) -> Enlistment:
    """``record`` if it admits a Produce of ``key`` by this producer, else TransactionError."""
    topic, partition = key
    if record is None or record.producer_id != producer_id:
        raise TransactionError(
            ErrorCode.INVALID_TXN_STATE,
            f"partition {partition} of {topic} is not in a transaction of {transactional_id!r} "
            "(AddPartitionsToTxn first)",
        )
    if record.epoch != epoch:
        raise TransactionError(
            ErrorCode.INVALID_PRODUCER_EPOCH,
            f"producer epoch {epoch} is not the current one of transactional.id {transactional_id!r} "
            f"({record.epoch}): a newer producer took over, or the transaction timed out",
        )
    if record.state in (ABORT, ABORTED):
        raise TransactionError(
            ErrorCode.TRANSACTION_ABORTABLE,
            f"the transaction of {transactional_id!r} was aborted ({record.state}); abort it and go on",
        )
    if record.state != ONGOING or key not in record.partitions:
        raise TransactionError(
            ErrorCode.INVALID_TXN_STATE,
            f"partition {partition} of {topic} is not in an ongoing transaction of {transactional_id!r} "
            "(AddPartitionsToTxn first)",
        )
    return record
