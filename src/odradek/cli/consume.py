"""``odradek consume``: print the records of a topic or pattern, alone or in a group.

Where to start: new records, ``--from-beginning``, ``--offset N`` or ``--since WHEN``
(a duration ago or a date). How: values, JSON lines, or a kcat-style template
(output.Template). ``--last-per-key`` reads up to the end and prints each key's latest
record, as a compacted topic would keep it. ``--partition N`` keeps the records of one
Kafka partition and ``%p`` prints each record's, by the server's partition map and the
Kafka door's own function (:class:`KafkaPartitions`, decision 0014).

Ctrl-C ends a follow at once. A Flight read waits for records inside pyarrow, where
Python cannot deliver the signal until a batch arrives; and a KeyboardInterrupt raised
in the middle of a group member's call (between its request and the answer) would
leave the group's stream out of step. So while consuming, SIGINT only sets a flag
(:class:`_Interrupted`; a second Ctrl-C interrupts at once); the read runs on a worker
thread that hands batches over a small queue, the main thread waits on the queue and
a group member polls in slices of ``interrupt_check_seconds``, and both look at the
flag between slices, then stop as Ctrl-C does (exit 130; a group member leaves
cleanly, what it held going back to the group uncounted).
"""

from __future__ import annotations

import argparse
import datetime
import queue
import signal
import sys
import threading
import types
from collections.abc import Iterable, Iterator

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from odradek import api, defaults, limits
from odradek.cli import output, terminal
from odradek.cli.progress import Bar, count_line
from odradek.cli.terminal import stdout_is_closed_error
from odradek.client.remote import RemoteClient, connect
from odradek.errors import InvalidRequest, OdradekError
from odradek.names import is_pattern

# A group consumer polls at most this many records at once (and acks them once
# printed).
group_poll_records = 1000
# How long one wait lasts before Ctrl-C is looked at again: a following group member's
# poll, and the main thread's wait for the reader thread's next batch.
interrupt_check_seconds = 0.25
# `consume --max N` without --wait stops once this long passes with nothing new.
consume_max_wait_seconds = 5.0
# Batches the reader thread reads ahead of the printing: bounds the memory of a slow stdout.
read_ahead_batches = 4
# --last-per-key holds the latest record of each key it has seen.
last_per_key_keys_max = limits.consume_last_per_key_keys_max


def formatter(text: str) -> str | output.Template:
    """``--format``: ``text``, ``jsonl``, or a template holding ``%`` fields."""
    if text in ("text", "jsonl"):
        return text
    if "%" not in text:
        raise InvalidRequest(
            f"--format is text, jsonl or a template with %-fields (e.g. '%k=%v\\n'); got {text!r}"
        )
    return output.Template(text)


def format_batch(batch: pa.RecordBatch, style: str | output.Template, topic: str) -> bytes:
    """The batch as text. Every stored record can be written (bytes that are not text
    as base64, output.py); should one still fail, the command ends with a clear error
    naming it, not a traceback (a group consumer then leaves as failed, so the record
    counts an attempt toward its dead letter)."""
    if batch.num_rows == 0:
        return b""
    try:
        if isinstance(style, output.Template):
            return style.format(batch, topic)
        if style == "jsonl":
            return output.jsonl(batch, topic)
        return output.values_text(batch)
    except (ValueError, OverflowError, TypeError, pa.ArrowException) as exc:
        first = batch.column("offset")[0].as_py()
        shown = style.text if isinstance(style, output.Template) else style
        raise OdradekError(
            f"cannot write out the records of {topic} from offset {first} as {shown}: {exc}"
        ) from exc


