"""Partitions: which of a topic's N Kafka partitions a record belongs to.

An Odradek topic is one log. Through the Kafka door it appears as N partitions (the
``kafka_partitions`` setting, 1 by default) that all share the log's offsets, so a
partition's offsets have gaps, as in a compacted topic (decision 0014):

* a record produced through the Kafka door belongs to the partition its producer
  chose: it is kept in the frame's metadata (one partition's records of one request
  are one append), whatever partitioner the producer used;
* any other record (appended natively, or through the Kafka door before partitions
  were kept) belongs to ``(murmur2(key) & 0x7fffffff) % N``, the hash of Kafka's Java
  client (and kafka-python's and aiokafka's default partitioner, and librdkafka's
  ``murmur2_random``), or to ``offset % N`` when it has no key. N is the count that
  held when the record was written (the topic's partition history, store.py), so a
  record never moves when partitions are added.

The hash is computed for a whole batch at once with NumPy: keys are processed four
bytes at a time across all keys that still have that many bytes, in uint32
arithmetic that wraps exactly like Java's int.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

_SEED = np.uint32(0x9747B28C)
_M = np.uint32(0x5BD1E995)
# Once this few keys still have words left, each finishes its chain in plain Python
# (0.1 us a word) instead of a NumPy round over the rows (20 us a word): a 64 KiB key
# costs ~2 ms instead of ~360 ms.
_LONG_KEYS_MAX = 8


def murmur2(keys: pa.Array) -> np.ndarray:
    """Kafka's murmur2 of each value of a binary array (nulls hash as empty)."""
    count = len(keys)
    if count == 0:
        return np.zeros(0, dtype=np.uint32)
    if keys.type != pa.binary():
        keys = keys.cast(pa.binary())
    buffers = keys.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32)[keys.offset : keys.offset + count + 1].astype(
        np.int64
    )
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(1, np.uint8)
    starts = offsets[:-1]
    lengths = offsets[1:] - starts
    if keys.null_count:
        lengths = np.where(keys.is_valid().to_numpy(zero_copy_only=False), lengths, 0)
    hashes = _SEED ^ lengths.astype(np.uint32)
    words = lengths // 4
    for word in range(int(words.max())):
        active = np.flatnonzero(words > word)
        if len(active) <= _LONG_KEYS_MAX:  # a few long keys left: one chain each
            for row in active.tolist():
                hashes[row] = _chain(
                    int(hashes[row]), data, int(starts[row]) + 4 * word, int(words[row]) - word
                )
            break
        at = starts[active] + 4 * word
        k = (
            data[at].astype(np.uint32)
            | (data[at + 1].astype(np.uint32) << np.uint32(8))
            | (data[at + 2].astype(np.uint32) << np.uint32(16))
            | (data[at + 3].astype(np.uint32) << np.uint32(24))
        )
        k *= _M
        k ^= k >> np.uint32(24)
        k *= _M
        hashes[active] = (hashes[active] * _M) ^ k
    tails = lengths % 4
    tail_at = starts + (lengths & ~3)
    for extra, shift in ((3, 16), (2, 8)):
        rows = np.flatnonzero(tails >= extra)
        hashes[rows] ^= data[tail_at[rows] + extra - 1].astype(np.uint32) << np.uint32(shift)
    rows = np.flatnonzero(tails >= 1)
    hashes[rows] ^= data[tail_at[rows]].astype(np.uint32)
    hashes[rows] *= _M
    hashes ^= hashes >> np.uint32(13)
    hashes *= _M
    hashes ^= hashes >> np.uint32(15)
    return hashes


def _chain(state: int, data: np.ndarray, start: int, count: int) -> int:
    """murmur2's state after ``count`` more words of one key from byte ``start``: the
    words are mixed with NumPy, only the chain (multiply, xor) runs word by word."""
    mixed = np.frombuffer(data[start : start + 4 * count].tobytes(), dtype="<u4").astype(np.uint32)
    mixed *= _M
    mixed ^= mixed >> np.uint32(24)
    mixed *= _M
    multiplier = int(_M)
    for word in mixed.tolist():
        state = ((state * multiplier) & 0xFFFFFFFF) ^ word
    return state


def partition_of(keys: pa.Array, offsets: np.ndarray, partitions: int) -> np.ndarray:
    """The partition of each record (see the module docstring)."""
    if partitions == 1:
        return np.zeros(len(keys), dtype=np.int64)
    hashed = (murmur2(keys) & np.uint32(0x7FFFFFFF)).astype(np.int64) % partitions
    if keys.null_count:
        keyless = ~keys.is_valid().to_numpy(zero_copy_only=False)
        hashed[keyless] = offsets[keyless] % partitions
    return hashed


def counts_at(history: Sequence[tuple[int, int]], offsets: np.ndarray) -> np.ndarray:
    """The partition count that held at each offset (``history``: (first offset, count)
    in offset order, the first at offset 0)."""
    starts = np.fromiter((start for start, _ in history), dtype=np.int64, count=len(history))
    counts = np.fromiter((count for _, count in history), dtype=np.int64, count=len(history))
    found: np.ndarray = counts[np.maximum(np.searchsorted(starts, offsets, side="right") - 1, 0)]
    return found


def partitions_by_history(
    keys: pa.Array, offsets: np.ndarray, history: Sequence[tuple[int, int]]
) -> np.ndarray:
    """The partition of each record stored without one: by its key's hash (keyless: its
    offset) modulo the count that held at its offset."""
    counts = counts_at(history, offsets)
    if not len(counts) or int(counts.max()) == 1:
        return np.zeros(len(offsets), dtype=np.int64)
    hashed: np.ndarray = (murmur2(keys) & np.uint32(0x7FFFFFFF)).astype(np.int64) % counts
    if keys.null_count:
        keyless = ~keys.is_valid().to_numpy(zero_copy_only=False)
        hashed[keyless] = offsets[keyless] % counts[keyless]
    return hashed
