"""Per-key version assignment (``engine.versions``).

Goal: for any sequence of appends, the i-th record of key K overall gets version i
(1, 2, 3… per key), keyless records get none, the key heads after each append equal
the count of each key's records so far, and computing an assignment changes nothing
until it is applied. Keys are compared as bytes: the empty key is a key, and keys
that differ only by trailing NUL bytes are different keys.

Method: a few hand-checked cases, then hypothesis drives ``assign_versions`` and
``KeyHeads`` with random key sequences (nulls, repeats, empty and NUL-suffixed keys,
enough distinct keys to grow the heads array) and compares every version and head with
a plain ``dict`` reference.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.engine.versions import KeyHeads, assign_versions


def keys_array(keys: list[bytes | None]) -> pa.Array:
    return pa.array(keys, pa.binary())


def reference_append(
    heads: dict[bytes, int], keys: list[bytes | None]
) -> tuple[list[int | None], dict[bytes, int]]:
    """Versions of one append and the append's {key: new head}, updating ``heads``."""
    versions: list[int | None] = []
    touched: dict[bytes, int] = {}
    for key in keys:
        if key is None:
            versions.append(None)
            continue
        heads[key] = heads.get(key, 0) + 1
        versions.append(heads[key])
        touched[key] = heads[key]
    return versions, touched


def assigned(keys: list[bytes | None], heads: KeyHeads) -> tuple[list[int | None], dict[bytes, int]]:
    assignment = assign_versions(keys_array(keys), heads)
    versions = assignment.versions.tolist()
    if assignment.keyed is not None:
        versions = [v if keyed else None for v, keyed in zip(versions, assignment.keyed.tolist())]
    # Keyless records have version 0 in the array; the mask tells them apart.
    for version, key in zip(versions, keys):
        assert (version is None) == (key is None)
    assignment.apply(heads)
    return versions, assignment.versions_by_key()


def test_versions_count_per_key_across_appends() -> None:
    heads = KeyHeads()
    assert assigned([b"a", b"b", b"a", None, b"a"], heads) == ([1, 1, 2, None, 3], {b"a": 3, b"b": 1})
    assert assigned([b"b", None, b"c"], heads) == ([2, None, 1], {b"b": 2, b"c": 1})
    assert (heads.get(b"a"), heads.get(b"b"), heads.get(b"c"), heads.get(b"zz")) == (3, 2, 1, 0)
    assert len(heads) == 3


def test_all_keyless_append_assigns_nothing() -> None:
    heads = KeyHeads({b"a": 4})
    assignment = assign_versions(keys_array([None, None]), heads)
    assert assignment.keyed is not None and not assignment.keyed.any()
    assert assignment.versions_by_key() == {}
    assignment.apply(heads)
    assert heads.get(b"a") == 4 and len(heads) == 1


def test_an_assignment_changes_nothing_until_applied() -> None:
    heads = KeyHeads({b"a": 1})
    assignment = assign_versions(keys_array([b"a", b"new"]), heads)
    assert heads.get(b"a") == 1 and heads.get(b"new") == 0 and len(heads) == 1
    # A second assignment computed before the first is applied sees the same heads.
    again = assign_versions(keys_array([b"a"]), heads)
    assert again.versions.tolist() == [2]
    assignment.apply(heads)
    assert heads.get(b"a") == 2 and heads.get(b"new") == 1


def test_empty_and_nul_suffixed_keys_are_distinct() -> None:
    heads = KeyHeads()
    keys: list[bytes | None] = [b"", b"a", b"a\x00", b"a\x00\x00", b"", b"a\x00", None, b"\x00"]
    versions, touched = assigned(keys, heads)
    assert versions == [1, 1, 1, 1, 2, 2, None, 1]
    assert touched == {b"": 2, b"a": 1, b"a\x00": 2, b"a\x00\x00": 1, b"\x00": 1}


def test_heads_grow_past_their_initial_capacity() -> None:
    heads = KeyHeads({f"old-{i}".encode(): i + 1 for i in range(1500)})
    assert heads.get(b"old-1499") == 1500
    fresh: list[bytes | None] = [f"new-{i}".encode() for i in range(3000)]
    versions, _ = assigned(fresh + fresh[:10], heads)
    assert versions == [1] * 3000 + [2] * 10
    assert len(heads) == 4500
    assert heads.get(b"new-2999") == 1 and heads.get(b"new-0") == 2 and heads.get(b"old-0") == 1


def test_lookup_reports_unknown_keys() -> None:
    heads = KeyHeads({b"a": 7})
    ids, versions = heads.lookup([b"a", b"b"])
    assert ids[1] == -1
    assert versions.tolist() == [7, 0]


def test_large_append_matches_reference() -> None:
    rng = np.random.default_rng(7)
    picks = rng.integers(0, 500, 20_000)
    keys: list[bytes | None] = [None if p % 17 == 0 else f"k{p}".encode() for p in picks.tolist()]
    heads = KeyHeads()
    reference: dict[bytes, int] = {}
    assert assigned(keys, heads) == reference_append(reference, keys)
    assert assigned(keys[::-1], heads) == reference_append(reference, keys[::-1])


# -- properties --------------------------------------------------------------------------

TRICKY_KEYS = [b"", b"\x00", b"\x00\x00", b"a", b"a\x00", b"a\x00\x00", b"b", b"\xff", "ключ".encode()]
KEYS = st.one_of(st.none(), st.sampled_from(TRICKY_KEYS), st.binary(max_size=3))
APPENDS = st.lists(st.lists(KEYS, min_size=1, max_size=40), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None, database=None)
@given(APPENDS)
def test_assign_versions_matches_a_dict_reference(appends: list[list[bytes | None]]) -> None:
    heads = KeyHeads()
    reference: dict[bytes, int] = {}
    for keys in appends:
        assert assigned(keys, heads) == reference_append(reference, keys)
        assert len(heads) == len(reference)
    for key in [*reference, *TRICKY_KEYS]:
        assert heads.get(key) == reference.get(key, 0)


@settings(max_examples=100, deadline=None, database=None)
@given(st.dictionaries(st.binary(max_size=4), st.integers(1, 10**12), max_size=50), APPENDS)
def test_heads_loaded_from_a_dict_continue_from_it(
    initial: dict[bytes, int], appends: list[list[bytes | None]]
) -> None:
    heads = KeyHeads(initial)
    reference = dict(initial)
    for key, version in initial.items():
        assert heads.get(key) == version
    for keys in appends:
        assert assigned(keys, heads) == reference_append(reference, keys)
    assert len(heads) == len(reference)


@settings(max_examples=100, deadline=None, database=None)
@given(APPENDS, st.data())
def test_unapplied_assignments_leave_no_trace(appends: list[list[bytes | None]], data: st.DataObject) -> None:
    """Refused appends (computed, never applied) must not change later versions."""
    heads = KeyHeads()
    reference: dict[bytes, int] = {}
    for keys in appends:
        if data.draw(st.booleans(), label="refuse"):
            assign_versions(keys_array(keys), heads)
            continue
        assert assigned(keys, heads) == reference_append(reference, keys)
    for key in reference:
        assert heads.get(key) == reference[key]
