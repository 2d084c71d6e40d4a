"""``cleanup="snapshot"``: a round drops, from sealed segments, exactly the events that
their key's latest snapshot covers, and never one it does not cover.

Method: topics with 64 KiB segments are filled through the embedded client, snapshots
written, rounds run with ``Engine.compact`` (a round is due by itself once a snapshot
or a sealed segment is new); what stays is compared with a model computed in the test
("every event, less the keyed ones in the sealed segments whose version is at most
their key's latest snapshot's"). Hypothesis draws the appends and the snapshots.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import hypothesis.strategies as st
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

import odradek

SEGMENT = "64KiB"
VALUE_BYTES = 200


@pytest.fixture
def client(tmp_path: str) -> Iterator[odradek.EmbeddedClient]:
    c = odradek.open(str(tmp_path), fsync=False)
    yield c
    c.close()


def _append(client: odradek.EmbeddedClient, topic: str, keys: list[bytes | None]) -> None:
    client.append(
        topic,
        [
            {"key": key, "value": f"{index}".encode().ljust(VALUE_BYTES, b".")}
            for index, key in enumerate(keys)
        ],
    )


def _all(client: odradek.EmbeddedClient, topic: str) -> pa.Table:
    return pa.Table.from_batches(list(client.read(topic, wait=0)))


def _model(rows: pa.Table, sealed_end: int, covered: dict[bytes, int]) -> list[int]:
    kept = []
    for offset, key, version in zip(
        rows.column("offset").to_pylist(), rows.column("key").to_pylist(), rows.column("version").to_pylist()
    ):
        if key is not None and offset < sealed_end and version <= covered.get(key, 0):
            continue
        kept.append(offset)
    return kept


def _sealed_end(client: odradek.EmbeddedClient, topic: str) -> int:
    return client.engine._topic(topic).log.active.base_offset


def test_covered_events_go_and_the_others_stay(client: odradek.EmbeddedClient) -> None:
    client.create_topic("acc", cleanup="snapshot", segment_bytes=SEGMENT)
    for _ in range(40):
        _append(client, "acc", [b"a", b"b", None, b"c"] * 5)
    before = _all(client, "acc")
    covered = {b"a": 150, b"b": 10}
    for key, version in covered.items():
        client.snapshot("acc", key, b"state", version=version)
    sealed_end = _sealed_end(client, "acc")
    results = client.engine.compact()  # due by itself: a snapshot is new
    assert results["acc"].records_removed > 0
    after = _all(client, "acc")
    assert after.column("offset").to_pylist() == _model(before, sealed_end, covered)
    # Versions and key_version do not move; a plain read_key starts at the first kept version.
    assert client.key_version("acc", b"a") == 200
    first_kept = client.read_key("acc", b"a").column("version").to_pylist()
    assert first_kept[0] == 151 and first_kept == list(range(151, 201))
    assert client.read_key("acc", b"c").num_rows == 200  # no snapshot: nothing of it goes
    assert after.filter(pa.compute.is_null(after.column("key"))).num_rows == 200  # keyless stay
    table = client.read_key("acc", b"a", from_snapshot=True)
    assert table.column("version").to_pylist() == [150, *range(151, 201)]
    # A round with nothing new does nothing.
    assert "acc" not in client.engine.compact()


def test_events_sealed_after_their_snapshot_go_in_a_later_round(client: odradek.EmbeddedClient) -> None:
    client.create_topic("acc", cleanup="snapshot", segment_bytes=SEGMENT)
    _append(client, "acc", [b"a"] * 10)
    client.snapshot("acc", b"a", b"s", version=10)  # its events are in the active segment
    client.engine.compact()
    assert client.read_key("acc", b"a").num_rows == 10
    for _ in range(30):
        _append(client, "acc", [b"z"] * 20)  # seals the segment holding a's events
    assert _sealed_end(client, "acc") > 10
    client.engine.compact()  # due: a new sealed segment
    assert client.read_key("acc", b"a").num_rows == 0
    assert client.key_version("acc", b"a") == 10
    assert client.read_key("acc", b"a", from_snapshot=True).to_pylist()[0]["version"] == 10


def test_young_events_stay_until_the_compaction_lag_passed(client: odradek.EmbeddedClient) -> None:
    client.create_topic("acc", cleanup="snapshot", segment_bytes=SEGMENT, min_compaction_lag="1h")
    for _ in range(30):
        _append(client, "acc", [b"a"] * 20)
    client.snapshot("acc", b"a", b"s", version=300)
    client.engine.compact(force=True)
    assert client.read_key("acc", b"a").num_rows == 600
    client.engine.compact(now=time.time() + 7200, force=True)
    assert client.read_key("acc", b"a").column("version").to_pylist()[0] == 301


def test_what_a_round_dropped_stays_dropped_after_a_reopen(tmp_path: str) -> None:
    with odradek.open(str(tmp_path)) as client:
        client.create_topic("acc", cleanup="snapshot", segment_bytes=SEGMENT)
        for _ in range(30):
            _append(client, "acc", [b"a", b"b"] * 10)
        client.snapshot("acc", b"a", b"s", version=200)
        client.engine.compact()
        kept = _all(client, "acc").column("offset").to_pylist()
    with odradek.open(str(tmp_path)) as client:
        assert _all(client, "acc").column("offset").to_pylist() == kept
        assert client.read_key("acc", b"a").column("version").to_pylist() == list(range(201, 301))
        assert client.key_version("acc", b"a") == 300
        _append(client, "acc", [b"a"])
        assert client.key_version("acc", b"a") == 301
        assert client.describe_topic("acc").config["cleanup"] == "snapshot"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(
                st.just("append"),
                st.lists(st.sampled_from([b"a", b"b", b"c", None]), min_size=1, max_size=60),
            ),
            st.tuples(st.just("snapshot"), st.tuples(st.sampled_from([b"a", b"b", b"c"]), st.floats(0, 1))),
            st.tuples(st.just("compact"), st.none()),
        ),
        max_size=25,
    )
)
@pytest.mark.parametrize("typed", [False, True], ids=["bytes", "schema"])
def test_a_round_drops_exactly_the_covered_events(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, object]], typed: bool
) -> None:
    """Property: after any appends, snapshots and rounds, and one last round, the topic
    holds every event but the keyed ones of the sealed segments whose version their
    key's latest snapshot covers (so never an event no snapshot covered); on a topic
    without a schema and on one with a schema (whose second version comes with the
    fourth step, so its segments mix frames of both)."""
    with odradek.open(str(tmp_path_factory.mktemp("cleanup")), fsync=False) as client:
        client.create_topic("t", cleanup="snapshot", segment_bytes=SEGMENT, schema=TYPED if typed else None)
        appended: list[pa.Table] = []
        covered: dict[bytes, int] = {}
        for step, (kind, argument) in enumerate(steps):
            if typed and step == 3:
                client.set_schema("t", TYPED_V2)
            if kind == "append":
                assert isinstance(argument, list)
                before = client.describe_topic("t").next_offset
                if typed:
                    pad = "." * VALUE_BYTES
                    client.append(
                        "t", [{"key": key, "value": {"n": i, "pad": pad}} for i, key in enumerate(argument)]
                    )
                else:
                    _append(client, "t", argument)
                fetched = client.engine.fetch("t", before)  # the model needs no values
                appended.append(
                    pa.Table.from_batches([b.select(["offset", "key", "version"]) for b in fetched])
                )
            elif kind == "snapshot":
                assert isinstance(argument, tuple)
                key, share = argument
                current = client.key_version("t", key)
                if current:
                    version = max(covered.get(key, 1), round(share * current) or 1)
                    client.snapshot("t", key, b"s", version=version)
                    covered[key] = version
            else:
                client.engine.compact()
        client.engine.compact(force=True)
        everything = pa.concat_tables(appended) if appended else None
        rows = _all(client, "t") if client.describe_topic("t").next_offset else None
        if everything is None:
            return
        expected = _model(everything, _sealed_end(client, "t"), covered)
        assert (rows.column("offset").to_pylist() if rows is not None else []) == expected


TYPED = {
    "type": "object",
    "properties": {"n": {"type": "integer"}, "pad": {"type": "string"}},
    "required": ["n"],
}
TYPED_V2 = {
    "type": "object",
    "properties": {"n": {"type": "integer"}, "pad": {"type": "string"}, "note": {"type": "string"}},
    "required": ["n"],
}


def test_a_schemad_topic_drops_exactly_the_covered_events(client: odradek.EmbeddedClient) -> None:
    """On a schema'd topic, with frames of two schema versions in its segments, a round
    drops exactly the covered events; the typed values of the others read back as
    appended (the first version's evolved to the second's shape)."""
    client.create_topic("acc", cleanup="snapshot", segment_bytes=SEGMENT, schema=TYPED)
    keys: list[bytes | None] = [b"a", b"b", None, b"c"] * 5
    pad = "." * VALUE_BYTES
    counter = 0
    for round_ in range(40):
        if round_ == 20:
            client.set_schema("acc", TYPED_V2)  # later frames are written under version 2
        client.append(
            "acc", [{"key": key, "value": {"n": counter + i, "pad": pad}} for i, key in enumerate(keys)]
        )
        counter += len(keys)
    before = _all(client, "acc")
    covered = {b"a": 150, b"b": 10}
    for key, version in covered.items():
        client.snapshot("acc", key, b"state", version=version)
    sealed_end = _sealed_end(client, "acc")
    assert sealed_end > 20 * len(keys)  # frames of both versions are sealed
    results = client.engine.compact()
    assert results["acc"].records_removed > 0
    after = _all(client, "acc")
    expected = _model(before, sealed_end, covered)
    assert after.column("offset").to_pylist() == expected
    kept = before.filter(pa.compute.is_in(before.column("offset"), pa.array(expected, pa.int64())))
    assert after.column("value").to_pylist() == kept.column("value").to_pylist()
    assert after.column("value")[0].as_py() == {"n": 2, "pad": pad, "note": None}  # keyless, version 1
    table = client.read_key("acc", b"a", from_snapshot=True)
    assert table.column("version").to_pylist() == [150, *range(151, 201)]
    assert table.column("state").to_pylist() == [b"state"] + [None] * 50
    assert client.read_key("acc", b"c").num_rows == 200
