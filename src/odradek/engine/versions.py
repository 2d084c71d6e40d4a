"""Key heads and per-key version assignment for one append, vectorized.

Within an append, the i-th record of key K gets version ``head(K) + rank`` where rank
counts K's records in the append so far (1-based). Distinct keys are found with Arrow's
hash-based dictionary encoding, ranks with a stable NumPy sort.

Key heads live in :class:`~odradek.engine.keyheads.KeyHeads`, which looks up and
updates all the distinct keys of an append at once: nothing here loops over records or
keys in Python.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from odradek.engine.keyheads import KeyHeads
from odradek.types import KeyVersions


@dataclasses.dataclass(frozen=True)
class Assignment:
    versions: np.ndarray  # int64 per record; 0 where the record is keyless
    keyed: np.ndarray | None  # bool mask of keyed records, None if all are keyed
    distinct_keys: pa.Array  # the append's distinct keys (binary, no nulls)
    key_ids: np.ndarray  # their ids in KeyHeads (-1 for new keys)
    new_heads: np.ndarray  # the head version of each distinct key after the append

    def apply(self, heads: KeyHeads) -> None:
        if len(self.distinct_keys):
            heads.apply(self.distinct_keys, self.key_ids, self.new_heads)

    def versions_by_key(self) -> KeyVersions:
        return KeyVersions(self.distinct_keys, self.new_heads)


_NO_IDS = np.zeros(0, np.int64)
_NO_KEYS = pa.array([], pa.binary())
# An append of at most this many records (the single event of an event-sourcing
# command) is assigned in plain Python: a dozen NumPy and Arrow calls on arrays of one
# element cost ~30 us, several times what a bounded loop over a few keys does.
SMALL_APPEND_RECORDS_MAX = 8


def assign_versions(keys: pa.Array, heads: KeyHeads) -> Assignment:
    """Compute versions for ``keys`` (binary, nullable) given current ``heads``.

    ``heads`` is not modified: the caller applies the assignment once the append is
    written, so that a refused or failed append leaves no trace.
    """
    count = len(keys)
    if keys.null_count == count:
        return Assignment(np.zeros(count, np.int64), np.zeros(count, bool), _NO_KEYS, _NO_IDS, _NO_IDS)
    if count <= SMALL_APPEND_RECORDS_MAX and not keys.null_count:
        return _assign_small(keys.to_pylist(), heads)
    encoded = pc.dictionary_encode(keys)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    distinct = encoded.dictionary
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


def _assign_small(values: list[bytes], heads: KeyHeads) -> Assignment:
    """assign_versions for a few keyed records (at most SMALL_APPEND_RECORDS_MAX)."""
    positions: dict[bytes, int] = {}
    indices = [positions.setdefault(value, len(positions)) for value in values]
    distinct = pa.array(list(positions), pa.binary())
    key_ids, base = heads.lookup(distinct)
    heads_now = base.tolist()
    versions = []
    for index in indices:
        heads_now[index] += 1
        versions.append(heads_now[index])
    return Assignment(np.array(versions, np.int64), None, distinct, key_ids, np.array(heads_now, np.int64))


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