class _Interrupted:
    """While in use, SIGINT sets :attr:`event` instead of raising; a second SIGINT
    raises KeyboardInterrupt at once. :meth:`check` raises it at a safe point."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: object = None

    def __enter__(self) -> _Interrupted:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if threading.current_thread() is threading.main_thread() and self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()

    def check(self) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt


def consume(args: argparse.Namespace) -> int:
    with _Interrupted() as interrupted:
        return _consume(args, interrupted)


def _consume(args: argparse.Namespace, interrupted: _Interrupted) -> int:
    if args.max is not None and args.max < 1:
        raise InvalidRequest("--max must be at least 1")
    style = formatter(args.format)
    starts = [name for name, given in _start_options(args) if given]
    if len(starts) > 1:
        raise InvalidRequest(f"{' and '.join(starts)} each say where to start: give one")
    start: api.Start = "earliest" if args.from_beginning or args.last_per_key else "latest"
    if args.offset is not None:
        start = args.offset
    if args.since is not None:
        moment = terminal.parse_moment(args.since, "--since")
        start = datetime.datetime.fromtimestamp(moment / 1e6, datetime.UTC)
    if args.wait is not None:
        wait = args.wait
    elif args.max is not None and not args.last_per_key:
        wait = consume_max_wait_seconds
    else:
        wait = defaults.read_wait_seconds
    follow = args.max is None and args.wait is None and not args.last_per_key
    if args.partition is not None and args.partition < 0:
        raise InvalidRequest(f"--partition is a Kafka partition number (0 or more), got {args.partition}")
    if args.group is not None:
        if args.partition is not None:
            raise InvalidRequest(
                "--partition reads one Kafka partition: a group shares records by key instead"
            )
        if args.offset is not None:
            raise InvalidRequest("--offset reads past a group: a group starts where it left off")
        if args.last_per_key:
            raise InvalidRequest("--last-per-key reads a topic whole: it cannot share it with a group")
        return _consume_group(args, style, start, None if follow else wait, interrupted)
    out = sys.stdout.buffer
    with (
        connect(args.server) as client,
        client.read(args.pattern, start=start, wait=wait, follow=follow) as stream,
    ):
        batches = _interruptible(stream, stream.close, interrupted)
        if args.partition is not None or _wants_partitions(style):
            batches = KafkaPartitions(client, args.pattern).apply(
                batches, args.partition, _wants_partitions(style)
            )
        if args.last_per_key:
            batches = iter(_last_per_key(batches))
        remaining = args.max
        progress = _Counter(args.pattern, _total(client, args, start, follow) if progress_shown() else None)
        try:
            for batch in batches:
                if remaining is not None:
                    batch = batch.slice(0, remaining)
                    remaining -= batch.num_rows
                out.write(format_batch(batch, style, args.pattern))
                out.flush()
                progress.add(batch.num_rows)
                if remaining == 0:
                    break
        finally:
            progress.finish()
    return 0


class _Counter:
    """A progress bar (records, rate; a bar and the time left when the total is known)
    on stderr while the records go to a file or a pipe, only when stderr is a terminal
    and stdout is not (on one terminal it would mix with them); erased at the end but
    for ``t: N records in S s``."""

    def __init__(self, what: str, total: int | None = None) -> None:
        self.what = what
        self.count = 0
        self.bar = Bar(what, total=total, enabled=progress_shown())

    def add(self, records: int) -> None:
        self.count += records
        self.bar.advance(records)

    def finish(self) -> None:
        self.bar.finish(count_line(self.what, self.count, "record", self.bar.elapsed()))


def progress_shown() -> bool:
    return sys.stderr.isatty() and not sys.stdout.isatty()


def _total(client: RemoteClient, args: argparse.Namespace, start: api.Start, follow: bool) -> int | None:
    """The records a bar counts up to: ``--max``, or for one topic read to its end from
    an offset, the offsets left (a compacted topic's gaps make it an upper bound)."""
    if args.max is not None and not args.last_per_key:
        return int(args.max)
    if follow or args.last_per_key or is_pattern(args.pattern) or not isinstance(start, (int, str)):
        return None
    if start == "latest" or args.partition is not None:
        return None
    info = client.describe_topic(args.pattern)
    first = info.first_offset if start == "earliest" else max(int(start), info.first_offset)
    return max(info.next_offset - first, 0)


def _wants_partitions(style: str | output.Template) -> bool:
    return isinstance(style, output.Template) and (True, "p") in style.parts


class KafkaPartitions:
    """The Kafka partition of each record read: the server's partition map of the
    offsets (the ``kafka_partitions`` action) applied by the Kafka door's own function
    (protocols/kafka/partition_map.py), a batch at a time."""

    def __init__(self, client: RemoteClient, pattern: str) -> None:
        self._client = client
        self._pattern = pattern

    def apply(
        self, batches: Iterable[pa.RecordBatch], partition: int | None, column: bool
    ) -> Iterator[pa.RecordBatch]:
        """``batches`` with only ``partition``'s records (None: all), with the partition
        column ``%p`` prints if ``column``. A topic (not a pattern) without that
        partition is refused before anything is read."""
        if partition is not None and not is_pattern(self._pattern):
            history = self._client._kafka_partitions(self._pattern, 0, 0)["history"]
            count = max(int(entry[1]) for entry in history)
            if partition >= count:
                raise InvalidRequest(
                    f"{self._pattern} has {terminal.plural(count, 'Kafka partition')} (0 to {count - 1}); "
                    f"there is no partition {partition}"
                )
        for batch in batches:
            numbers = self.of(batch, self._pattern)
            if column:
                batch = batch.append_column(output.PARTITION_COLUMN, pa.array(numbers, pa.int32()))
            if partition is not None:
                batch = batch.filter(pa.array(numbers == partition))
            yield batch

    def add_column(self, batch: pa.RecordBatch, topic: str) -> pa.RecordBatch:
        return batch.append_column(output.PARTITION_COLUMN, pa.array(self.of(batch, topic), pa.int32()))

    def of(self, batch: pa.RecordBatch, topic: str) -> npt.NDArray[np.int64]:
        offsets = batch.column("offset").to_numpy(zero_copy_only=False).astype(np.int64)
        if "topic" not in batch.schema.names:
            return self._of_topic(topic, batch.column("key"), offsets)
        numbers = np.zeros(batch.num_rows, dtype=np.int64)
        topics = batch.column("topic")
        for name in pc.unique(topics).to_pylist():
            rows = np.flatnonzero(pc.equal(topics, name).to_numpy(zero_copy_only=False))
            keys = batch.column("key").take(pa.array(rows))
            numbers[rows] = self._of_topic(name, keys, offsets[rows])
        return numbers

    def _of_topic(self, topic: str, keys: pa.Array, offsets: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        from odradek.protocols.kafka.partition_map import partitions_of

        if not len(offsets):
            return np.zeros(0, dtype=np.int64)
        position, end = int(offsets.min()), int(offsets.max()) + 1
        history: list[list[int]] = [[0, 1]]
        stored: list[list[int]] = []
        while position < end:
            found = self._client._kafka_partitions(topic, position, end)
            history, reached = found["history"], int(found["end"])
            stored.extend(found["stored"])
            if reached <= position:
                raise OdradekError(
                    f"the server's Kafka partition map of {topic} did not move past {position}"
                )
            position = reached
        return partitions_of(keys, offsets, history, stored)


def _start_options(args: argparse.Namespace) -> list[tuple[str, bool]]:
    return [
        ("--from-beginning", args.from_beginning),
        ("--offset", args.offset is not None),
        ("--since", args.since is not None),
    ]


def _interruptible(
    batches: Iterable[pa.RecordBatch], cancel: object, interrupted: _Interrupted
) -> Iterator[pa.RecordBatch]:
    """The batches of ``batches``, read on a worker thread, so that Ctrl-C (looked at
    between the main thread's short waits here) ends the command at once; ``cancel`` (a
    callable) then ends the read. At most ``read_ahead_batches`` wait in between."""
    handoff: queue.Queue[tuple[str, object]] = queue.Queue(read_ahead_batches)
    stop = threading.Event()

    def read() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        handoff.put(("batch", batch), timeout=interrupt_check_seconds)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, raised there
            if not stop.is_set():
                handoff.put(("error", exc))

    worker = threading.Thread(target=read, name="odradek-consume-reader", daemon=True)
    worker.start()
    try:
        while True:
            interrupted.check()
            try:
                kind, item = handoff.get(timeout=interrupt_check_seconds)
            except queue.Empty:
                continue
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(item, BaseException)
                raise item
            assert isinstance(item, pa.RecordBatch)
            yield item
    finally:
        stop.set()
        if callable(cancel):
            cancel()


def _last_per_key(batches: Iterator[pa.RecordBatch]) -> list[pa.RecordBatch]:
    """Each (topic,) key's latest record among ``batches``, in log order; keyless
    records have no key to be the latest of, and are left out. Reduced a batch at a
    time (Arrow ``group_by``), so memory holds one record per key."""
    latest: pa.Table | None = None
    for batch in batches:
        table = pa.Table.from_batches([batch])
        table = table.filter(pc.is_valid(table.column("key")))
        if table.num_rows == 0:
            continue
        if latest is not None:
            table = pa.concat_tables([latest, table], promote_options="permissive")
        latest = _keep_last(table)
        if latest.num_rows > last_per_key_keys_max:
            raise InvalidRequest(
                f"--last-per-key holds at most {last_per_key_keys_max:,} keys; the topics hold more: "
                "narrow the pattern or use --since"
            )
    if latest is None:
        return []
    order = [("topic", "ascending"), ("offset", "ascending")] if "topic" in latest.column_names else "offset"
    result: list[pa.RecordBatch] = latest.sort_by(order).combine_chunks().to_batches()
    return result


def _keep_last(table: pa.Table) -> pa.Table:
    """The last row of each key (by position: the log order) of ``table``."""
    keys = ["topic", "key"] if "topic" in table.column_names else ["key"]
    position = pa.Array.from_buffers(
        pa.int64(), table.num_rows, [None, pa.py_buffer(np.arange(table.num_rows, dtype=np.int64))]
    )
    grouped = pa.table([*(table.column(name) for name in keys), position], names=[*keys, "_position"])
    last = grouped.group_by(keys, use_threads=False).aggregate([("_position", "max")])
    return table.take(last.column("_position_max"))


def _consume_group(
    args: argparse.Namespace,
    style: str | output.Template,
    start: api.Start,
    wait: float | None,
    interrupted: _Interrupted,
) -> int:
    """Consume as a member of ``--group``: print each polled batch, then ack it, so a
    record is acknowledged only once it is written out (at least once). ``start``
    places a new group; an existing one continues where it left off. Stops after
    ``--max`` records, or once ``wait`` seconds pass with nothing (None: never; polls
    then last ``interrupt_check_seconds`` so that Ctrl-C is seen at once).

    Ctrl-C and a reader that goes away (``| head``) stop it cleanly: what it held goes
    back to the group uncounted. Any other failure leaves the group as failed, so what
    it held counts an attempt (a record it cannot write out is dead-lettered in time)."""
    remaining = args.max
    out = sys.stdout.buffer
    progress = _Counter(args.pattern)
    with (
        connect(args.server) as client,
        client.subscribe(args.pattern, group=args.group, start=start) as consumer,
    ):
        partitions = KafkaPartitions(client, args.pattern) if _wants_partitions(style) else None
        try:
            while remaining is None or remaining > 0:
                interrupted.check()
                limit = group_poll_records if remaining is None else min(remaining, group_poll_records)
                batches = consumer.poll_batches(
                    limit, timeout=interrupt_check_seconds if wait is None else wait
                )
                if not batches and wait is not None:
                    break
                for batch in batches:
                    records = batch.records
                    if partitions is not None:
                        records = partitions.add_column(records, batch.topic)
                    out.write(format_batch(records, style, batch.topic))
                    out.flush()
                    consumer.ack(batch)
                    progress.add(batch.records.num_rows)
                    if remaining is not None:
                        remaining -= batch.records.num_rows
        except OSError as exc:
            if stdout_is_closed_error(exc):
                consumer.close()  # the reader stopped reading: a clean stop, not a failure
            raise
        finally:
            progress.finish()
    return 0
