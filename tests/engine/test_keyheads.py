"""KeyHeads, the vectorized key → version table, agrees with a plain dict.

Method: hypothesis drives batches of lookups and updates against a dict model, with
keys that stress the byte comparison (empty, NUL-suffixed, prefixes of each other) and
enough distinct keys to force several rehashes. A second run replaces the hash with a
constant so that every key collides: answers must stay exact (the hash is only a hint).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.engine import keyheads
from odradek.engine.keyheads import KeyHeads

small_keys = st.binary(max_size=6) | st.sampled_from([b"", b"\x00", b"a", b"a\x00", b"a\x00\x00", b"ab"])
batches = st.lists(st.lists(small_keys, max_size=40, unique=True), min_size=1, max_size=25)


def _exercise(batch_list: list[list[bytes]]) -> None:
    heads = KeyHeads()
    model: dict[bytes, int] = {}
    for step, batch in enumerate(batch_list):
        keys = pa.array(batch, pa.binary())
        ids, versions = heads.lookup(keys)
        assert versions.tolist() == [model.get(k, 0) for k in batch]
        assert [i >= 0 for i in ids.tolist()] == [k in model for k in batch]
        new_versions = np.array([model.get(k, 0) + step + 1 for k in batch], np.int64)
        heads.apply(keys, ids, new_versions)
        model.update(zip(batch, new_versions.tolist()))
        assert len(heads) == len(model)
    for key, version in model.items():
        assert heads.get(key) == version
    assert heads.get(b"never-seen-key") == 0


@settings(max_examples=60, deadline=None)
@given(batches)
def test_matches_a_dict(batch_list: list[list[bytes]]) -> None:
    _exercise(batch_list)


@settings(max_examples=30, deadline=None)
@given(batches)
def test_exact_when_every_hash_collides(batch_list: list[list[bytes]]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keyheads, "_hash", lambda data, starts, lengths: np.zeros(len(starts), np.uint64))
        _exercise(batch_list)


def test_many_keys_grow_the_table_and_keep_answers() -> None:
    heads = KeyHeads()
    keys = pa.array([f"key-{i}".encode() for i in range(50_000)])
    ids, versions = heads.lookup(keys)
    assert (ids == -1).all() and (versions == 0).all()
    heads.apply(keys, ids, np.arange(50_000, dtype=np.int64) + 1)
    probe = pa.array([b"key-0", b"key-49999", b"key-12345", b"key-50000"])
    assert heads.lookup(probe)[1].tolist() == [1, 50_000, 12_346, 0]
    sliced = keys.slice(100, 3)  # arrays with an offset are read correctly
    assert heads.lookup(sliced)[1].tolist() == [101, 102, 103]


def test_from_arrays_and_null_keys_refused() -> None:
    heads = KeyHeads.from_arrays(pa.array([b"x", b"y"]), np.array([3, 9]))
    assert (heads.get(b"x"), heads.get(b"y"), len(heads)) == (3, 9, 2)
    with pytest.raises(ValueError, match="null"):
        heads.lookup(pa.array([b"x", None], pa.binary()))
