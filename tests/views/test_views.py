"""Materialized key views on the embedded client: definitions, applying, failures, restarts.

Goal: a view applies every record of the topics its pattern matches (topics created
later too) with its reducer and key function; a reducer that raises or returns
something other than bytes stops the view at that record, with the error in
``describe_view``, while appends go on; a view over its size bound stops with a clear
error; a view and its table survive a restart, and a damaged checkpoint is reported,
not trusted; reducers given as functions are stored only if they can be imported
again; a reducer that hangs does not hang deleting its view; records that retention
removed before the view applied them are skipped, the view goes on; a checkpoint the
disk refuses is tried again while the view goes on applying. Method:
``odradek.open`` on a temporary directory and the reducers of view_reducers.py (one of
them held by a gate the test opens); every wait is ``append(..., wait_for=[view])`` or
a wait on a condition with a generous deadline, never a sleep.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import view_reducers

import odradek
from odradek import limits
from odradek.client.embedded import EmbeddedClient
from odradek.errors import InvalidRequest, WaitTimeout
from odradek.storage.faults import FaultyDisk

DEADLINE_SECONDS = 60.0


@pytest.fixture
def client(tmp_path: Path) -> Iterator[EmbeddedClient]:
    with odradek.open(tmp_path / "data") as opened:
        yield opened


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def order(key: str, customer: str) -> dict[str, Any]:
    return {"key": key.encode(), "value": json.dumps({"customer": customer}).encode()}


def test_a_key_function_groups_records_under_another_key(client: EmbeddedClient) -> None:
    client.create_topic("orders.eu")
    client.create_view("orders_by_customer", "orders.>", "view_reducers:orders", key="view_reducers:customer")
    client.append("orders.eu", [order("o1", "c1"), order("o2", "c2"), order("o3", "c1")])
    client.append("orders.eu", [{"key": b"o4", "value": b"{}"}], wait_for=["view:orders_by_customer"])
    assert client.view_get("orders_by_customer", b"c1") == b'["o1", "o3"]'
    assert client.view_get("orders_by_customer", b"c2") == b'["o2"]'
    assert client.view_scan("orders_by_customer").num_rows == 2  # o4 has no customer: skipped


def test_topics_created_later_are_applied_and_keyless_records_skipped(client: EmbeddedClient) -> None:
    client.create_view("last", "orders.>", "odradek.views.reducers:latest")
    client.create_topic("orders.us")
    client.append("orders.us", [{"key": None, "value": b"x"}, {"key": b"k", "value": b"v"}])
    client.append("orders.us", [{"key": b"k", "value": b"w"}], wait_for=["view:last"])
    assert client.view_get("last", b"k") == b"w"
    assert client.describe_view("last")["keys"] == 1


def test_a_null_state_deletes_the_key(client: EmbeddedClient) -> None:
    client.create_topic("t")
    client.create_view("last", "t", "odradek.views.reducers:latest")
    client.append("t", [{"key": b"a", "value": b"1"}, {"key": b"b", "value": b"2"}])
    client.append("t", [{"key": b"a", "value": None}], wait_for=["view:last"])
    assert client.view_get("last", b"a") is None
    assert client.view_scan("last").to_pylist() == [{"key": b"b", "state": b"2"}]


def test_a_reducer_that_raises_stops_the_view_at_its_record(client: EmbeddedClient) -> None:
    client.create_topic("t")
    client.create_view("v", "t", "view_reducers:fails_on_poison")
    client.append("t", [{"key": b"a", "value": b"1"}, {"key": b"b", "value": b"poison"}])
    wait_until(lambda: client.describe_view("v")["status"] == "failed", "the view to stop")
    info = client.describe_view("v")
    assert "t offset 1" in info["error"]
    assert "ValueError: poison" in info["error"]
    assert info["offsets"] == {"t": 1}  # the record before it is applied, not the poison
    assert client.view_get("v", b"a") == b"1"
    # Appends are never held back; one that waits for the stopped view learns it at once.
    client.append("t", [{"key": b"c", "value": b"3"}])
    with pytest.raises(WaitTimeout, match="stopped") as caught:
        client.append("t", [{"key": b"d", "value": b"4"}], wait_for=["view:v"], timeout=60.0)
    assert caught.value.pending == ["view:v"]
    assert caught.value.result.base_offset == 3
    assert client.describe_topic("t").next_offset == 4


def test_a_reducer_returning_no_bytes_stops_the_view(client: EmbeddedClient) -> None:
    client.create_topic("t")
    client.create_view("v", "t", "view_reducers:not_bytes")
    client.append("t", [{"key": b"a", "value": b"1"}])
    wait_until(lambda: client.describe_view("v")["status"] == "failed", "the view to stop")
    assert "returned int, not bytes" in client.describe_view("v")["error"]


def test_a_view_over_its_size_bound_stops_with_a_clear_error(
    client: EmbeddedClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "view_bytes_max", 1000)
    client.create_topic("t")
    client.create_view("v", "t", "odradek.views.reducers:latest")
    client.append("t", [{"key": b"k%d" % n, "value": b"x" * 100} for n in range(20)])
    wait_until(lambda: client.describe_view("v")["status"] == "failed", "the view to stop")
    assert "view_bytes_max" in client.describe_view("v")["error"]
    client.append("t", [{"key": b"more", "value": b"x"}])  # appends go on


def test_functions_are_stored_by_import_path_or_refused(client: EmbeddedClient) -> None:
    client.create_topic("t")
    described = client.create_view("v", "t", view_reducers.total)
    assert described["reducer"] == "view_reducers:total"
    with pytest.raises(InvalidRequest, match="lambda"):
        client.create_view("w", "t", lambda state, record: b"")

    def closure(state: bytes | None, record: dict[str, Any]) -> bytes:
        return b""

    with pytest.raises(InvalidRequest, match="closure"):
        client.create_view("w", "t", closure)
    closure.__module__ = "__main__"
    closure.__qualname__ = "closure"
    with pytest.raises(InvalidRequest, match="__main__"):
        client.create_view("w", "t", closure)
    with pytest.raises(InvalidRequest, match="function"):
        client.create_view("w", "t", 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="at most"):
        client.create_view("w", "t", "m:" + "f" * limits.view_import_path_chars_max)
    assert client.list_views() == ["v"]


def test_the_node_refuses_views_past_its_bound(
    client: EmbeddedClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "views_max", 2)
    client.create_topic("t")
    client.create_view("a", "t", "odradek.views.reducers:count")
    client.create_view("b", "t", "odradek.views.reducers:count")
    with pytest.raises(InvalidRequest, match="views_max"):
        client.create_view("c", "t", "odradek.views.reducers:count")
    assert client.list_views() == ["a", "b"]
    assert sorted(os.listdir(Path(client.engine.path) / "views")) == ["a", "b"]


def test_a_view_survives_a_restart_and_goes_on(tmp_path: Path) -> None:
    with odradek.open(tmp_path / "data") as first:
        first.create_topic("pay")
        first.create_view("sums", "pay", "view_reducers:total")
        first.append("pay", [{"key": b"a", "value": b'{"amount": 5}'}], wait_for=["view:sums"])
    with odradek.open(tmp_path / "data") as second:
        assert second.view_get("sums", b"a") == b"5"  # from the checkpoint, not applied twice
        second.append("pay", [{"key": b"a", "value": b'{"amount": 2}'}], wait_for=["view:sums"])
        assert second.view_get("sums", b"a") == b"7"
        second.delete_view("sums")
    with odradek.open(tmp_path / "data") as third:
        assert third.list_views() == []
        assert os.listdir(tmp_path / "data" / "views") == []


def test_a_deleted_and_recreated_topic_is_applied_from_its_start(client: EmbeddedClient) -> None:
    client.create_topic("t")
    client.create_view("sums", "t", "view_reducers:total")
    client.append("t", [{"key": b"a", "value": b'{"amount": 5}'}] * 3, wait_for=["view:sums"])
    client.delete_topic("t")
    client.create_topic("t")
    client.append("t", [{"key": b"a", "value": b'{"amount": 1}'}] * 4, wait_for=["view:sums"])
    assert client.view_get("sums", b"a") == b"19"  # 15 before, and each of the 4 new records
    assert client.describe_view("sums")["offsets"] == {"t": 4}


def test_a_damaged_checkpoint_is_reported_not_trusted(tmp_path: Path) -> None:
    with odradek.open(tmp_path / "data") as first:
        first.create_topic("t")
        first.create_view("v", "t", "odradek.views.reducers:latest")
        first.append("t", [{"key": b"a", "value": b"1"}], wait_for=["view:v"])
    table = tmp_path / "data" / "views" / "v" / "table"
    raw = bytearray(table.read_bytes())
    raw[-10] ^= 0xFF
    table.write_bytes(bytes(raw))
    with odradek.open(tmp_path / "data") as second:
        info = second.describe_view("v")
        assert info["status"] == "failed"
        assert "checksum" in info["error"]
        second.append("t", [{"key": b"a", "value": b"2"}])  # appends go on


def test_a_definition_without_a_directory_left_by_a_crash_is_removed(tmp_path: Path) -> None:
    with odradek.open(tmp_path / "data"):
        pass
    half_made = tmp_path / "data" / "views" / "half"
    half_made.mkdir()
    (half_made / "table.tmp").write_bytes(b"partial")
    with odradek.open(tmp_path / "data") as opened:
        assert opened.list_views() == []
    assert not half_made.exists()


@pytest.fixture
def gate() -> Iterator[None]:
    view_reducers.GATE.clear()
    view_reducers.ENTERED.clear()
    view_reducers.LEFT.clear()
    yield
    view_reducers.GATE.set()


def test_a_hung_reducer_does_not_hang_deleting_its_view(
    client: EmbeddedClient, gate: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "view_stop_seconds_max", 0.1)
    client.create_topic("t")
    client.create_view("stuck", "t", "view_reducers:held")
    client.append("t", [{"key": b"a", "value": b"1"}])
    assert view_reducers.ENTERED.wait(DEADLINE_SECONDS)
    client.delete_view("stuck")  # returns although the reducer still hangs
    assert not view_reducers.LEFT.is_set()
    assert client.list_views() == []
    assert not (Path(client.engine.path) / "views" / "stuck").exists()
    view_reducers.GATE.set()  # the abandoned applier ends, and publishes nothing
    client.create_topic("u")  # the node goes on


def test_records_removed_by_retention_before_they_were_applied_are_skipped(
    client: EmbeddedClient, gate: None
) -> None:
    client.create_topic("t", segment_bytes="64KiB", retention="1h")
    client.create_view("last", "t", "view_reducers:held")
    client.append("t", [{"key": b"first", "value": b"0"}])
    assert view_reducers.ENTERED.wait(DEADLINE_SECONDS)  # the view holds offset 0
    for number in range(8):  # about 8 segments of 64 KiB
        client.append("t", [{"key": b"k%d" % number, "value": b"x" * 1024} for _ in range(64)])
    assert client.engine.enforce_retention(now=time.time() + 7200) > 0
    first = client.describe_topic("t").first_offset
    assert first > 1
    view_reducers.GATE.set()
    client.append("t", [{"key": b"last", "value": b"9"}], wait_for=["view:last"], timeout=DEADLINE_SECONDS)
    assert client.view_get("last", b"first") == b"0"  # applied before retention
    assert client.view_get("last", b"k0") is None  # removed by retention, never applied
    assert client.view_get("last", b"last") == b"9"
    info = client.describe_view("last")
    assert info["status"] == "running"
    assert info["offsets"] == {"t": client.describe_topic("t").next_offset}


def test_a_topic_deleted_while_its_batch_is_reduced_does_not_stop_the_view(
    client: EmbeddedClient, gate: None
) -> None:
    client.create_topic("t")
    client.create_view("last", "t", "view_reducers:held")
    client.append("t", [{"key": b"a", "value": b"1"}])
    assert view_reducers.ENTERED.wait(DEADLINE_SECONDS)  # the view reduces offset 0
    client.delete_topic("t")
    view_reducers.GATE.set()
    client.create_topic("t")
    client.append("t", [{"key": b"b", "value": b"2"}], wait_for=["view:last"], timeout=DEADLINE_SECONDS)
    info = client.describe_view("last")
    assert (info["status"], info["error"]) == ("running", None)
    assert info["offsets"] == {"t": 1}
    assert client.view_get("last", b"b") == b"2"


def test_a_checkpoint_the_disk_refuses_is_tried_again_and_the_view_goes_on(tmp_path: Path) -> None:
    disk = FaultyDisk()
    with odradek.open(tmp_path / "data", disk=disk) as client:
        client.create_topic("t")
        client.create_view("v", "t", "odradek.views.reducers:latest")
        disk.fail_writes(errno.ENOSPC, paths=os.path.join("views", "v", "table"))
        client.append("t", [{"key": b"a", "value": b"1"}], wait_for=["view:v"])
        wait_until(lambda: client.describe_view("v")["error"] is not None, "a checkpoint to fail")
        info = client.describe_view("v")
        assert info["status"] == "running"
        assert "checkpoint failed" in info["error"]
        client.append("t", [{"key": b"a", "value": b"2"}], wait_for=["view:v"])  # still applying
        disk.heal()
        wait_until(lambda: client.describe_view("v")["error"] is None, "a checkpoint to land")
    with odradek.open(tmp_path / "data") as reopened:
        assert reopened.describe_view("v")["offsets"] == {"t": 2}
        assert reopened.view_get("v", b"a") == b"2"
