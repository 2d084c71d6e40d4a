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
        patch.setattr(keyheads, "_hash_one", lambda key: 0)
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


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=20))
def test_scalar_hash_equals_the_vector_hash(keys: list[bytes]) -> None:
    data, starts, lengths = keyheads._layout(pa.array(keys, pa.binary()))
    assert keyheads._hash(data, starts, lengths).tolist() == [keyheads._hash_one(k) for k in keys]


@settings(max_examples=40, deadline=None)
@given(st.lists(small_keys, min_size=1, max_size=60, unique=True), st.data())
def test_scalar_and_vector_lookups_agree(keys: list[bytes], data: st.DataObject) -> None:
    heads = KeyHeads()
    stored = keys[: len(keys) // 2]
    if stored:
        array = pa.array(stored, pa.binary())
        heads.apply(array, heads.lookup(array)[0], np.arange(1, len(stored) + 1, dtype=np.int64))
    probes = data.draw(st.lists(st.sampled_from(keys), min_size=1, max_size=4, unique=True))
    scalar = heads.lookup(probes)  # <= 4 keys: the plain-Python path
    padded = probes + [k for k in keys if k not in probes]
    vector_ids, vector_versions = heads.lookup(padded)  # more keys: the NumPy path
    if len(padded) > 4:
        assert scalar[0].tolist() == vector_ids[: len(probes)].tolist()
        assert scalar[1].tolist() == vector_versions[: len(probes)].tolist()
    assert scalar[1].tolist() == [stored.index(k) + 1 if k in stored else 0 for k in probes]
