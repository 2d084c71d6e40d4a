"""Key snapshots over the HTTP API (decision 0018), as through the other doors.

Goal: a client with curl stores a key's state as of one of its versions
(``PUT /v1/topics/{topic}/keys/{key}/snapshot``) and reads the key from its latest
snapshot (``GET .../records?from_snapshot=true``) with what ``read_key(...,
from_snapshot=True)`` gives: the snapshot row first (``snapshot`` true, its state as the
value, or in ``state`` on a topic with a schema), then the later events; the whole
stream, flagged false, without a snapshot; pages bounded by ``limit`` that read on from
``next_version``; every refusal of the engine (unknown topic, a version beyond the
key's or below its latest snapshot's, a bad state) in the API's error shape with its
status, nothing stored. A snapshot written over HTTP is the one a native client reads,
and the other way round. Method: the real listener in-process (conftest.py) with
urllib, the engine to check; and a real ``odradek serve`` with the remote client on
its Flight door beside the HTTP API.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from http_api_client import Api, Served

import odradek
from odradek import limits


class _Remote(Api):
    """The urllib helper on the listener of a served process (no node in this one)."""

    def __init__(self, base: str) -> None:
        self.base = base


def _fill(api: Api, topic: str, key: str, count: int) -> None:
    records = [{"key": key, "value": f"e{n}"} for n in range(1, count + 1)]
    api.ok("POST", f"/v1/topics/{topic}/records", {"records": records})


def _snapshot(api: Api, topic: str, key: str, body: Any, query: str = "") -> tuple[int, Any]:
    status, _, document = api.call("PUT", f"/v1/topics/{topic}/keys/{key}/snapshot{query}", body)
    return status, document


def _from_snapshot(api: Api, topic: str, key: str, query: str = "") -> Any:
    return api.ok("GET", f"/v1/topics/{topic}/keys/{key}/records?from_snapshot=true{query}")


def test_a_snapshot_then_the_key_read_from_it(api: Api) -> None:
    api.ok("POST", "/v1/topics", {"name": "accounts"})
    _fill(api, "accounts", "acct-7", 5)
    assert _snapshot(api, "accounts", "acct-7", {"version": 3, "state": '{"balance": 30}'}) == (
        200,
        {"topic": "accounts", "key": "acct-7", "version": 3},
    )
    page = _from_snapshot(api, "accounts", "acct-7")
    assert (page["topic"], page["key"], page["version"], page["next_version"]) == (
        "accounts",
        "acct-7",
        5,
        None,
    )
    rows = page["records"]
    assert [row["snapshot"] for row in rows] == [True, False, False]
    assert [row["version"] for row in rows] == [3, 4, 5]
    assert [row["value"] for row in rows] == ['{"balance": 30}', "e4", "e5"]
    plain = api.ok("GET", "/v1/topics/accounts/keys/acct-7/records")["records"]
    # The snapshot row's offset is the covered version's; the events are the plain read's.
    assert rows[0]["offset"] == plain[2]["offset"] and "headers" not in rows[0]
    assert rows[1:] == [{**row, "snapshot": False} for row in plain[3:]]
    # The same as a native client reads on the same engine.
    native = api.node.engine.read_key("accounts", b"acct-7", from_snapshot=True)
    assert native.column("value").to_pylist() == [b'{"balance": 30}', b"e4", b"e5"]
    assert native.column("offset").to_pylist() == [row["offset"] for row in rows]
    # The same version again replaces it; a later one is the one read from.
    assert _snapshot(api, "accounts", "acct-7", {"version": 3, "state": "again"})[0] == 200
    assert _from_snapshot(api, "accounts", "acct-7")["records"][0]["value"] == "again"
    assert _snapshot(api, "accounts", "acct-7", {"version": 5, "state": "all"})[0] == 200
    latest = _from_snapshot(api, "accounts", "acct-7")["records"]
    assert [(row["snapshot"], row["version"], row["value"]) for row in latest] == [(True, 5, "all")]


def test_a_key_without_a_snapshot_reads_its_whole_stream_flagged_false(api: Api) -> None:
    api.ok("POST", "/v1/topics", {"name": "accounts"})
    _fill(api, "accounts", "k", 3)
    page = _from_snapshot(api, "accounts", "k")
    assert [(row["snapshot"], row["version"], row["value"]) for row in page["records"]] == [
        (False, 1, "e1"),
        (False, 2, "e2"),
        (False, 3, "e3"),
    ]
    empty = _from_snapshot(api, "accounts", "nobody")
    assert (empty["records"], empty["version"], empty["next_version"]) == ([], 0, None)
    # Without from_snapshot (or with false) the rows have no flag, as before.
    for query in ("", "?from_snapshot=false"):
        rows = api.ok("GET", f"/v1/topics/accounts/keys/k/records{query}")["records"]
        assert len(rows) == 3 and all("snapshot" not in row for row in rows)


def test_limit_bounds_the_events_after_the_snapshot_and_next_version_reads_on(api: Api) -> None:
    api.ok("POST", "/v1/topics", {"name": "accounts"})
    _fill(api, "accounts", "k", 10)
    assert _snapshot(api, "accounts", "k", {"version": 4, "state": "s4"})[0] == 200
    page = _from_snapshot(api, "accounts", "k", "&limit=2")
    assert [(row["snapshot"], row["version"]) for row in page["records"]] == [
        (True, 4),
        (False, 5),
        (False, 6),
    ]
    assert page["next_version"] == 7
    rest = api.ok("GET", f"/v1/topics/accounts/keys/k/records?from_version={page['next_version']}")
    assert [row["value"] for row in rest["records"]] == ["e7", "e8", "e9", "e10"]
    assert rest["next_version"] is None
    # Without a snapshot the limit bounds the stream from its first version.
    _fill(api, "accounts", "fresh", 3)
    first = _from_snapshot(api, "accounts", "fresh", "&limit=2")
    assert [row["version"] for row in first["records"]] == [1, 2] and first["next_version"] == 3


def test_keys_and_states_that_are_not_text(api: Api) -> None:
    api.ok("POST", "/v1/topics", {"name": "bin"})
    key = base64.urlsafe_b64encode(b"\xfe\xff").decode()  # in a path: the URL-safe alphabet
    standard = base64.b64encode(b"\xfe\xff").decode()
    records = [{"key_b64": standard, "value": "v1"}, {"key_b64": standard, "value": "v2"}]
    api.ok("POST", "/v1/topics/bin/records", {"records": records})
    state = base64.b64encode(b"\x00\xffstate").decode()
    status, stored = _snapshot(api, "bin", key, {"version": 1, "state_b64": state}, "?key_encoding=base64")
    assert status == 200 and stored["key_b64"] == standard and "key" not in stored
    page = _from_snapshot(api, "bin", key, "&key_encoding=base64")
    assert page["records"][0]["value_b64"] == state and "value" not in page["records"][0]
    assert page["records"][1]["value"] == "v2"
    encoded = _from_snapshot(api, "bin", key, "&key_encoding=base64&value_encoding=base64")["records"]
    assert [row["value_b64"] for row in encoded] == [state, base64.b64encode(b"v2").decode()]
    assert api.node.engine.read_key("bin", b"\xfe\xff", from_snapshot=True).column("value")[0].as_py() == (
        b"\x00\xffstate"
    )


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def test_a_schemad_topic_gives_the_state_beside_its_typed_events(api: Api) -> None:
    api.ok("POST", "/v1/topics", {"name": "typed", "schema": SCHEMA})
    records = [{"key": "k", "value": {"n": n}} for n in range(1, 6)]
    api.ok("POST", "/v1/topics/typed/records", {"records": records})
    assert _snapshot(api, "typed", "k", {"version": 3, "state": "sum=6"})[0] == 200
    rows = _from_snapshot(api, "typed", "k")["records"]
    assert [(row["snapshot"], row["version"], row["value"], row["state"]) for row in rows] == [
        (True, 3, None, "sum=6"),
        (False, 4, {"n": 4}, None),
        (False, 5, {"n": 5}, None),
    ]
    # value_encoding=base64: the state in state_b64; the snapshot row's value stays null.
    encoded = _from_snapshot(api, "typed", "k", "&value_encoding=base64")["records"]
    assert encoded[0]["state_b64"] == base64.b64encode(b"sum=6").decode() and encoded[0]["value"] is None
    assert encoded[1]["state"] is None and "value_b64" in encoded[1]
    native = api.node.engine.read_key("typed", b"k", from_snapshot=True)
    assert native.column("state").to_pylist() == [b"sum=6", None, None]


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "message"),
    [
        (
            "/v1/topics/missing/keys/k/snapshot",
            {"version": 1, "state": "s"},
            404,
            "topic_not_found",
            "missing",
        ),
        (
            "/v1/topics/acc/keys/k/snapshot",
            {"version": 4, "state": "s"},
            400,
            "invalid_request",
            "at version 3",
        ),
        ("/v1/topics/acc/keys/k/snapshot", {"version": 0, "state": "s"}, 400, "invalid_request", "int >= 1"),
        (
            "/v1/topics/acc/keys/k/snapshot",
            {"version": "2", "state": "s"},
            400,
            "invalid_request",
            "int >= 1",
        ),
        (
            "/v1/topics/acc/keys/k/snapshot",
            {"version": True, "state": "s"},
            400,
            "invalid_request",
            "int >= 1",
        ),
        ("/v1/topics/acc/keys/k/snapshot", {"state": "s"}, 400, "invalid_request", "needs the version"),
        ("/v1/topics/acc/keys/k/snapshot", {"version": 2}, 400, "invalid_request", "needs its state"),
        (
            "/v1/topics/acc/keys/k/snapshot",
            {"version": 2, "state": {"a": 1}},
            400,
            "invalid_request",
            "string",
        ),
        (
            "/v1/topics/acc/keys/k/snapshot",
            {"version": 2, "state": "s", "state_b64": "cw=="},
            400,
            "invalid_request",
            "both",
        ),
        (
            "/v1/topics/acc/keys/k/snapshot",
            {"version": 2, "state_b64": "%%"},
            400,
            "invalid_request",
            "base64",
        ),
        ("/v1/topics/acc/keys/k/snapshot", {"version": 2, "value": "s"}, 400, "invalid_request", "unknown"),
        ("/v1/topics/acc/keys/k/snapshot", [2, "s"], 400, "invalid_request", "JSON object"),
        (
            "/v1/topics/acc/keys/k/snapshot",
            {"version": 2, "state": "s" * (limits.snapshot_state_bytes_max + 1)},
            413,
            "request_too_large",
            "snapshot_state_bytes_max",
        ),
    ],
)
def test_refused_snapshots_store_nothing(
    api: Api, path: str, body: Any, status: int, code: str, message: str
) -> None:
    api.ok("POST", "/v1/topics", {"name": "acc"})
    _fill(api, "acc", "k", 3)
    answer_status, _, error = api.call("PUT", path, body)
    assert (answer_status, error["code"]) == (status, code), error
    assert message in error["message"]
    assert set(error) == {"code", "message", "details"}
    rows = api.node.engine.read_key("acc", b"k", from_snapshot=True)
    assert rows.column("snapshot").to_pylist() == [False, False, False]  # no snapshot stored


def test_a_snapshot_older_than_the_latest_is_a_conflict(api: Api) -> None:
    api.ok("POST", "/v1/topics", {"name": "acc"})
    _fill(api, "acc", "k", 5)
    assert _snapshot(api, "acc", "k", {"version": 4, "state": "at4"})[0] == 200
    status, error = _snapshot(api, "acc", "k", {"version": 2, "state": "at2"})
    assert (status, error["code"]) == (409, "conflict")
    assert error["details"] == {"key_hex": b"k".hex(), "expected": 2, "actual": 4}
    assert _from_snapshot(api, "acc", "k")["records"][0]["value"] == "at4"


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("?from_snapshot=true&from_version=2", 400, "leave from_version and to_version out"),
        ("?from_snapshot=true&to_version=2", 400, "leave from_version and to_version out"),
        ("?from_snapshot=yes", 400, "true or false"),
        ("?from_snapshot=true&limit=0", 400, "limit"),
    ],
)
def test_refused_reads_from_a_snapshot(api: Api, query: str, status: int, message: str) -> None:
    api.ok("POST", "/v1/topics", {"name": "acc"})
    _fill(api, "acc", "k", 3)
    answer_status, _, error = api.call("GET", f"/v1/topics/acc/keys/k/records{query}")
    assert (answer_status, error["code"]) == (status, "invalid_request")
    assert message in error["message"]
    missing_status, _, missing = api.call("GET", "/v1/topics/missing/keys/k/records?from_snapshot=true")
    assert (missing_status, missing["code"]) == (404, "topic_not_found")


def test_a_snapshot_is_the_same_through_http_and_flight(tmp_path: Path) -> None:
    """A real ``odradek serve``: what one door stores, the other reads."""
    served = Served(str(tmp_path / "data"))
    try:
        api = _Remote(served.base)
        with odradek.connect(served.url) as client:
            client.create_topic("orders")
            client.append("orders", [{"key": b"o-1", "value": f"e{n}".encode()} for n in range(1, 5)])
            assert _snapshot(api, "orders", "o-1", {"version": 2, "state": "http-state"})[0] == 200
            table = client.read_key("orders", b"o-1", from_snapshot=True)
            assert table.column("snapshot").to_pylist() == [True, False, False]
            assert table.column("value").to_pylist() == [b"http-state", b"e3", b"e4"]
            client.snapshot("orders", b"o-1", b"flight-state", version=4)
            rows = _from_snapshot(api, "orders", "o-1")["records"]
            native = client.read_key("orders", b"o-1", from_snapshot=True).to_pylist()
        assert [(row["snapshot"], row["version"], row["value"]) for row in rows] == [
            (True, 4, "flight-state")
        ]
        assert [(row["snapshot"], row["version"], row["value"], row["offset"]) for row in native] == [
            (True, 4, b"flight-state", rows[0]["offset"])
        ]
    finally:
        served.kill()
