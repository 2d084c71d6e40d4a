"""Virtual partitions: which of a topic's N Kafka partitions a record belongs to.

An Odradek topic is one log. Through the Kafka door it appears as N partitions
(the ``kafka_partitions`` setting, 1 by default) that all share the log's offsets:

* a keyed record belongs to partition ``(murmur2(key) & 0x7fffffff) % N``, the hash
  of Kafka's Java client (and kafka-python's and aiokafka's default partitioner, and
  librdkafka's ``murmur2_random``), so a producer that partitions by key with it
  writes each record to the partition it will be read from;
* a keyless record belongs to partition ``offset % N``, spreading them evenly;
* producing to partition p simply appends to the log; a fetch of partition p returns
  only the records that belong to p, so offsets within a partition have gaps, as in
  a compacted topic.

The hash is computed for a whole batch at once with NumPy: keys are processed four
bytes at a time across all keys that still have that many bytes, in uint32
arithmetic that wraps exactly like Java's int.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_SEED = np.uint32(0x9747B28C)
_M = np.uint32(0x5BD1E995)


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


def partition_of(keys: pa.Array, offsets: np.ndarray, partitions: int) -> np.ndarray:
    """The partition of each record (see the module docstring)."""
    if partitions == 1:
        return np.zeros(len(keys), dtype=np.int64)
    hashed = (murmur2(keys) & np.uint32(0x7FFFFFFF)).astype(np.int64) % partitions
    if keys.null_count:
        keyless = ~keys.is_valid().to_numpy(zero_copy_only=False)
        hashed[keyless] = offsets[keyless] % partitions
    return hashed


def select_partition(batch: pa.RecordBatch, partition: int, partitions: int) -> pa.RecordBatch:
    """The rows of a stored batch that belong to ``partition``."""
    if partitions == 1:
        return batch
    offsets = batch.column("offset").to_numpy(zero_copy_only=False)
    mask = partition_of(batch.column("key"), offsets, partitions) == partition
    return batch.filter(pa.array(mask))
