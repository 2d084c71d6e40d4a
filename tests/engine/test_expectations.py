"""Optimistic concurrency: ``expect={key: version}`` and ``expect_offset``.

Goal: an append whose expectations all hold is written; if any fails, nothing of the
append is written (no offsets, no versions, no key heads, no producer sequence) and a
ConflictError names the key with the expected and the actual version (key None and
next offsets for ``expect_offset``). 0 means "the key has no records yet". Several
keys are all-or-nothing. Concurrent compare-and-set loops on one key never both win.

Method: an embedded client; after each refusal the topic is compared with its state
before. The last test runs compare-and-set increments from several threads and checks
that every won version is distinct and contiguous.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

import odradek
from odradek.errors import ConflictError, InvalidRequest
from odradek.types import AppendResult


@pytest.fixture
def topic(client: odradek.EmbeddedClient) -> str:
    client.create_topic("t")
    return "t"


def test_zero_means_no_records_yet(client: odradek.EmbeddedClient, topic: str) -> None:
    assert client.append(topic, [{"key": b"k", "value": b"1"}], expect={b"k": 0}).versions == {b"k": 1}
    with pytest.raises(ConflictError) as caught:
        client.append(topic, [{"key": b"k", "value": b"2"}], expect={b"k": 0})
    error = caught.value
    assert (error.key, error.expected, error.actual) == (b"k", 0, 1)
    assert "version 0" in str(error) and "version 1" in str(error)


def test_the_current_version_passes_and_a_stale_one_fails(client: odradek.EmbeddedClient, topic: str) -> None:
    for version in range(3):
        result = client.append(topic, [{"key": b"k", "value": b"v"}], expect={b"k": version})
        assert result.versions == {b"k": version + 1}
    for stale in (0, 1, 2, 4, 100):
        with pytest.raises(ConflictError) as caught:
            client.append(topic, [{"key": b"k", "value": b"v"}], expect={b"k": stale})
        assert (caught.value.expected, caught.value.actual) == (stale, 3)
    assert client.key_version(topic, b"k") == 3


def test_a_conflict_writes_nothing(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    client.append(topic, [{"key": b"a", "value": b"1"}, {"key": b"b", "value": b"1"}])
    before = read_all(client, topic)
    info = client.describe_topic(topic)
    with pytest.raises(ConflictError):
        client.append(
            topic,
            [{"key": b"a", "value": b"2"}, {"key": b"new", "value": b"2"}, {"value": b"keyless"}],
            expect={b"a": 0},
        )
    assert client.describe_topic(topic) == info
    assert read_all(client, topic).equals(before)
    assert (client.key_version(topic, b"a"), client.key_version(topic, b"new")) == (1, 0)
    assert client.read_key(topic, b"new").num_rows == 0
    # The next append gets the next offset and versions, as if the refusal never happened.
    assert client.append(topic, [{"key": b"new", "value": b"3"}]) == AppendResult(2, 1, {b"new": 1})


def test_several_keys_are_all_or_nothing(client: odradek.EmbeddedClient, topic: str) -> None:
    client.append(
        topic, [{"key": b"a", "value": b""}, {"key": b"b", "value": b""}, {"key": b"b", "value": b""}]
    )
    records = [{"key": k, "value": b"x"} for k in (b"a", b"b", b"c")]
    with pytest.raises(ConflictError) as caught:
        client.append(topic, records, expect={b"a": 1, b"b": 1, b"c": 0})
    assert (caught.value.key, caught.value.expected, caught.value.actual) == (b"b", 1, 2)
    assert [client.key_version(topic, k) for k in (b"a", b"b", b"c")] == [1, 2, 0]
    with pytest.raises(ConflictError) as caught:
        client.append(topic, records, expect={b"a": 1, b"b": 2, b"c": 5})
    assert caught.value.key == b"c"
    result = client.append(topic, records, expect={b"a": 1, b"b": 2, b"c": 0})
    assert result.versions == {b"a": 2, b"b": 3, b"c": 1}


def test_an_expectation_may_name_a_key_the_append_does_not_write(
    client: odradek.EmbeddedClient, topic: str
) -> None:
    client.append(topic, [{"key": b"guard", "value": b""}])
    result = client.append(topic, [{"key": b"data", "value": b""}], expect={b"guard": 1})
    assert result.versions == {b"data": 1}
    with pytest.raises(ConflictError) as caught:
        client.append(topic, [{"value": b"keyless"}], expect={b"guard": 0})
    assert caught.value.key == b"guard"
    assert client.key_version(topic, b"guard") == 1


def test_str_keys_in_expectations(client: odradek.EmbeddedClient, topic: str) -> None:
    client.append(topic, [{"key": "ключ", "value": b""}], expect={"ключ": 0})
    with pytest.raises(ConflictError) as caught:
        client.append(topic, [{"key": "ключ", "value": b""}], expect={"ключ": 0})
    assert caught.value.key == "ключ".encode()
    assert client.append(topic, [{"key": "ключ", "value": b""}], expect={"ключ".encode(): 1}).versions == {
        "ключ".encode(): 2
    }


def test_empty_and_nul_suffixed_keys_have_their_own_versions(
    client: odradek.EmbeddedClient, topic: str
) -> None:
    client.append(topic, [{"key": b"a", "value": b""}, {"key": b"a", "value": b""}])
    client.append(topic, [{"key": b"a\x00", "value": b""}], expect={b"a\x00": 0, b"": 0, b"a": 2})
    with pytest.raises(ConflictError) as caught:
        client.append(topic, [{"key": b"", "value": b""}], expect={b"": 1})
    assert (caught.value.key, caught.value.actual) == (b"", 0)


def test_expect_offset(client: odradek.EmbeddedClient, topic: str) -> None:
    assert client.append(topic, [{"value": b"1"}, {"value": b"2"}], expect_offset=0).base_offset == 0
    for wrong in (0, 1, 3, 1000):
        with pytest.raises(ConflictError) as caught:
            client.append(topic, [{"value": b"x"}], expect_offset=wrong)
        assert (caught.value.key, caught.value.expected, caught.value.actual) == (None, wrong, 2)
    assert client.describe_topic(topic).next_offset == 2
    assert client.append(topic, [{"value": b"3"}], expect_offset=2).base_offset == 2


def test_expect_offset_and_keys_together(client: odradek.EmbeddedClient, topic: str) -> None:
    client.append(topic, [{"key": b"k", "value": b""}])
    with pytest.raises(ConflictError) as caught:
        client.append(topic, [{"key": b"k", "value": b""}], expect={b"k": 1}, expect_offset=5)
    assert caught.value.key is None
    with pytest.raises(ConflictError) as caught:
        client.append(topic, [{"key": b"k", "value": b""}], expect={b"k": 0}, expect_offset=1)
    assert caught.value.key == b"k"
    assert client.append(
        topic, [{"key": b"k", "value": b""}], expect={b"k": 1}, expect_offset=1
    ).versions == {b"k": 2}


def test_a_conflicting_idempotent_append_does_not_use_up_its_sequence(
    client: odradek.EmbeddedClient, topic: str
) -> None:
    client.append(topic, [{"key": b"k", "value": b""}], producer=("p", 0))
    with pytest.raises(ConflictError):
        client.append(topic, [{"key": b"k", "value": b""}], expect={b"k": 0}, producer=("p", 1))
    result = client.append(topic, [{"key": b"k", "value": b""}], expect={b"k": 1}, producer=("p", 1))
    assert (result.base_offset, result.duplicate) == (1, False)


@pytest.mark.parametrize(
    "expect",
    [{b"k": -1}, {b"k": "1"}, {b"k": 1.0}, {b"k": None}, {b"k": True}, {7: 0}, {None: 0}, [(b"k", 0)], "k"],
)
def test_malformed_expectations_are_invalid_requests(
    client: odradek.EmbeddedClient, topic: str, expect: object
) -> None:
    with pytest.raises(InvalidRequest):
        client.append(topic, [{"key": b"k", "value": b""}], expect=expect)  # type: ignore[arg-type]
    assert client.describe_topic(topic).next_offset == 0


@pytest.mark.parametrize("expect_offset", ["0", 0.0, True, [0]])
def test_malformed_expect_offset_is_an_invalid_request(
    client: odradek.EmbeddedClient, topic: str, expect_offset: object
) -> None:
    with pytest.raises(InvalidRequest, match="expect_offset"):
        client.append(topic, [{"value": b""}], expect_offset=expect_offset)  # type: ignore[arg-type]
    assert client.describe_topic(topic).next_offset == 0


def test_expectations_hold_across_reopen(
    client: odradek.EmbeddedClient, topic: str, reopen: Callable[..., odradek.EmbeddedClient]
) -> None:
    client.append(topic, [{"key": b"k", "value": b""}] * 3)
    client = reopen(client)
    with pytest.raises(ConflictError) as caught:
        client.append(topic, [{"key": b"k", "value": b""}], expect={b"k": 2})
    assert caught.value.actual == 3
    assert client.append(
        topic, [{"key": b"k", "value": b""}], expect={b"k": 3}, expect_offset=3
    ).versions == {b"k": 4}


def test_concurrent_compare_and_set_never_double_wins(client: odradek.EmbeddedClient, topic: str) -> None:
    """Each thread loops read-version / append-expecting-it; a version is won once."""
    wins: list[tuple[int, int]] = []  # (thread, version won)
    failures: list[BaseException] = []
    lock = threading.Lock()

    def worker(number: int) -> None:
        try:
            won = 0
            while won < 15:
                current = client.key_version(topic, b"counter")
                try:
                    result = client.append(
                        topic,
                        [{"key": b"counter", "value": str(number).encode()}],
                        expect={b"counter": current},
                    )
                except ConflictError as error:
                    assert error.expected == current and error.actual > current
                    continue
                with lock:
                    wins.append((number, result.versions[b"counter"]))
                assert result.versions[b"counter"] == current + 1
                won += 1
        except BaseException as error:  # noqa: BLE001 - handed to the test thread, which re-raises it
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "compare-and-set workers hung"
    assert failures == []
    assert sorted(v for _, v in wins) == list(range(1, 91))
    table = client.read_key(topic, b"counter")
    assert table.column("version").to_pylist() == list(range(1, 91))
    # Each record's value names the thread that won that version.
    by_version = dict((v, str(n).encode()) for n, v in wins)
    assert table.column("value").to_pylist() == [by_version[v] for v in range(1, 91)]


def test_contradictory_expectations_for_one_key_are_refused(tmp_path: Path) -> None:
    with odradek.open(tmp_path, fsync=False) as client:
        client.create_topic("t")
        with pytest.raises(odradek.InvalidRequest, match="twice"):
            client.append("t", [{"key": "a", "value": "x"}], expect={"a": 0, b"a": 1})
        assert client.append("t", [{"key": "a", "value": "x"}], expect={"a": 0, b"a": 0}).base_offset == 0
