"""Key heads and per-key version assignment for one append, vectorized.

Within an append, the i-th record of key K gets version ``head(K) + rank`` where rank
counts K's records in the append so far (1-based). Distinct keys are found with Arrow's
hash-based dictionary encoding, ranks with a stable NumPy sort.

Key heads live in :class:`KeyHeads`: a dict from key to a dense id and a NumPy array
of versions by id. The only Python-level work of an append is one dict lookup per
*distinct* key (inserts only for keys never seen before); the heads themselves are
read and written as arrays.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class KeyHeads:
    """The current version of every key of a topic (0 for a key with no records)."""

    def __init__(self, heads: dict[bytes, int] | None = None) -> None:
        self._ids: dict[bytes, int] = {}
        self._versions = np.zeros(1024, np.int64)
        if heads:
            keys = list(heads)
            self._ids = dict(zip(keys, range(len(keys))))
            self._grow(len(keys))
            self._versions[: len(keys)] = np.fromiter(heads.values(), np.int64, len(keys))

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, key: bytes) -> int:
        index = self._ids.get(key)
        return 0 if index is None else int(self._versions[index])

    def lookup(self, keys: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, versions) of ``keys``; id -1 and version 0 for keys never seen."""
        ids = np.fromiter(map(self._ids.get, keys, itertools.repeat(-1)), np.int64, len(keys))
        versions = np.where(ids >= 0, self._versions[np.maximum(ids, 0)], 0)
        return ids, versions

    def apply(self, keys: list[bytes], ids: np.ndarray, versions: np.ndarray) -> None:
        """Set the heads of ``keys`` (ids from :meth:`lookup`) to ``versions``."""
        unknown = ids < 0
        if unknown.any():
            ids = ids.copy()
            first = len(self._ids)
            fresh = np.arange(first, first + int(unknown.sum()), dtype=np.int64)
            ids[unknown] = fresh
            self._ids.update(zip(itertools.compress(keys, unknown.tolist()), fresh.tolist()))
            self._grow(len(self._ids))
        self._versions[ids] = versions

    def _grow(self, size: int) -> None:
        if size > len(self._versions):
            grown = np.zeros(max(size, 2 * len(self._versions)), np.int64)
            grown[: len(self._versions)] = self._versions
            self._versions = grown


@dataclasses.dataclass(frozen=True)
class Assignment:
    versions: np.ndarray  # int64 per record; 0 where the record is keyless
    keyed: np.ndarray | None  # bool mask of keyed records, None if all are keyed
    distinct_keys: list[bytes]  # the append's distinct keys
    key_ids: np.ndarray  # their ids in KeyHeads (-1 for new keys)
    new_heads: np.ndarray  # the head version of each distinct key after the append

    def apply(self, heads: KeyHeads) -> None:
        if self.distinct_keys:
            heads.apply(self.distinct_keys, self.key_ids, self.new_heads)

    def versions_by_key(self) -> dict[bytes, int]:
        return dict(zip(self.distinct_keys, self.new_heads.tolist()))


_NO_IDS = np.zeros(0, np.int64)


def assign_versions(keys: pa.Array, heads: KeyHeads) -> Assignment:
    """Compute versions for ``keys`` (binary, nullable) given current ``heads``.

    ``heads`` is not modified: the caller applies the assignment once the append is
    written, so that a refused or failed append leaves no trace.
    """
    count = len(keys)
    if keys.null_count == count:
        return Assignment(np.zeros(count, np.int64), np.zeros(count, bool), [], _NO_IDS, _NO_IDS)
    encoded = pc.dictionary_encode(keys)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    distinct = encoded.dictionary.to_pylist()
    keyed = None
    indices_array = encoded.indices
    if keys.null_count:
        keyed = keys.is_valid().to_numpy(zero_copy_only=False)
        indices = indices_array.fill_null(0).to_numpy().astype(np.int64)
    else:
        indices = indices_array.to_numpy().astype(np.int64)
    key_ids, base = heads.lookup(distinct)
    if keyed is None:
        ranks = _ranks(indices, len(distinct))
        counts = np.bincount(indices, minlength=len(distinct))
    else:
        ranks = np.zeros(count, np.int64)
        ranks[keyed] = _ranks(indices[keyed], len(distinct))
        counts = np.bincount(indices[keyed], minlength=len(distinct))
    versions = base[indices] + ranks
    if keyed is not None:
        versions[~keyed] = 0
    return Assignment(versions, keyed, distinct, key_ids, base + counts)


def _ranks(indices: np.ndarray, groups: int) -> np.ndarray:
    """1-based occurrence number of each element among equal elements, in order."""
    n = len(indices)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(indices, kind="stable")
    sorted_indices = indices[order]
    boundaries = np.flatnonzero(np.diff(sorted_indices)) + 1
    starts = np.concatenate(([0], boundaries))
    lengths = np.diff(np.concatenate((starts, [n])))
    ranks_sorted = np.arange(n, dtype=np.int64) - np.repeat(starts, lengths) + 1
    ranks = np.empty(n, np.int64)
    ranks[order] = ranks_sorted
    return ranks
