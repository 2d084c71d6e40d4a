"""The Flight wire encoding, without sockets.

Goal: every message the door exchanges round-trips exactly, and every malformed
message is refused with InvalidRequest (or RequestTooLarge), never another exception.
Method: encode/decode pairs on plain bytes; a table of garbage inputs for each decoder.
"""

from __future__ import annotations

import datetime
import json

import pyarrow as pa
import pytest

from odradek import limits
from odradek.errors import ConflictError, InvalidRequest, OdradekError, RequestTooLarge, SequenceError
from odradek.protocols.flight import messages
from odradek.types import AppendResult, TopicInfo


def test_append_options_round_trip() -> None:
    raw = messages.encode_append_options({b"\x00\xff": 0, "text": 3}, 7, ("p", 2), topic="t")
    topic, options = messages.decode_append_options(raw)
    assert topic == "t"
    assert options == messages.AppendOptions({b"\x00\xff": 0, b"text": 3}, 7, ("p", 2))
    assert messages.decode_append_options(b"") == (None, messages.AppendOptions())
    assert messages.AppendOptions().empty


def test_put_commands_name_the_topic_and_may_bound_the_window() -> None:
    raw = messages.encode_append_options(expect_offset=3, topic="t", window=1)
    command = messages.decode_put_command(raw)
    assert command == messages.PutCommand("t", messages.AppendOptions(expect_offset=3), 1)
    assert messages.decode_put_command(b'{"topic": "t"}').window == limits.append_window_default
    for raw in (b"{}", b'{"topic": "t", "window": 0}', b'{"topic": "t", "window": true}'):
        with pytest.raises(InvalidRequest):
            messages.decode_put_command(raw)
    with pytest.raises(InvalidRequest):
        messages.decode_put_command(b'{"topic": "t", "window": %d}' % (limits.append_window_max + 1))


def test_append_options_accept_base64_keys() -> None:
    raw = json.dumps({"expect": {"AP8=": 1}, "key_encoding": "base64"}).encode()
    assert messages.decode_append_options(raw)[1].expect == {b"\x00\xff": 1}


def test_append_result_round_trip() -> None:
    result = AppendResult(10, 3, {b"a": 1, b"\x00": 7}, duplicate=True)
    assert messages.decode_append_result(messages.encode_append_result(result)) == result
    empty = AppendResult(0, 1, {})
    assert messages.decode_append_result(messages.encode_append_result(empty)) == empty
    assert b"\n" not in messages.encode_append_result(result)  # few keys travel inside the JSON
    many = {b"k%d" % i: i + 1 for i in range(limits.flight_result_inline_keys_max + 1)}
    raw = messages.encode_append_result(AppendResult(0, len(many), many))
    assert raw.split(b"\n", 1)[0].endswith(b'"versions":"arrow"}')
    assert dict(messages.decode_append_result(raw).versions) == many


