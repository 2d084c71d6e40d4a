"""The records every system is given, built once, up front, by Arrow and NumPy.

A dataset is two Arrow arrays, ``key`` and ``value``; Odradek appends zero-copy slices
of them as record batches, the peers' clients take the same bytes as Python lists
(converted before any clock starts). Keys are ASCII (``k`` and eight digits) so that
every system can use them as they are: as a Redis stream name part or a NATS subject
token. Values are random bytes, so no system gains by compressing them.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

key_digits = 8
replay_key = b"replay-target"


class Dataset:
    def __init__(self, keys: pa.Array, values: pa.Array) -> None:
        if len(keys) != len(values):
            raise ValueError("keys and values differ in length")
        self.keys = keys
        self.values = values

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def value_bytes(self) -> int:
        """Payload bytes: the values, which is what the bandwidth figures count."""
        return int(pc.sum(pc.binary_length(self.values)).as_py() or 0)

    def head(self, count: int) -> Dataset:
        return Dataset(self.keys.slice(0, count), self.values.slice(0, count))

    def batches(self, records_per_batch: int) -> list[pa.RecordBatch]:
        """Zero-copy record batches of at most ``records_per_batch`` records."""
        whole = pa.RecordBatch.from_arrays([self.keys, self.values], names=["key", "value"])
        return [whole.slice(start, records_per_batch) for start in range(0, len(self), records_per_batch)]

    @functools.cached_property
    def key_list(self) -> list[bytes]:
        return [key for key in self.keys.to_pylist() if key is not None]

    @functools.cached_property
    def value_list(self) -> list[bytes]:
        return [value for value in self.values.to_pylist() if value is not None]

    @functools.cached_property
    def key_text(self) -> pa.Array:
        """Keys as UTF-8 strings, for systems that build names (subjects, stream keys) from them."""
        return pc.cast(self.keys, pa.utf8())


def keyed(count: int, distinct_keys: int, value_bytes: int, seed: int = 1) -> Dataset:
    """``count`` records over ``distinct_keys`` keys drawn uniformly, random values."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, distinct_keys, size=count)
    return Dataset(_key_names(ids), _random_values(rng, count, value_bytes))


def with_replay_key(
    count: int, distinct_keys: int, value_bytes: int, key_records: int, seed: int = 2
) -> Dataset:
    """Like :func:`keyed`, with :data:`replay_key` on ``key_records`` evenly spread records."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, distinct_keys, size=count)
    mask = np.zeros(count, dtype=bool)
    mask[np.linspace(0, count - 1, num=min(key_records, count)).astype(np.int64)] = True
    keys = pc.if_else(pa.array(mask), pa.scalar(replay_key, pa.binary()), _key_names(ids))
    return Dataset(keys, _random_values(rng, count, value_bytes))


def _key_names(ids: np.ndarray) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(ids), pa.utf8()), key_digits, "0")
    names = pc.binary_join_element_wise(pa.scalar("k"), digits, pa.scalar(""))
    return pc.cast(names, pa.binary())


def _random_values(rng: np.random.Generator, count: int, value_bytes: int) -> pa.Array:
    raw = rng.bytes(count * value_bytes)
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(value_bytes), count, [None, pa.py_buffer(raw)])
    return pc.cast(fixed, pa.binary())
