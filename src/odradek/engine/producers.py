"""Idempotent producer state: which appends of each producer a topic has written.

A producer names each append by a sequence, in one of two forms:

* ``(producer_id, sequence)``: one sequence per append, the native door's form.
* ``(producer_id, first_sequence, last_sequence)``: a range per append, the form of a
  Kafka record batch (first = base sequence, last = base + record count - 1). Range
  sequences are Kafka's int32 sequences: they wrap to 0 after 2**31 - 1.

Rules (as Kafka's, per topic instead of per partition; the Kafka door makes a producer
id per partition):

* A producer's first append may carry any sequence; after that each append must start
  at the previous one's last sequence + 1 (modulo 2**31 for ranges).
* A retry of one of the last ``limits.producer_results_remembered`` appends (same
  sequence, or same first and last for a range) is a duplicate: the original result is
  returned and nothing is written.
* Anything else (a gap, a sequence older than what is remembered, a range that matches
  no remembered one) is a SequenceError, which says what sequence was expected.
* A producer keeps the form of its first append: switching forms is an InvalidRequest,
  because the two forms' rules cannot be checked against each other.

The state is durable because every idempotent append's frame carries its producer id
and sequence (and last sequence, for a range) in its metadata; a snapshot is written
when a segment is sealed so that a restart reads only the active segment's frames.
Snapshots and frames written before ranges existed have no last sequence and load as
single-sequence appends.

Producer ids are a str, an int or bytes (``api.ProducerId``), stored as a str (frame
metadata and snapshots are JSON): a str as it is, an int as its decimal text (so the
int 7 and the str "7" are one producer, as they always were), and bytes as NUL followed
by their hex digits. A str id may not begin with NUL, so a bytes id is never the same
producer as a str id (decision 0010). Messages name a producer as it was given.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from typing import NamedTuple, TypeAlias

from odradek import api, limits
from odradek.errors import InvalidRequest, SequenceError
from odradek.storage import documents
from odradek.storage.disk import Disk

log = logging.getLogger(__name__)

# Range sequences are Kafka's: int32, wrapping to 0 after INT32 max (2**31 - 1).
RANGE_SEQUENCE_MODULUS = 2**31

# The Kafka door's form of an idempotent append: (producer id, first, last sequence).
RangeProducer: TypeAlias = tuple[api.ProducerId, int, int]
# What a stored bytes id begins with (the rest is its hex digits); no str id may.
BYTES_ID_PREFIX = "\x00"

Entry = tuple[int, int, int]  # first sequence, base offset, count
_Remembered = tuple[int, int, int, int | None]  # first sequence, base offset, count, last (ranges)


class ProducerKey(NamedTuple):
    """One idempotent append's producer and sequence; ``last`` is None unless a range."""

    producer_id: str
    first: int
    last: int | None = None


def producer_meta(key: ProducerKey) -> dict[str, object]:
    """What an idempotent append's frame carries in its metadata."""
    if key.last is None:
        return {"p": key.producer_id, "s": key.first}
    return {"p": key.producer_id, "s": key.first, "l": key.last}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def stored_producer_id(producer_id: api.ProducerId) -> str:
    """The form a producer id is kept in (see the module's docstring); refuses with
    InvalidRequest an id that is not a str, an int or bytes of an allowed length."""
    if isinstance(producer_id, bytes):
        if not 1 <= len(producer_id) <= limits.producer_id_length_max:
            raise InvalidRequest(
                f"a bytes producer id must be 1 to {limits.producer_id_length_max} bytes long"
            )
        return BYTES_ID_PREFIX + producer_id.hex()
    if isinstance(producer_id, str):
        if not 1 <= len(producer_id) <= limits.producer_id_length_max:
            raise InvalidRequest(
                f"a str producer id must be 1 to {limits.producer_id_length_max} characters long"
            )
        if producer_id.startswith(BYTES_ID_PREFIX):
            raise InvalidRequest(
                "a str producer id may not begin with NUL (that is how bytes ids are stored); "
                "pass such an id as bytes"
            )
        return producer_id
    if _is_int(producer_id):
        return str(producer_id)
    raise InvalidRequest(f"a producer id is a str, an int or bytes, got {type(producer_id).__name__}")


def shown_producer_id(stored: str) -> str:
    """A stored producer id as a message names it: as it was given (repr)."""
    if stored.startswith(BYTES_ID_PREFIX):
        try:
            return repr(bytes.fromhex(stored[len(BYTES_ID_PREFIX) :]))
        except ValueError:
            pass
    return repr(stored)


def validate_producer(producer: object) -> ProducerKey:
    if (
        not isinstance(producer, (tuple, list))
        or len(producer) not in (2, 3)
        or not all(_is_int(sequence) for sequence in producer[1:])
    ):
        raise InvalidRequest(
            "producer must be a (producer_id, sequence) pair or a (producer_id, first_sequence, "
            "last_sequence) triple: (str, int or bytes, int[, int])"
        )
    producer_id = stored_producer_id(producer[0])
    if len(producer) == 2:
        sequence = int(producer[1])
        if sequence < 0:
            raise InvalidRequest(f"producer sequence must be >= 0, got {sequence}")
        return ProducerKey(producer_id, sequence)
    first, last = int(producer[1]), int(producer[2])
    for name, value in (("first", first), ("last", last)):
        if not 0 <= value < RANGE_SEQUENCE_MODULUS:
            raise InvalidRequest(
                f"producer {name} sequence must be 0 to {RANGE_SEQUENCE_MODULUS - 1}, got {value}"
            )
    return ProducerKey(producer_id, first, last)


