"""Topic administration: create, delete, list (with a pattern), describe.

Goal: topics are created with validated names and a config, listed (optionally by
pattern), described with accurate counts (records, bytes, first and next offset,
distinct keys, segments, config), deleted completely, and all of it survives a clean
reopen. Every refusal (bad or reserved name, duplicate, unknown topic, closed engine,
directory in use) is a typed error, changes nothing, and the engine keeps working.

Method: an embedded client on a temporary directory, checked through the public API;
the data directory is inspected only to verify that a deleted topic leaves no files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

import odradek
from odradek import limits
from odradek.errors import ClosedError, InvalidRequest, StorageError, TopicExists, TopicNotFound


def test_create_describe_and_list(client: odradek.EmbeddedClient) -> None:
    info = client.create_topic("orders.eu.created")
    assert info.name == "orders.eu.created"
    assert (info.first_offset, info.next_offset, info.records, info.keys) == (0, 0, 0, 0)
    assert info.segments == 1
    assert client.list_topics() == ["orders.eu.created"]
    assert client.describe_topic("orders.eu.created") == info


def test_describe_counts_records_bytes_offsets_and_keys(client: odradek.EmbeddedClient) -> None:
    client.create_topic("t")
    empty = client.describe_topic("t")
    client.append("t", [{"key": b"a", "value": b"1"}, {"key": b"b", "value": b"2"}, {"value": b"3"}])
    client.append("t", [{"key": b"a", "value": b"4"}, {"key": b"", "value": b"5"}])
    info = client.describe_topic("t")
    assert (info.first_offset, info.next_offset, info.records) == (0, 5, 5)
    assert info.keys == 3  # a, b and the empty key; keyless records have no key
    assert info.bytes > empty.bytes
    grown = client.append("t", [{"value": b"x" * 10_000}])
    assert client.describe_topic("t").bytes >= info.bytes + 10_000
    assert client.describe_topic("t").next_offset == grown.next_offset == 6


def test_created_at_is_kept(
    client: odradek.EmbeddedClient, reopen: Callable[..., odradek.EmbeddedClient]
) -> None:
    created = client.create_topic("t").created_at
    assert created > 0
    client = reopen(client)
    assert client.describe_topic("t").created_at == created


def test_each_topic_has_an_incarnation_kept_across_reopens_and_new_when_recreated(
    client: odradek.EmbeddedClient, reopen: Callable[..., odradek.EmbeddedClient]
) -> None:
    first = client.create_topic("t").incarnation
    assert len(first) == 32 and int(first, 16) >= 0
    assert client.create_topic("u").incarnation != first
    client = reopen(client)
    assert client.describe_topic("t").incarnation == first
    client.delete_topic("t")
    assert client.create_topic("t").incarnation not in (first, "")


def test_a_topic_saved_without_an_incarnation_gets_the_legacy_one(
    client: odradek.EmbeddedClient, reopen: Callable[..., odradek.EmbeddedClient]
) -> None:
    """Topics of earlier versions have only created_at: their incarnation is derived from
    it, the same at every open, and equal to the Kafka topic id they had."""
    import uuid

    from odradek.engine.topicfiles import legacy_incarnation, meta_document, save_topic_meta
    from odradek.storage.disk import LOCAL

    info = client.create_topic("t")
    directory = os.path.join(client.engine.path, "topics", "t")
    client.close()
    meta = meta_document(LOCAL, directory).load()
    assert meta is not None
    del meta["incarnation"]
    save_topic_meta(LOCAL, directory, meta)
    client = reopen(client)
    legacy = client.describe_topic("t").incarnation
    assert legacy == legacy_incarnation("t", info.created_at) != info.incarnation
    namespace = uuid.UUID("5b4f6c1e-9a43-4d0e-8f65-0d7a6b3e2c11")  # the Kafka door's of the time
    assert uuid.UUID(hex=legacy) == uuid.uuid5(namespace, f"t\x00{info.created_at!r}")
    client = reopen(client)
    assert client.describe_topic("t").incarnation == legacy


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (None, ["a", "orders.eu.cancelled", "orders.eu.created", "orders.us.created", "ordersx.eu"]),
        ("orders.*.created", ["orders.eu.created", "orders.us.created"]),
        ("orders.>", ["orders.eu.cancelled", "orders.eu.created", "orders.us.created"]),
        ("orders.eu.*", ["orders.eu.cancelled", "orders.eu.created"]),
        ("*", ["a"]),
        (">", ["a", "orders.eu.cancelled", "orders.eu.created", "orders.us.created", "ordersx.eu"]),
        ("a", ["a"]),
        ("nothing.>", []),
    ],
)
def test_list_topics_with_a_pattern(
    client: odradek.EmbeddedClient, pattern: str | None, expected: list[str]
) -> None:
    for name in ["orders.eu.created", "orders.us.created", "orders.eu.cancelled", "ordersx.eu", "a"]:
        client.create_topic(name)
    assert client.list_topics(pattern) == expected


@pytest.mark.parametrize("pattern", ["", "a.>.b", "a..b", "a*", 7, ["a"], b"a"])
def test_list_topics_refuses_a_bad_pattern(client: odradek.EmbeddedClient, pattern: Any) -> None:
    client.create_topic("a")
    with pytest.raises(InvalidRequest, match="pattern"):
        client.list_topics(pattern)


@pytest.mark.parametrize(
    "name", ["", "a..b", "a b", "orders/eu", "a.*", "x" * (limits.topic_name_length_max + 1)]
)
def test_bad_names_are_refused_with_what_is_allowed(client: odradek.EmbeddedClient, name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        client.create_topic(name)
    assert "letters, digits" in str(caught.value)
    assert client.list_topics() == []
    client.create_topic("fine")  # the engine keeps working


@pytest.mark.parametrize("name", ["_system", "_", "__consumer_offsets"])
def test_reserved_names_are_refused(client: odradek.EmbeddedClient, name: str) -> None:
    with pytest.raises(InvalidRequest, match="reserved"):
        client.create_topic(name)
    assert client.list_topics() == []


def test_the_longest_name_works_end_to_end(
    client: odradek.EmbeddedClient, reopen: Callable[..., odradek.EmbeddedClient]
) -> None:
    name = "n" * limits.topic_name_length_max
    client.create_topic(name)
    client.append(name, [{"key": b"k", "value": b"v"}])
    client = reopen(client)
    assert client.list_topics() == [name]
    assert client.describe_topic(name).next_offset == 1


def test_duplicate_topic_is_refused(client: odradek.EmbeddedClient) -> None:
    client.create_topic("t", retention="1d")
    client.append("t", [{"value": b"keep me"}])
    with pytest.raises(TopicExists) as caught:
        client.create_topic("t", retention="2d")
    assert caught.value.topic == "t"
    info = client.describe_topic("t")
    assert info.next_offset == 1
    assert info.config["retention_seconds"] == 86400.0


def test_exist_ok_returns_the_existing_topic(client: odradek.EmbeddedClient) -> None:
    client.create_topic("t", retention="1d")
    client.append("t", [{"value": b"x"}])
    info = client.create_topic("t", retention="9d", exist_ok=True)
    assert info.next_offset == 1
    assert info.config["retention_seconds"] == 86400.0


def test_delete_topic_removes_it_and_its_files(client: odradek.EmbeddedClient, data_dir: str) -> None:
    client.create_topic("t")
    client.create_topic("other")
    client.append("t", [{"key": b"k", "value": b"v"}] * 10)
    client.delete_topic("t")
    assert client.list_topics() == ["other"]
    assert not os.path.exists(os.path.join(data_dir, "topics", "t"))
    for call in (
        lambda: client.describe_topic("t"),
        lambda: client.append("t", [{"value": b"v"}]),
        lambda: client.read("t", wait=0),
        lambda: client.key_version("t", b"k"),
        lambda: client.read_key("t", b"k"),
        lambda: client.delete_topic("t"),
    ):
        with pytest.raises(TopicNotFound) as caught:
            call()
        assert caught.value.topic == "t"


def test_a_recreated_topic_starts_empty(client: odradek.EmbeddedClient) -> None:
    client.create_topic("t")
    client.append("t", [{"key": b"k", "value": b"old"}] * 3)
    client.delete_topic("t")
    client.create_topic("t")
    info = client.describe_topic("t")
    assert (info.next_offset, info.keys) == (0, 0)
    assert client.key_version("t", b"k") == 0
    result = client.append("t", [{"key": b"k", "value": b"new"}])
    assert (result.base_offset, result.versions) == (0, {b"k": 1})


def test_unknown_topics_are_topic_not_found(client: odradek.EmbeddedClient) -> None:
    with pytest.raises(TopicNotFound, match="nope"):
        client.describe_topic("nope")
    with pytest.raises(TopicNotFound):
        client.delete_topic("nope")
    with pytest.raises(TopicNotFound):
        client.append("nope", [{"value": b"v"}])
    with pytest.raises(InvalidRequest):
        client.describe_topic("not a name")


def test_topics_and_data_survive_reopen(
    client: odradek.EmbeddedClient, reopen: Callable[..., odradek.EmbeddedClient]
) -> None:
    client.create_topic("a.b")
    client.create_topic("c")
    client.append("a.b", [{"key": b"k", "value": b"1"}, {"key": b"k", "value": b"2"}])
    client.delete_topic("c")
    before = client.describe_topic("a.b")
    client = reopen(client)
    assert client.list_topics() == ["a.b"]
    assert client.describe_topic("a.b") == before
    assert client.key_version("a.b", b"k") == 2


def test_a_closed_client_refuses_everything(client: odradek.EmbeddedClient) -> None:
    client.create_topic("t")
    client.close()
    client.close()  # closing twice is harmless
    for call in (
        lambda: client.create_topic("u"),
        lambda: client.list_topics(),
        lambda: client.describe_topic("t"),
        lambda: client.append("t", [{"value": b"v"}]),
        lambda: client.read("t", wait=0),
        lambda: client.delete_topic("t"),
    ):
        with pytest.raises(ClosedError):
            call()


def test_a_data_directory_has_one_owner(open_client: Callable[..., odradek.EmbeddedClient]) -> None:
    first = open_client()
    first.create_topic("t")
    with pytest.raises(StorageError, match="in use"):
        open_client()
    first.close()
    second = open_client()
    assert second.list_topics() == ["t"]


def test_a_file_is_not_a_data_directory(data_dir: str) -> None:
    os.makedirs(os.path.dirname(data_dir), exist_ok=True)
    with open(data_dir, "w") as handle:
        handle.write("not a directory")
    with pytest.raises(StorageError, match="data directory"):
        odradek.open(data_dir)


@pytest.mark.parametrize(
    "options",
    [
        {"append_bytes_max": "64MiB"},
        {"append_bytes_max": 0},
        {"append_bytes_max": 1.5},
        {"append_bytes_max": True},
        {"retention_check_seconds": 0},
        {"retention_check_seconds": -1},
        {"retention_check_seconds": float("nan")},
        {"retention_check_seconds": "60"},
    ],
)
def test_bad_engine_options_are_refused_at_open(
    open_client: Callable[..., odradek.EmbeddedClient], options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequest):
        open_client(**options)
    # Nothing was left locked: the directory opens with good options.
    assert open_client().list_topics() == []
