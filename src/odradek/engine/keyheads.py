"""Key heads: the current version of every key of a topic, looked up a batch at a time.

Theory of operation
-------------------
An append of 10,000 records touches up to 10,000 distinct keys; looking each up in a
Python dict costs about half a microsecond (a cache miss and a Python call), which
alone would cap ingest near 2 million records/s and eat half the budget at 1 million.
This module keeps the heads in NumPy arrays and finds a whole batch of keys at once:

* Every key ever seen gets a dense id. Its bytes are kept in one growing byte buffer
  (``_data``, ``_starts``, ``_lengths`` by id) and its version in ``_versions[id]``.
* An open-addressing hash table (``_slot_ids``, ``_slot_hashes``; linear probing,
  load factor at most 1/2) maps a 64-bit hash of the key bytes to candidate ids.
* The hash of every key of a batch is computed with NumPy over the batch's bytes
  (a polynomial over the bytes, then a 64-bit finalizer mixing in the length). A hash
  is only a hint: every candidate is confirmed by comparing the key bytes, so a
  collision costs one more probe, never a wrong answer.
* Probing runs as rounds over all unresolved keys at once; the number of rounds is the
  longest probe sequence, a handful at load 1/2.

Nothing here is thread-safe: the topic's writer lock guards every call.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: powers never collapse to zero
_LENGTH_MAX = 1 << 16  # keys are at most limits.key_bytes_max (4 KiB); room to spare
_POWERS = np.cumprod(np.full(_LENGTH_MAX, _MULTIPLIER, dtype=np.uint64), dtype=np.uint64)
# Small to start with (grown by doubling): a data directory may hold 100,000 topics,
# most with few keys, and every open topic has its key heads in memory.
_INITIAL_SLOTS = 1 << 7
_INITIAL_KEYS = 64
_INITIAL_DATA_BYTES = 1 << 11


_SCALAR_KEYS_MAX = 4  # lookups of this many keys or fewer take the plain-Python path
_MASK64 = (1 << 64) - 1
_MULTIPLIER_INT = int(_MULTIPLIER)


def _hash_one(key: bytes) -> int:
    """:func:`_hash` of a single key, in plain Python (the same value, bit for bit)."""
    total = 0
    power = 1
    for byte in key:
        power = (power * _MULTIPLIER_INT) & _MASK64
        total = (total + (byte + 1) * power) & _MASK64
    value = total ^ ((len(key) * _MULTIPLIER_INT) & _MASK64)
    value ^= value >> 30
    value = (value * 0xBF58476D1CE4E5B9) & _MASK64
    value ^= value >> 27
    value = (value * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _finalize(values: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads every input bit over the whole word."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(0xBF58476D1CE4E5B9)
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(0x94D049BB133111EB)
    mixed: np.ndarray = values ^ (values >> np.uint64(31))
    return mixed


def _layout(keys: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bytes, starts, lengths) of a binary array without nulls, as NumPy arrays."""
    if keys.null_count:
        raise ValueError("key heads take no null keys")
    if not pa.types.is_binary(keys.type):
        keys = keys.cast(pa.binary())
    offsets_buffer, data_buffer = keys.buffers()[1], keys.buffers()[2]
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[keys.offset : keys.offset + len(keys) + 1]
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    return data, offsets[:-1], np.diff(offsets)


def _as_array(keys: pa.Array | list[bytes]) -> pa.Array:
    return keys if isinstance(keys, pa.Array) else pa.array(keys, pa.binary())


