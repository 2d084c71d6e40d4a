"""The small-append path of ``Topic.submit`` writes what the batch path writes.

Goal: an append of at most ``SMALL_APPEND_RECORDS_MAX`` records, which ``Topic.submit``
handles in plain Python (timestamps, versions, the offset and version columns, key-index
entries, key heads), is indistinguishable from the same append through the vectorised
path: the same frames on disk byte for byte, the same results and refusals (expectations,
``expect_offset``, idempotent producers' retries and sequence errors), the same key
versions and key reads, before and after a reopen (the key index rebuilt from runs the
small path's pending entries were flushed into).

Method: hypothesis draws a sequence of small appends (keys from a few, with null,
empty and NUL-suffixed keys; given and missing timestamps; headers; expectations right
and wrong; offsets expected right and wrong; producer sequences new, retried and out of
order) on a topic with or without a schema. The sequence is run twice on two data
directories, once as is and once with the small path switched off
(``SMALL_APPEND_RECORDS_MAX`` patched to 0, so every append takes the batch path), with
the server's clock fixed so that stamped timestamps agree. Then every outcome, every
segment file's bytes, every key's version and records are compared.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.engine import topic as topic_module
from odradek.engine.engine import Engine
from odradek.engine.versions import SMALL_APPEND_RECORDS_MAX
from odradek.errors import OdradekError

KEYS = [b"a", b"b", b"", b"a\x00", b"order-" + b"7" * 40]
SCHEMA = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "long"}, {"name": "sku", "type": "string"}],
}
NOW = 1_765_000_000_123_456  # the server's clock while the sequence runs (µs)


@st.composite
def records(draw: st.DrawFn, typed: bool) -> list[dict[str, Any]]:
    count = draw(st.integers(1, SMALL_APPEND_RECORDS_MAX))
    result = []
    for _ in range(count):
        record: dict[str, Any] = {}
        key = draw(st.sampled_from([None, *KEYS]))
        if key is not None:
            record["key"] = key
        if typed:
            record["value"] = {"id": draw(st.integers(-5, 5)), "sku": draw(st.sampled_from(["x", "yz"]))}
        else:
            record["value"] = draw(st.binary(max_size=24))
        if draw(st.booleans()):
            record["timestamp"] = draw(st.integers(0, NOW * 2))
        if draw(st.integers(0, 3)) == 0:
            record["headers"] = {"h": draw(st.binary(max_size=4))}
        result.append(record)
    return result


@st.composite
def appends(draw: st.DrawFn, typed: bool) -> dict[str, Any]:
    """One append: records and options, some of them guesses that may be refused."""
    append: dict[str, Any] = {"records": draw(records(typed))}
    if draw(st.integers(0, 2)) == 0:
        append["expect"] = {draw(st.sampled_from(KEYS)): draw(st.integers(0, 3))}
    if draw(st.integers(0, 3)) == 0:
        append["expect_offset"] = draw(st.integers(0, 12))
    if draw(st.integers(0, 2)) == 0:
        append["producer"] = ("p", draw(st.integers(0, 4)))
    return append


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[bool, list[dict[str, Any]]]:
    typed = draw(st.booleans())
    return typed, draw(st.lists(appends(typed), min_size=1, max_size=12))


@contextmanager
def path(small: bool) -> Iterator[list[int]]:
    """The server's clock fixed at NOW; with ``small=False`` every append takes the
    batch path. Yields a list that counts the appends assigned by the small path."""
    saved = topic_module.SMALL_APPEND_RECORDS_MAX, topic_module.now_micros, topic_module.assign_few
    taken: list[int] = []

    def counted(*args: Any) -> Any:
        taken.append(1)
        return saved[2](*args)

    topic_module.now_micros = lambda: NOW
    topic_module.assign_few = counted
    if not small:
        topic_module.SMALL_APPEND_RECORDS_MAX = 0
    try:
        yield taken
    finally:
        topic_module.SMALL_APPEND_RECORDS_MAX, topic_module.now_micros, topic_module.assign_few = saved


def run(directory: str, typed: bool, sequence: list[dict[str, Any]], small: bool) -> dict[str, Any]:
    """Every outcome, the segment files and the keys' state after running ``sequence``."""
    outcomes: list[Any] = []
    with path(small) as taken:
        with Engine(directory, fsync=False) as engine:
            engine.create_topic("t", schema=SCHEMA if typed else None)
            for append in sequence:
                options = {name: value for name, value in append.items() if name != "records"}
                try:
                    result = engine.append("t", append["records"], **options)
                except OdradekError as exc:
                    outcomes.append((type(exc).__name__, str(exc)))
                else:
                    outcomes.append(
                        (result.base_offset, result.count, dict(result.versions), result.duplicate)
                    )
            before = keys_state(engine)
            topic_directory = engine._topic("t").directory
            segments = {
                name: read_bytes(os.path.join(topic_directory, name))
                for name in sorted(os.listdir(topic_directory))
                if name.endswith(".log")
            }
        with Engine(directory, fsync=False) as engine:
            after = keys_state(engine)
    return {
        "outcomes": outcomes,
        "segments": segments,
        "keys": before,
        "keys reopened": after,
        "small appends": len(taken),
    }


def keys_state(engine: Engine) -> dict[bytes, tuple[int, pa.Table]]:
    return {key: (engine.key_version("t", key), engine.read_key("t", key)) for key in KEYS}


def read_bytes(file: str) -> bytes:
    with open(file, "rb") as handle:
        return handle.read()


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_small_appends_write_what_the_batch_path_writes(scenario: tuple[bool, list[dict[str, Any]]]) -> None:
    typed, sequence = scenario
    with tempfile.TemporaryDirectory() as root:
        small = run(os.path.join(root, "small"), typed, sequence, small=True)
        batch = run(os.path.join(root, "batch"), typed, sequence, small=False)
    assert small["outcomes"] == batch["outcomes"]
    assert small["segments"] == batch["segments"]
    assert small["keys"] == batch["keys"]
    assert small["keys reopened"] == batch["keys reopened"]
    assert small["keys reopened"] == small["keys"]
    # Each append written anew went through the path its run was meant to test.
    written = sum(1 for outcome in small["outcomes"] if isinstance(outcome[0], int) and not outcome[3])
    assert small["small appends"] >= written
    assert batch["small appends"] == 0
