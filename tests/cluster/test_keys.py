"""The cluster's etcd key layout and value encodings (cluster/keys.py), without etcd.

Goal: every key Odradek builds parses back to the name it was built from, stays under
its cluster's prefix and within ``cluster_key_bytes_max``; every value decodes to the
record it encodes; bad names and oversized values are refused with InvalidRequest or
RequestTooLarge before anything reaches etcd; damaged values read back are DataDamaged.
Method: hypothesis generates names and records within the rules; fixed cases cover the
refusals.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from odradek import limits
from odradek.cluster.keys import (
    HOME_CELL,
    AgentRecord,
    Layout,
    OwnerRecord,
    PlacementRecord,
    TopicRecord,
    cell_index,
    cell_names,
    cell_store_prefix,
    prefix_end,
    validate_cell,
)
from odradek.errors import DataDamaged, InvalidRequest, RequestTooLarge

SEGMENT = st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)
TOPICS = (
    st.lists(SEGMENT, min_size=1, max_size=8)
    .map(".".join)
    .filter(lambda name: len(name) <= limits.topic_name_length_max)
)
CLUSTERS = st.from_regex(r"[A-Za-z0-9_-]{1,63}", fullmatch=True)
AGENT_IDS = st.from_regex(r"[A-Za-z0-9_.:@-]{1,80}", fullmatch=True)
ADDRESSES = st.builds(
    lambda host, port: f"{host}:{port}",
    st.from_regex(r"[a-z0-9.-]{1,60}", fullmatch=True),
    st.integers(1, 65535),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(CLUSTERS, TOPICS, AGENT_IDS)
def test_keys_parse_back_and_stay_under_the_prefix(cluster: str, topic: str, agent_id: str) -> None:
    layout = Layout(cluster)
    for key, parse in (
        (layout.owner(topic), layout.topic_of_owner),
        (layout.topic(topic), layout.topic_of_catalog),
        (layout.placement(topic), layout.topic_of_placement),
        (layout.agent(agent_id), layout.agent_of),
    ):
        assert key.startswith(layout.prefix)
        assert len(key) <= limits.cluster_key_bytes_max
        assert key < prefix_end(layout.prefix)
        assert parse(key) in (topic, agent_id)
    assert layout.topic_of_owner(layout.owner(topic)) == topic
    assert layout.agent_of(layout.agent(agent_id)) == agent_id


@given(CLUSTERS, CLUSTERS)
def test_no_cluster_sees_another_clusters_keys(first: str, second: str) -> None:
    a, b = Layout(first), Layout(second)
    if first != second:
        # a prefix range of one cluster never contains a key of the other
        inside = a.prefix <= b.owner("t") < prefix_end(a.prefix)
        assert not inside


@given(st.binary(min_size=1, max_size=12))
def test_prefix_end_bounds_exactly_the_keys_with_the_prefix(prefix: bytes) -> None:
    end = prefix_end(prefix)
    assert prefix < end or end == b"\0"
    assert prefix + b"\xff" * 3 < end or end == b"\0"


@given(AGENT_IDS, ADDRESSES, st.floats(0, 2e9, allow_nan=False), st.integers(0, 2**63 - 1), st.booleans())
def test_agent_records_round_trip(
    agent_id: str, address: str, started_at: float, lease: int, tls: bool
) -> None:
    record = AgentRecord(agent_id, address, started_at, lease, tls=tls)
    assert AgentRecord.decode(record.encode(), lease) == record


def test_an_agent_record_without_tls_reads_as_plain_and_a_bad_flag_is_refused() -> None:
    plain = AgentRecord("a", "h:1", 0.0)
    assert b"tls" not in plain.encode()  # what agents without the flag wrote reads the same
    assert not AgentRecord.decode(plain.encode()).tls
    with pytest.raises(InvalidRequest):
        AgentRecord("a", "h:1", 0.0, tls="yes")  # type: ignore[arg-type]


@given(TOPICS, AGENT_IDS, st.integers(0, 2**63 - 1), st.integers(1, 2**63 - 1))
def test_owner_records_round_trip(topic: str, agent_id: str, lease: int, epoch: int) -> None:
    record = OwnerRecord(topic, agent_id, lease, epoch)
    assert OwnerRecord.decode(topic, record.encode(), epoch) == record


@given(TOPICS, st.dictionaries(st.text(max_size=16), JSON_VALUES, max_size=8), st.integers(1, 2**53))
def test_topic_records_round_trip(topic: str, config: dict[str, object], incarnation: int) -> None:
    record = TopicRecord(topic, config, incarnation)
    assert TopicRecord.decode(topic, record.encode()) == record


@pytest.mark.parametrize("cluster", ["", "a/b", "a.b", "x" * 64, "é"])
def test_bad_cluster_names_are_refused(cluster: str) -> None:
    with pytest.raises(InvalidRequest):
        Layout(cluster)


@pytest.mark.parametrize("agent_id", ["", "a/b", "a b", "x" * 254])
def test_bad_agent_ids_are_refused(agent_id: str) -> None:
    with pytest.raises(InvalidRequest):
        Layout().agent(agent_id)


@pytest.mark.parametrize("topic", ["", "a/b", "a..b", "x" * 250])
def test_bad_topic_names_are_refused(topic: str) -> None:
    with pytest.raises(InvalidRequest):
        Layout().owner(topic)


@pytest.mark.parametrize("address", ["host", "host:0", "host:65536", "ho st:1", ":80x"])
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(InvalidRequest):
        AgentRecord("a", address, 0.0)


def test_oversized_values_are_refused_before_etcd() -> None:
    config = {"blob": "x" * limits.cluster_value_bytes_max}
    with pytest.raises(RequestTooLarge):
        TopicRecord("t", config).encode()


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"v": 2, "agent": "a", "lease": 1}',
        b'{"v": 1, "agent": "a"}',
        b'{"v": 1, "agent": "a/b", "lease": 1}',
        b'{"v": 1, "agent": "a", "lease": -1}',
        b"\xff\xfe",
    ],
)
def test_damaged_values_are_data_damaged(data: bytes) -> None:
    with pytest.raises(DataDamaged):
        OwnerRecord.decode("t", data, 5)


def test_keys_of_other_prefixes_are_data_damaged() -> None:
    layout = Layout("one")
    with pytest.raises(DataDamaged):
        layout.topic_of_owner(Layout("two").owner("t"))
    with pytest.raises(DataDamaged):
        layout.topic_of_owner(layout.owners_prefix)
    with pytest.raises(DataDamaged):
        layout.topic_of_owner(layout.owners_prefix + b"bad/name")


def test_values_are_compact_json_with_a_format_number() -> None:
    body = json.loads(OwnerRecord("t", "a", 7, 9).encode())
    assert body == {"v": 1, "agent": "a", "lease": 7}  # the epoch is the key's revision, not in the value


# --- cells and placements --------------------------------------------------------------

CELLS = st.integers(0, limits.cluster_cells_max - 1).map(lambda index: cell_names(index + 1)[index])


def test_cell_names_count_from_the_home_cell() -> None:
    assert cell_names(1) == (HOME_CELL,) == ("_cell",)
    assert cell_names(3) == ("_cell", "_cell.1", "_cell.2")
    every = cell_names(limits.cluster_cells_max)
    assert (
        len(set(every)) == limits.cluster_cells_max and every[-1] == f"_cell.{limits.cluster_cells_max - 1}"
    )
    assert [cell_index(cell) for cell in every] == list(range(limits.cluster_cells_max))
    assert [cell_store_prefix(cell) for cell in every[:3]] == ["", "cells/1/", "cells/2/"]


@pytest.mark.parametrize("count", [0, -1, limits.cluster_cells_max + 1, True, 1.0, "2"])
def test_bad_cell_counts_are_refused(count: object) -> None:
    with pytest.raises(InvalidRequest):
        cell_names(count)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "cell",
    [
        "",
        "cell",
        "_cell.",
        "_cell.0",
        "_cell.01",
        "_cell.-1",
        "_cell.1.2",
        "_cell.64",
        "_cell.x",
        "_Cell",
        1,
        None,
    ],
)
def test_bad_cell_names_are_refused(cell: object) -> None:
    with pytest.raises(InvalidRequest):
        validate_cell(cell)
    with pytest.raises(InvalidRequest):
        PlacementRecord("t", cell)  # type: ignore[arg-type]


@given(CLUSTERS, TOPICS, CELLS, st.integers(0, 2**63 - 1))
def test_placement_records_round_trip(cluster: str, topic: str, cell: str, revision: int) -> None:
    record = PlacementRecord(topic, cell, revision)
    decoded = PlacementRecord.decode(topic, record.encode(), revision)
    assert (decoded.topic, decoded.cell, decoded.revision) == (topic, cell, revision)
    layout = Layout(cluster)
    key = layout.placement(topic)
    # under the placements' prefix, never under the topic catalog's
    assert key.startswith(layout.placements_prefix) and not key.startswith(layout.topics_prefix)
    assert not layout.topic(topic).startswith(layout.placements_prefix)


def test_a_placement_is_canonical_json_and_its_revision_is_no_part_of_it() -> None:
    assert PlacementRecord("t", "_cell.12", 7).encode() == b'{"cell":"_cell.12","v":1}'
    assert PlacementRecord("t", "_cell", 7) == PlacementRecord("t", "_cell", 9)
    assert PlacementRecord("t", "_cell") != PlacementRecord("t", "_cell.1")
    with pytest.raises(InvalidRequest):
        PlacementRecord("t", "_cell", -1)


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"v": 2, "cell": "_cell"}',
        b'{"v": 1}',
        b'{"v": 1, "cell": "_cell.64"}',
        b'{"v": 1, "cell": 3}',
        b'{"v": 1, "cell": "cells/1/"}',
        b"\xff\xfe",
    ],
)
def test_damaged_placements_are_data_damaged(data: bytes) -> None:
    with pytest.raises(DataDamaged):
        PlacementRecord.decode("t", data)


def test_placement_keys_of_other_prefixes_are_data_damaged() -> None:
    layout = Layout("one")
    for key in (layout.topic("t"), layout.placements_prefix, layout.placements_prefix + b"a..b"):
        with pytest.raises(DataDamaged):
            layout.topic_of_placement(key)
    with pytest.raises(InvalidRequest):
        layout.placement("a/b")
