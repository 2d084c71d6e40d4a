"""The append stream's messages, without IO.

Goal: what an append stream carries (the command that opens it, the server's greeting,
tagged requests and tagged answers, results and refusals) round-trips exactly, and
anything malformed is refused with InvalidRequest, never a KeyError or ValueError; a
request whose id is readable but whose options are not comes back as a refusal for
that id alone. Method: encode and decode plain bytes with
``odradek.protocols.flight.messages``.
"""

from __future__ import annotations

import pytest

from odradek import limits
from odradek.errors import ConflictError, InvalidRequest, OdradekError, SchemaViolation
from odradek.protocols.flight import messages
from odradek.types import AppendResult


def test_the_command_opens_an_append_stream_with_a_window() -> None:
    command = messages.encode_append_stream_command(32)
    assert messages.is_append_stream(command)
    assert messages.decode_append_stream_command(command) == 32
    assert messages.decode_append_stream_command(b'{"kind": "append"}') == limits.append_stream_window_default
    for other in (b'{"kind": "subscribe"}', b"not json", b"[1]", b'"append"'):
        assert not messages.is_append_stream(other)
    for window in (0, limits.append_stream_window_max + 1):
        with pytest.raises(InvalidRequest, match="window"):
            messages.decode_append_stream_command(messages.encode_append_stream_command(window))


def test_the_greeting_carries_the_servers_window() -> None:
    assert messages.decode_append_stream_ready(messages.encode_append_stream_ready(64)) == 64
    for bad in (
        b'{"kind": "subscribe", "window": 4}',
        b'{"kind": "append"}',
        b'{"kind": "append", "window": 0}',
    ):
        with pytest.raises(InvalidRequest):
            messages.decode_append_stream_ready(bad)


def test_a_request_round_trips_with_its_options() -> None:
    raw = messages.encode_append_request(41, "orders", expect={b"k": 2}, expect_offset=9, producer=("p", 3))
    request = messages.decode_append_request(raw)
    assert (request.request_id, request.topic, request.refused) == (41, "orders", None)
    assert request.options == messages.AppendOptions({b"k": 2}, 9, ("p", 3))
    plain = messages.decode_append_request(messages.encode_append_request(0, "t"))
    assert plain.options.empty and plain.topic == "t"


def test_a_request_with_a_readable_id_but_bad_options_is_refused_alone() -> None:
    for raw in (
        b'{"id": 3}',
        b'{"id": 3, "topic": 5}',
        b'{"id": 3, "topic": "t", "expect": {"zz": 1}}',
        b'{"id": 3, "topic": "t", "producer": [1, 2, 3]}',
    ):
        request = messages.decode_append_request(raw)
        assert request.request_id == 3 and isinstance(request.refused, InvalidRequest), raw


def test_a_request_without_a_readable_id_cannot_be_answered() -> None:
    for raw in (b'{"topic": "t"}', b'{"id": "3", "topic": "t"}', b'{"id": true}', b"{", b"[]", b""):
        with pytest.raises(InvalidRequest):
            messages.decode_append_request(raw)


def test_a_request_names_its_topic() -> None:
    with pytest.raises(InvalidRequest):
        messages.tag_append_request(1, b"{}")
    with pytest.raises(InvalidRequest, match="producer"):
        messages.encode_append_request(1, "t", producer="not a pair")


def test_answers_round_trip_results_and_refusals_with_their_ids() -> None:
    result = AppendResult(10, 2, {b"a": 1, b"b": 4})
    request_id, answer = messages.decode_append_answer(messages.encode_append_result(result, 7))
    assert request_id == 7 and answer == result
    many = AppendResult(0, 100, {bytes([i]): i + 1 for i in range(100)})  # versions as Arrow IPC
    request_id, answer = messages.decode_append_answer(messages.encode_append_result(many, 8))
    assert (
        request_id == 8 and isinstance(answer, AppendResult) and dict(answer.versions) == dict(many.versions)
    )
    conflict = ConflictError("expected key 'a' at version 0, it is at version 1", b"a", 0, 1)
    request_id, refusal = messages.decode_append_answer(messages.encode_append_refusal(9, conflict))
    assert request_id == 9 and isinstance(refusal, ConflictError)
    assert (refusal.key, refusal.expected, refusal.actual) == (b"a", 0, 1)
    violation = SchemaViolation("record 0: field `id` must be an integer", 0, "id")
    _, refusal = messages.decode_append_answer(messages.encode_append_refusal(1, violation))
    assert isinstance(refusal, SchemaViolation) and (refusal.index, refusal.path) == (0, "id")
    # A DoPut result is the same line without the id.
    assert messages.decode_append_result(messages.encode_append_result(result)) == result


def test_a_malformed_answer_is_refused() -> None:
    for raw in (b'{"base_offset": 0, "count": 1}', b'{"id": 1, "error": "boom"}', b'{"id": 1}', b"x"):
        with pytest.raises(InvalidRequest):
            messages.decode_append_answer(raw)
    _, unknown = messages.decode_append_answer(b'{"id": 1, "error": {"code": "conflict", "message": "m"}}')
    assert isinstance(unknown, OdradekError) and unknown.message == "m"
