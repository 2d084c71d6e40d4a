"""Idempotent producer ids of every kind: ``str``, ``int`` and ``bytes``.

Goal: a bytes producer id dedupes like a str one, in memory, after a clean reopen and
after segment rolls (where the state comes from a producer snapshot plus the frames
after it); a bytes id is never the same producer as a str id, whatever their text
(b"p" and "p", or a bytes id and the text of its stored form); an int id is the same
producer as its decimal text, as it always was; ids that are none of these, empty,
too long, or a str that would collide with the stored form of bytes ids are refused
with InvalidRequest and nothing is written.

Method: an embedded client on a fresh data directory (engine/conftest.py); "nothing
written" is checked with describe_topic; a SequenceError's ``expected`` tells which
producer's state an append met.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import odradek
from odradek import limits
from odradek.errors import InvalidRequest, SequenceError
from odradek.types import AppendResult

SMALL_SEGMENT = "64KiB"  # appends of ~8 KiB roll a segment every few appends


def batch(index: int, size: int = 4) -> list[dict[str, Any]]:
    return [{"key": b"k", "value": f"{index}".encode().ljust(size, b".")}]


@pytest.fixture
def topic(client: odradek.EmbeddedClient) -> str:
    client.create_topic("t")
    return "t"


def test_a_bytes_id_dedupes(client: odradek.EmbeddedClient, topic: str) -> None:
    first = client.append(topic, batch(0), producer=(b"\x00\xffproducer", 0))
    retry = client.append(topic, batch(0), producer=(b"\x00\xffproducer", 0))
    assert retry == AppendResult(first.base_offset, 1, first.versions, duplicate=True)
    with pytest.raises(SequenceError) as caught:
        client.append(topic, batch(5), producer=(b"\x00\xffproducer", 5))
    assert (caught.value.expected, caught.value.actual) == (1, 5)
    assert "b'\\x00\\xffproducer'" in caught.value.message  # named as the caller gave it
    assert client.describe_topic(topic).next_offset == 1


def test_bytes_and_str_ids_never_meet(client: odradek.EmbeddedClient, topic: str) -> None:
    client.append(topic, batch(0), producer=("p", 0))
    client.append(topic, batch(1), producer=("p", 1))
    # b"p" is a producer of its own: its first append may carry any sequence.
    assert not client.append(topic, batch(2), producer=(b"p", 0)).duplicate
    # ... and so is the str that is the bytes id's stored form.
    from odradek.engine.producers import stored_producer_id

    stored = stored_producer_id(b"p")
    assert isinstance(stored, str)
    with pytest.raises(InvalidRequest, match="producer"):
        client.append(topic, batch(3), producer=(stored, 7))
    assert client.describe_topic(topic).next_offset == 3


def test_an_int_id_is_its_decimal_text(client: odradek.EmbeddedClient, topic: str) -> None:
    client.append(topic, batch(0), producer=(42, 0))
    assert client.append(topic, batch(0), producer=("42", 0)).duplicate


@pytest.mark.parametrize(
    "producer_id",
    [
        b"",
        b"x" * (limits.producer_id_length_max + 1),
        bytearray(b"p"),
        True,
        1.5,
        None,
        "\x00leading NUL",
    ],
)
def test_refused_ids(client: odradek.EmbeddedClient, topic: str, producer_id: Any) -> None:
    with pytest.raises(InvalidRequest, match="producer"):
        client.append(topic, batch(0), producer=(producer_id, 0))
    assert client.describe_topic(topic).next_offset == 0


def test_the_longest_bytes_id_is_accepted() -> None:
    from odradek.engine.producers import stored_producer_id, validate_producer

    key = validate_producer((b"\xff" * limits.producer_id_length_max, 0))
    assert key.producer_id == stored_producer_id(b"\xff" * limits.producer_id_length_max)


def test_a_bytes_id_dedupes_after_a_reopen(
    client: odradek.EmbeddedClient, topic: str, reopen: Callable[..., odradek.EmbeddedClient]
) -> None:
    results = [client.append(topic, batch(i), producer=(b"\x01bin", i)) for i in range(3)]
    client = reopen(client)
    retry = client.append(topic, batch(2), producer=(b"\x01bin", 2))
    assert retry == AppendResult(results[2].base_offset, 1, results[2].versions, duplicate=True)
    assert not client.append(topic, batch(3), producer=(b"\x01bin", 3)).duplicate
    assert not client.append(topic, batch(0), producer=("\x01bin", 0)).duplicate  # the str is another


def test_a_bytes_id_dedupes_after_segment_rolls_and_a_reopen(
    client: odradek.EmbeddedClient, reopen: Callable[..., odradek.EmbeddedClient]
) -> None:
    client.create_topic("t", segment_bytes=SMALL_SEGMENT)
    results = [client.append("t", batch(i, size=8192), producer=(b"\xfe\xed", i)) for i in range(30)]
    assert client.describe_topic("t").segments >= 3
    client = reopen(client)
    for sequence in range(30 - limits.producer_results_remembered, 30):
        original = results[sequence]
        retry = client.append("t", batch(0), producer=(b"\xfe\xed", sequence))
        assert retry == AppendResult(original.base_offset, 1, original.versions, duplicate=True)
    with pytest.raises(SequenceError) as caught:
        client.append("t", batch(0), producer=(b"\xfe\xed", 31))
    assert caught.value.expected == 30