class ProducerState:
    def __init__(self) -> None:
        self._entries: dict[str, deque[_Remembered]] = {}

    def check(self, key: ProducerKey) -> Entry | None:
        """None if the append is new; the original entry if it is a retry."""
        entries = self._entries.get(key.producer_id)
        if not entries:
            return None
        is_range = entries[-1][3] is not None
        if is_range != (key.last is not None):
            current, requested = (
                ("ranges", "single sequences") if is_range else ("single sequences", "ranges")
            )
            raise InvalidRequest(
                f"producer {shown_producer_id(key.producer_id)} appends with {current}; "
                f"it cannot switch to {requested}"
            )
        if key.last is None:
            return _check_single(key.producer_id, key.first, entries)
        return _check_range(key.producer_id, key.first, key.last, entries)

    def record(self, key: ProducerKey, base_offset: int, count: int) -> None:
        entries = self._entries.setdefault(key.producer_id, deque(maxlen=limits.producer_results_remembered))
        entries.append((key.first, base_offset, count, key.last))

    def apply_meta(self, meta: dict[str, object] | None, base_offset: int, count: int) -> None:
        if meta and "p" in meta:
            last = meta.get("l")
            key = ProducerKey(
                str(meta["p"]),
                int(meta["s"]),  # type: ignore[call-overload]
                None if last is None else int(last),  # type: ignore[call-overload]
            )
            self.record(key, base_offset, count)

    def __len__(self) -> int:
        return len(self._entries)

    # -- snapshots --------------------------------------------------------------------

    def save(self, disk: Disk, directory: str, offset: int, *, sync: bool = True) -> None:
        """Entries are [first, base, count] for single sequences (the format before ranges
        existed) and [first, base, count, last] for ranges. A snapshot is a checksummed
        document (storage/documents.py) in one copy: it can be rebuilt from the log."""
        if not disk.isdir(directory):
            disk.makedirs(directory)
        path = os.path.join(directory, f"{offset:020d}.json")
        data = {
            producer_id: [list(entry[:3]) if entry[3] is None else list(entry) for entry in entries]
            for producer_id, entries in self._entries.items()
        }
        disk.write_atomically(path, documents.encode(data, 1), sync=sync)

    @classmethod
    def load(cls, disk: Disk, directory: str, at_most: int) -> tuple[ProducerState, int]:
        """The newest valid snapshot at an offset <= ``at_most`` and that offset (0 if none).

        A snapshot that fails its checksum is skipped with a warning: the log's frames
        after an older one rebuild the same state.
        """
        state = cls()
        if not disk.isdir(directory):
            return state, 0
        offsets = sorted(
            int(name[:-5])
            for name in disk.listdir(directory)
            if name.endswith(".json") and name[:-5].isdigit()
        )
        usable = [o for o in offsets if o <= at_most]
        for offset in reversed(usable):
            path = os.path.join(directory, f"{offset:020d}.json")
            try:
                data, _ = documents.decode(disk.read_bytes(path))
                entries_by_producer = {
                    str(producer_id): [
                        (int(e[0]), int(e[1]), int(e[2]), int(e[3]) if len(e) > 3 else None) for e in entries
                    ]
                    for producer_id, entries in data.items()
                }
            except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
                log.warning("producer snapshot %s is unusable (%s); using an older one", path, exc)
                continue
            for producer_id, entries in entries_by_producer.items():
                state._entries[producer_id] = deque(entries, maxlen=limits.producer_results_remembered)
            return state, offset
        return state, 0

    @staticmethod
    def prune(disk: Disk, directory: str, keep: int = 2) -> None:
        if not disk.isdir(directory):
            return
        names = sorted(n for n in disk.listdir(directory) if n.endswith(".json"))
        for name in names[:-keep]:
            disk.remove(os.path.join(directory, name))


def _check_single(producer_id: str, sequence: int, entries: deque[_Remembered]) -> Entry | None:
    last = entries[-1][0]
    if sequence == last + 1:
        return None
    for entry in entries:
        if entry[0] == sequence:
            return entry[:3]
    if sequence > last:
        raise SequenceError(
            f"producer {shown_producer_id(producer_id)} sent sequence {sequence} but {last + 1} was expected "
            "(a gap: an earlier append was never written)",
            producer_id,
            last + 1,
            sequence,
        )
    raise SequenceError(
        f"producer {shown_producer_id(producer_id)} sent sequence {sequence}, older than the last "
        f"{len(entries)} remembered (last is {last}); it cannot be deduplicated",
        producer_id,
        last + 1,
        sequence,
    )


def _check_range(producer_id: str, first: int, last: int, entries: deque[_Remembered]) -> Entry | None:
    """Kafka's order: a remembered (first, last) is a retry, then first must follow on."""
    for entry in entries:
        if entry[0] == first and entry[3] == last:
            return entry[:3]
    previous_last = entries[-1][3]
    if previous_last is None:  # not a range: check() only calls this for range producers
        raise RuntimeError(
            f"producer {shown_producer_id(producer_id)} has a single sequence among its ranges"
        )
    expected = (previous_last + 1) % RANGE_SEQUENCE_MODULUS
    if first == expected:
        return None
    ahead = (first - expected) % RANGE_SEQUENCE_MODULUS
    if ahead < RANGE_SEQUENCE_MODULUS // 2:
        reason = "a gap: an earlier append was never written"
    else:
        reason = (
            f"older than the last {len(entries)} remembered, or not one of them; it cannot be deduplicated"
        )
    raise SequenceError(
        f"producer {shown_producer_id(producer_id)} sent sequences {first}..{last} but {expected} "
        f"was expected ({reason})",
        producer_id,
        expected,
        first,
    )
