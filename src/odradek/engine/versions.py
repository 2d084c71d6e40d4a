"""Per-key version assignment for one append, vectorized.

Within an append, the i-th record of key K gets version ``head(K) + rank`` where rank
counts K's records in the append so far (1-based). Distinct keys are found with Arrow's
hash-based dictionary encoding, ranks with a stable NumPy sort: the only Python-level
work is one dictionary lookup per *distinct* key, to read and update the key heads.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclasses.dataclass(frozen=True)
class Assignment:
    versions: np.ndarray  # int64 per record; 0 where the record is keyless
    keyed: np.ndarray | None  # bool mask of keyed records, None if all are keyed
    distinct_keys: list[bytes]  # the append's distinct keys
    new_heads: list[int]  # the head version of each distinct key after the append


def assign_versions(keys: pa.Array, heads: dict[bytes, int]) -> Assignment:
    """Compute versions for ``keys`` (binary, nullable) given current ``heads``.

    ``heads`` is not modified: the caller applies ``new_heads`` once the append is
    written, so that a refused or failed append leaves no trace.
    """
    count = len(keys)
    if keys.null_count == count:
        return Assignment(np.zeros(count, np.int64), np.zeros(count, bool), [], [])
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
    base = np.fromiter((heads.get(k, 0) for k in distinct), dtype=np.int64, count=len(distinct))
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
    return Assignment(versions, keyed, distinct, (base + counts).tolist())


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