@pytest.mark.parametrize(
    "raw",
    [
        b'{"base_offset":0,"count":1,"versions":"csv"}',
        b'{"base_offset":0,"count":1,"versions":{"zz":1}}',
        b'{"base_offset":0,"count":1,"versions":{"6b":"1"}}',
        b'{"base_offset":0,"count":1,"versions":"arrow"}',
        b'{"base_offset":0,"count":1,"versions":"arrow"}\nnot arrow',
    ],
)
def test_malformed_append_results_are_invalid_requests(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        messages.decode_append_result(raw)


def test_tickets_round_trip() -> None:
    moment = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    requests: list[messages.Ticket] = [
        messages.ReadRequest("orders.>", messages.encode_start(moment), 2.5, True, 10, 1000),
        messages.ReadRequest("t", 5),
        messages.ReadRequest(
            "orders.*", cell="_cell.1", starts={"orders.a": (7, "inc"), "orders.b": (0, "x")}
        ),
        messages.FetchRequest("t", 3, 10, 100),
        messages.ReadKeyRequest("t", b"\x01key", 2, 9),
        messages.ReadKeyRequest("t", b"k"),
    ]
    for request in requests:
        assert messages.decode_ticket(messages.encode_ticket(request)) == request


def test_a_ticket_without_kind_is_a_read() -> None:
    assert messages.decode_ticket(b'{"pattern": "t"}') == messages.ReadRequest("t")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe garbage",
        b"[1, 2]",
        b'{"kind": "delete_everything"}',
        b'{"kind": "read"}',
        b'{"kind": "read", "pattern": 5}',
        b'{"kind": "read", "pattern": "t", "start": true}',
        b'{"kind": "read", "pattern": "t", "follow": "yes"}',
        b'{"kind": "read", "pattern": "t", "max_records": true}',
        b'{"kind": "read", "pattern": "t", "starts": {"t": [1, "i"]}}',
        b'{"kind": "read", "pattern": "t.*", "starts": [["t.a", 1, "i"]]}',
        b'{"kind": "read", "pattern": "t.*", "starts": {"t.a": [-1, "i"]}}',
        b'{"kind": "read", "pattern": "t.*", "starts": {"t.a": [true, "i"]}}',
        b'{"kind": "read", "pattern": "t.*", "starts": {"t.a": [1, 2]}}',
        b'{"kind": "read", "pattern": "t.*", "starts": {"t.a": [1]}}',
        b'{"kind": "fetch", "topic": "t"}',
        b'{"kind": "read_key", "topic": "t", "key": "zz"}',
        b'{"kind": "read_key", "topic": "t", "key": "00", "key_encoding": "rot13"}',
        b'{"v": 99, "pattern": "t"}',
    ],
)
def test_garbage_tickets_are_invalid_requests(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        messages.decode_ticket(raw)


def test_a_read_names_a_bounded_number_of_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "read_starts_max", 2)
    starts = {f"t.{n}": (n, "i") for n in range(3)}
    raw = messages.encode_ticket(messages.ReadRequest("t.*", starts=starts))
    with pytest.raises(InvalidRequest, match="over the limit of 2"):
        messages.decode_ticket(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'"text"',
        b'{"expect": [1]}',
        b'{"expect": {"not-hex": 1}}',
        b'{"producer": ["p"]}',
        b'{"topic": 1}',
    ],
)
def test_garbage_append_options_are_invalid_requests(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        messages.decode_append_options(raw)


def test_oversized_commands_are_refused() -> None:
    raw = b'{"pattern": "' + b"a" * limits.flight_command_bytes_max + b'"}'
    with pytest.raises(RequestTooLarge):
        messages.decode_ticket(raw)


def test_actions_and_topic_info() -> None:
    assert messages.decode_action_body("list_topics", b"") == {}
    with pytest.raises(InvalidRequest):
        messages.decode_action_body("format_disk", b"{}")
    info = TopicInfo("t", 0, 5, 5, 100, 2, 1, {"retention_seconds": None}, 1.5)
    assert messages.decode_topic_info(messages.encode_topic_info(info)) == info
    with pytest.raises(InvalidRequest):
        messages.decode_topic_info(b'{"name": "t"}')


def test_schemas_travel_as_arrow_ipc() -> None:
    schema = pa.schema([("amount", pa.int64())])
    assert messages.decode_schema(messages.encode_schema(schema)) == schema
    json_schema = {"type": "object"}
    assert messages.decode_schema(messages.encode_schema(json_schema)) == json_schema


def test_errors_round_trip_with_attributes() -> None:
    conflict = messages.decode_error(messages.encode_error(ConflictError("no", b"\xffk", 1, 2)))
    assert type(conflict) is ConflictError
    assert (conflict.key, conflict.expected, conflict.actual) == (b"\xffk", 1, 2)
    sequence = messages.decode_error(messages.encode_error(SequenceError("gap", "p", 3, 9)))
    assert type(sequence) is SequenceError and sequence.producer_id == "p"
    assert messages.decode_error(None) is None
    assert messages.decode_error(b"not json") is None
    assert messages.decode_error(b'{"no_code": 1}') is None
    broken = messages.decode_error(b'{"code": "conflict", "message": "m", "details": {}}')
    assert type(broken) is OdradekError and broken.message == "m"