def _hash(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    count = len(starts)
    total = int(lengths.sum())
    sums = np.zeros(count, np.uint64)
    if total:
        nonempty = lengths > 0
        positions = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        gathered = data[np.repeat(starts, lengths) + positions]
        contributions = (gathered.astype(np.uint64) + np.uint64(1)) * _POWERS[positions]
        first = np.cumsum(lengths) - lengths
        sums[nonempty] = np.add.reduceat(contributions, first[nonempty])
    return _finalize(sums ^ (lengths.astype(np.uint64) * _MULTIPLIER))


class KeyHeads:
    """The current version of every key (0 for a key with no records)."""

    def __init__(self, heads: Mapping[bytes, int] | None = None) -> None:
        self._count = 0
        self._data = np.zeros(_INITIAL_DATA_BYTES, np.uint8)
        self._data_used = 0
        self._starts = np.zeros(_INITIAL_KEYS, np.int64)
        self._lengths = np.zeros(_INITIAL_KEYS, np.int64)
        self._hashes = np.zeros(_INITIAL_KEYS, np.uint64)
        self._versions = np.zeros(_INITIAL_KEYS, np.int64)
        self._slot_ids = np.full(_INITIAL_SLOTS, -1, np.int64)
        self._slot_hashes = np.zeros(_INITIAL_SLOTS, np.uint64)
        if heads:
            keys = pa.array(list(heads), pa.binary())
            ids, _ = self.lookup(keys)
            self.apply(keys, ids, np.fromiter(heads.values(), np.int64, len(heads)))

    @classmethod
    def from_arrays(cls, keys: pa.Array, versions: np.ndarray) -> KeyHeads:
        heads = cls()
        if len(keys):
            ids, _ = heads.lookup(keys)
            heads.apply(keys, ids, np.asarray(versions, np.int64))
        return heads

    def __len__(self) -> int:
        return self._count

    # -- lookups ----------------------------------------------------------------------

    def get(self, key: bytes) -> int:
        _, versions = self.lookup(pa.array([key], pa.binary()))
        return int(versions[0])

    def lookup(self, keys: pa.Array | list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, versions) of distinct ``keys`` (binary, no nulls); -1 and 0 if unseen."""
        array = _as_array(keys)
        if len(array) <= _SCALAR_KEYS_MAX:
            if array.null_count:
                raise ValueError("key heads take no null keys")
            ids = np.fromiter(map(self._find_one, array.to_pylist()), np.int64, len(array))
            return ids, np.where(ids >= 0, self._versions[np.maximum(ids, 0)], 0)
        data, starts, lengths = _layout(array)
        hashes = _hash(data, starts, lengths)
        ids = self._find(data, starts, lengths, hashes)
        versions = np.where(ids >= 0, self._versions[np.maximum(ids, 0)], 0)
        return ids, versions

    def _find(
        self, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, hashes: np.ndarray
    ) -> np.ndarray:
        mask = np.uint64(len(self._slot_ids) - 1)
        positions = (hashes & mask).astype(np.int64)
        ids = np.full(len(hashes), -1, np.int64)
        active = np.arange(len(hashes))
        while len(active):
            slots = positions[active]
            slot_ids = self._slot_ids[slots]
            occupied = slot_ids >= 0
            same_hash = occupied & (self._slot_hashes[slots] == hashes[active])
            if same_hash.any():
                candidates = active[same_hash]
                equal = self._equal(data, starts[candidates], lengths[candidates], slot_ids[same_hash])
                ids[candidates[equal]] = slot_ids[same_hash][equal]
                resolved = np.zeros(len(active), bool)
                resolved[np.flatnonzero(same_hash)[equal]] = True
            else:
                resolved = np.zeros(len(active), bool)
            keep = occupied & ~resolved  # an empty slot ends the search: not present
            active = active[keep]
            positions[active] = (positions[active] + 1) & int(mask)
        return ids

    def _find_one(self, key: bytes) -> int:
        """The id of one key, probing in plain Python: for an append of a record or two,
        forty NumPy calls on one-element arrays cost ten times more than this."""
        return self._find_hashed(key, _hash_one(key))

    def _find_hashed(self, key: bytes, hashed: int) -> int:
        mask = len(self._slot_ids) - 1
        position = hashed & mask
        slot_ids, slot_hashes = self._slot_ids, self._slot_hashes
        while True:
            found = int(slot_ids[position])
            if found < 0:
                return -1
            if int(slot_hashes[position]) == hashed and int(self._lengths[found]) == len(key):
                start = int(self._starts[found])
                if self._data[start : start + len(key)].tobytes() == key:
                    return found
            position = (position + 1) & mask

    def lookup_few(self, keys: list[bytes]) -> tuple[list[int], list[int], list[int]]:
        """(ids, versions, hashes) of a few distinct ``keys``, in plain Python lists: the
        single-record append's form of :meth:`lookup` (no Arrow array is built for one
        key). Pass the hashes on to :meth:`apply_few`."""
        hashes = [_hash_one(key) for key in keys]
        ids = [self._find_hashed(key, hashed) for key, hashed in zip(keys, hashes)]
        versions = self._versions
        return ids, [int(versions[found]) if found >= 0 else 0 for found in ids], hashes

    def apply_few(self, keys: list[bytes], ids: list[int], hashes: list[int], versions: list[int]) -> None:
        """:meth:`apply` for what :meth:`lookup_few` found: new keys are inserted one by
        one in plain Python (the same table a batch insert builds, but for its order)."""
        for key, found, hashed, version in zip(keys, ids, hashes, versions):
            key_id = found if found >= 0 else self._insert_one(key, hashed)  # may grow _versions
            self._versions[key_id] = version

    def _insert_one(self, key: bytes, hashed: int) -> int:
        new_id = self._count
        length = len(key)
        start = self._data_used
        self._reserve(new_id + 1, start + length)
        if length:
            self._data[start : start + length] = np.frombuffer(key, np.uint8)
        self._starts[new_id] = start
        self._lengths[new_id] = length
        self._hashes[new_id] = hashed
        self._data_used = start + length
        self._count = new_id + 1
        if 2 * self._count > len(self._slot_ids):
            self._rehash(2 * len(self._slot_ids))
            return new_id
        mask = len(self._slot_ids) - 1
        position = hashed & mask
        slot_ids = self._slot_ids
        while slot_ids[position] >= 0:
            position = (position + 1) & mask
        slot_ids[position] = new_id
        self._slot_hashes[position] = hashed
        return new_id

    def _equal(
        self, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, ids: np.ndarray
    ) -> np.ndarray:
        """Whether each key (data[starts:starts+lengths]) equals the stored key ``ids``."""
        equal = self._lengths[ids] == lengths
        check = np.flatnonzero(equal & (lengths > 0))
        if len(check):
            check_lengths = lengths[check]
            total = int(check_lengths.sum())
            first = np.cumsum(check_lengths) - check_lengths
            positions = np.arange(total, dtype=np.int64) - np.repeat(first, check_lengths)
            ours = data[np.repeat(starts[check], check_lengths) + positions]
            stored = self._data[np.repeat(self._starts[ids[check]], check_lengths) + positions]
            same = (ours == stored).astype(np.uint8)
            equal[check] = np.minimum.reduceat(same, first).astype(bool)
        result: np.ndarray = equal
        return result

    # -- updates ----------------------------------------------------------------------

    def apply(self, keys: pa.Array | list[bytes], ids: np.ndarray, versions: np.ndarray) -> None:
        """Set the heads of distinct ``keys`` (ids from :meth:`lookup`) to ``versions``."""
        unknown = np.flatnonzero(ids < 0)
        if len(unknown):
            ids = ids.copy()
            ids[unknown] = self._insert(_as_array(keys).take(pa.array(unknown)))
        self._versions[ids] = versions

    def _insert(self, keys: pa.Array) -> np.ndarray:
        data, starts, lengths = _layout(keys)
        count = len(lengths)
        first_id = self._count
        new_ids = np.arange(first_id, first_id + count, dtype=np.int64)
        self._reserve(first_id + count, self._data_used + int(lengths.sum()))
        # Copy the key bytes to the end of the store.
        total = int(lengths.sum())
        if total:
            first = np.cumsum(lengths) - lengths
            positions = np.arange(total, dtype=np.int64) - np.repeat(first, lengths)
            self._data[self._data_used : self._data_used + total] = data[
                np.repeat(starts, lengths) + positions
            ]
            self._starts[new_ids] = self._data_used + first
        else:
            self._starts[new_ids] = self._data_used
        self._data_used += total
        self._lengths[new_ids] = lengths
        hashes = _hash(data, starts, lengths)
        self._hashes[new_ids] = hashes
        self._count += count
        if 2 * self._count > len(self._slot_ids):
            slots = len(self._slot_ids)
            while 2 * self._count > slots:  # size first: placing into a full table never ends
                slots *= 2
            self._rehash(slots)
        else:
            self._place(new_ids, hashes)
        return new_ids

    def _place(self, ids: np.ndarray, hashes: np.ndarray) -> None:
        """Put ids (known to be absent) into free slots by linear probing."""
        mask = len(self._slot_ids) - 1
        positions = (hashes & np.uint64(mask)).astype(np.int64)
        pending = np.arange(len(ids))
        while len(pending):
            slots = positions[pending]
            free = self._slot_ids[slots] < 0
            contenders = pending[free]
            if len(contenders):
                taken, first = np.unique(slots[free], return_index=True)
                winners = contenders[first]
                self._slot_ids[taken] = ids[winners]
                self._slot_hashes[taken] = hashes[winners]
                placed = np.zeros(len(ids), bool)
                placed[winners] = True
                pending = pending[~placed[pending]]
            positions[pending] = (positions[pending] + 1) & mask

    def _rehash(self, slots: int) -> None:
        self._slot_ids = np.full(slots, -1, np.int64)
        self._slot_hashes = np.zeros(slots, np.uint64)
        self._place(np.arange(self._count, dtype=np.int64), self._hashes[: self._count])

    def _reserve(self, count: int, data_bytes: int) -> None:
        if count > len(self._versions):
            size = max(count, 2 * len(self._versions))
            for name in ("_starts", "_lengths", "_hashes", "_versions"):
                old = getattr(self, name)
                grown = np.zeros(size, old.dtype)
                grown[: len(old)] = old
                setattr(self, name, grown)
        if data_bytes > len(self._data):
            grown_data = np.zeros(max(data_bytes, 2 * len(self._data)), np.uint8)
            grown_data[: self._data_used] = self._data[: self._data_used]
            self._data = grown_data
