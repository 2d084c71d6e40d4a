"""Key heads and per-key version assignment for one append, vectorized.

Within an append, the i-th record of key K gets version ``head(K) + rank`` where rank
counts K's records in the append so far (1-based). Distinct keys are found with Arrow's
hash-based dictionary encoding, ranks with a stable NumPy sort.

Key heads live in :class:`~odradek.engine.keyheads.KeyHeads`, which looks up and
updates all the distinct keys of an append at once: nothing here loops over records or
keys in Python, but :func:`assign_few`, the same assignment for an append of at most
``SMALL_APPEND_RECORDS_MAX`` records, where a bounded loop beats a dozen kernel calls.
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
# command) is assigned, written and indexed in plain Python (assign_few, and
# Topic.submit's small path): a dozen NumPy and Arrow calls on arrays of one element
# cost ~30 us, several times what a bounded loop over a few keys does. Measured
# (Topic.submit, fsync off, p50 on a loaded machine): the plain path costs a third of
# the vectorised one at 8 and 16 records, half at 32, and about as much at 64.
SMALL_APPEND_RECORDS_MAX = 32


def assign_versions(keys: pa.Array, heads: KeyHeads) -> Assignment:
    """Compute versions for ``keys`` (binary, nullable) given current ``heads``.

    ``heads`` is not modified: the caller applies the assignment once the append is
    written, so that a refused or failed append leaves no trace.
    """
    count = len(keys)
    if keys.null_count == count:
        return Assignment(np.zeros(count, np.int64), np.zeros(count, bool), _NO_KEYS, _NO_IDS, _NO_IDS)
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


@dataclasses.dataclass(frozen=True)
class FewAssignment:
    """:class:`Assignment` of a few records (at most SMALL_APPEND_RECORDS_MAX), as
    plain Python lists."""

    versions: list[int]  # per record; 0 where the record is keyless
    distinct_keys: list[bytes]  # the append's distinct keys, in order of first record
    key_ids: list[int]  # their ids in KeyHeads (-1 for new keys)
    hashes: list[int]  # their KeyHeads hashes
    new_heads: list[int]  # the head version of each distinct key after the append

    def apply(self, heads: KeyHeads) -> None:
        if self.distinct_keys:
            heads.apply_few(self.distinct_keys, self.key_ids, self.hashes, self.new_heads)

    def versions_by_key(self) -> dict[bytes, int]:
        return dict(zip(self.distinct_keys, self.new_heads))


def assign_few(keys: list[bytes | None], heads: KeyHeads) -> FewAssignment:
    """:func:`assign_versions` of a few records' keys (None: keyless), in plain Python:
    the same versions, and ``heads`` is not modified either."""
    positions: dict[bytes, int] = {}
    indices = [-1 if key is None else positions.setdefault(key, len(positions)) for key in keys]
    distinct = list(positions)
    if not distinct:
        return FewAssignment([0] * len(keys), [], [], [], [])
    key_ids, heads_now, hashes = heads.lookup_few(distinct)
    versions = []
    for index in indices:
        if index < 0:
            versions.append(0)
        else:
            heads_now[index] += 1
            versions.append(heads_now[index])
    return FewAssignment(versions, distinct, key_ids, hashes, heads_now)


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
