"""Idempotent producer state: which (producer_id, sequence) pairs a topic has written.

Rules (as Kafka's, per topic instead of per partition):
* A producer's first append may carry any sequence; after that each append must carry
  the previous sequence + 1.
* A retry of one of the last ``limits.producer_results_remembered`` sequences is a
  duplicate: the original result is returned and nothing is written.
* A sequence further ahead (a gap) or further back than what is remembered is a
  SequenceError, which says what sequence was expected.

The state is durable because every idempotent append's frame carries its producer id
and sequence in its metadata; a snapshot is written when a segment is sealed so that a
restart reads only the active segment's frames.
"""

from __future__ import annotations

import json
import os
from collections import deque

from odradek import limits
from odradek.errors import InvalidRequest, SequenceError
from odradek.files import write_json_atomically

Entry = tuple[int, int, int]  # sequence, base offset, count
ProducerKey = tuple[str, int]  # producer id, sequence


def producer_meta(key: ProducerKey) -> dict[str, object]:
    """What an idempotent append's frame carries in its metadata."""
    return {"p": key[0], "s": key[1]}


def validate_producer(producer: object) -> ProducerKey:
    if (
        not isinstance(producer, (tuple, list))
        or len(producer) != 2
        or not isinstance(producer[0], (str, int))
        or isinstance(producer[1], bool)
        or not isinstance(producer[1], int)
    ):
        raise InvalidRequest("producer must be a (producer_id, sequence) pair: (str or int, int)")
    producer_id, sequence = str(producer[0]), int(producer[1])
    if not producer_id or len(producer_id) > limits.producer_id_length_max:
        raise InvalidRequest(f"producer id must be 1 to {limits.producer_id_length_max} characters long")
    if sequence < 0:
        raise InvalidRequest(f"producer sequence must be >= 0, got {sequence}")
    return producer_id, sequence


class ProducerState:
    def __init__(self) -> None:
        self._entries: dict[str, deque[Entry]] = {}

    def check(self, key: ProducerKey) -> Entry | None:
        """None if the append is new; the original entry if it is a retry."""
        producer_id, sequence = key
        entries = self._entries.get(producer_id)
        if not entries:
            return None
        last = entries[-1][0]
        if sequence == last + 1:
            return None
        for entry in entries:
            if entry[0] == sequence:
                return entry
        if sequence > last:
            raise SequenceError(
                f"producer {producer_id!r} sent sequence {sequence} but {last + 1} was expected "
                "(a gap: an earlier append was never written)",
                producer_id,
                last + 1,
                sequence,
            )
        raise SequenceError(
            f"producer {producer_id!r} sent sequence {sequence}, older than the last "
            f"{len(entries)} remembered (last is {last}); it cannot be deduplicated",
            producer_id,
            last + 1,
            sequence,
        )

    def record(self, key: ProducerKey, base_offset: int, count: int) -> None:
        producer_id, sequence = key
        entries = self._entries.setdefault(producer_id, deque(maxlen=limits.producer_results_remembered))
        entries.append((sequence, base_offset, count))

    def apply_meta(self, meta: dict[str, object] | None, base_offset: int, count: int) -> None:
        if meta and "p" in meta:
            self.record((str(meta["p"]), int(meta["s"])), base_offset, count)  # type: ignore[call-overload]

    def __len__(self) -> int:
        return len(self._entries)

    # -- snapshots --------------------------------------------------------------------

    def save(self, directory: str, offset: int) -> None:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"{offset:020d}.json")
        write_json_atomically(
            path, {pid: [list(e) for e in entries] for pid, entries in self._entries.items()}
        )

    @classmethod
    def load(cls, directory: str, at_most: int) -> tuple[ProducerState, int]:
        """The newest snapshot at an offset <= ``at_most`` and that offset (0 if none)."""
        state = cls()
        if not os.path.isdir(directory):
            return state, 0
        offsets = sorted(
            int(name[:-5]) for name in os.listdir(directory) if name.endswith(".json") and name[:-5].isdigit()
        )
        usable = [o for o in offsets if o <= at_most]
        for offset in reversed(usable):
            try:
                with open(os.path.join(directory, f"{offset:020d}.json")) as handle:
                    data = json.load(handle)
            except (OSError, ValueError):
                continue
            for pid, entries in data.items():
                state._entries[pid] = deque(
                    (tuple(e) for e in entries), maxlen=limits.producer_results_remembered
                )
            return state, offset
        return state, 0

    @staticmethod
    def prune(directory: str, keep: int = 2) -> None:
        if not os.path.isdir(directory):
            return
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
        for name in names[:-keep]:
            os.remove(os.path.join(directory, name))
