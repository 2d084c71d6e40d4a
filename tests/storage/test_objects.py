"""Every ObjectStore operation behaves the same on every backend.

Goal: put/put_new/put_if/get/get_range/head/list/delete keep their contract on memory, a
local directory, moto's S3 server and SeaweedFS alike: create-if-absent answers True
exactly once, even to many threads racing for one key; compare-and-swap works where the
backend has it and is refused clearly where it does not (the directory); listings are
sorted and relative to the store's prefix; the request counters count every request.

Method: the ``object_store`` fixture (conftest.py) runs each test on each backend, with
a fresh prefix; the S3 servers are real subprocesses on loopback ports.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from odradek.errors import InvalidRequest, RequestTooLarge
from odradek.storage.objects import (
    Listed,
    ObjectHead,
    ObjectStore,
    RequestCounts,
    StoreUnsupported,
    Versioned,
)

RACERS = 16


def test_put_get_overwrite(object_store: ObjectStore) -> None:
    assert object_store.get("a/b") is None
    first = object_store.put("a/b", b"one")
    assert object_store.get("a/b") == b"one"
    second = object_store.put("a/b", bytearray(b"two, longer"))
    assert object_store.get("a/b") == b"two, longer"
    assert first != second  # the version token changed with the bytes


def test_bytes_of_every_value_round_trip(object_store: ObjectStore) -> None:
    data = bytes(range(256)) * 64
    object_store.put("binary", memoryview(data))
    object_store.put("empty", b"")
    assert object_store.get("binary") == data
    assert object_store.get("empty") == b""
    view = object_store.get_buffer("binary")
    assert view is not None and view.readonly and view == data


def test_a_large_object_is_one_put(object_store: ObjectStore) -> None:
    """Over obstore's multipart threshold (5 MiB) a PUT is still one request."""
    data = bytes(range(256)) * (24 * 1024)  # 6 MiB
    before = object_store.counts()
    object_store.put("large", data)
    assert (object_store.counts() - before).puts == 1
    assert object_store.get("large") == data


def test_put_new_creates_once(object_store: ObjectStore) -> None:
    assert object_store.put_new("epochs/1", b"agent a") is True
    assert object_store.put_new("epochs/1", b"agent b") is False
    assert object_store.put_new("epochs/1", b"agent a") is False  # even with the same bytes
    assert object_store.get("epochs/1") == b"agent a"
    object_store.delete("epochs/1")
    assert object_store.put_new("epochs/1", b"agent c") is True


def test_put_new_race_has_exactly_one_winner(object_store: ObjectStore) -> None:
    for key in ("race/0", "race/1", "race/2"):
        barrier = threading.Barrier(RACERS)

        def race(writer: int, key: str = key, barrier: threading.Barrier = barrier) -> bool:
            barrier.wait(timeout=60)
            return object_store.put_new(key, f"writer {writer}".encode())

        with ThreadPoolExecutor(RACERS) as pool:
            answers = list(pool.map(race, range(RACERS)))
        assert answers.count(True) == 1
        winner = answers.index(True)
        assert object_store.get(key) == f"writer {winner}".encode()


def test_put_if_swaps_on_the_version(object_store: ObjectStore) -> None:
    object_store.put("manifest", b"v1")
    head = object_store.head("manifest")
    assert head is not None and head.etag
    if not object_store.supports_compare_and_swap:
        with pytest.raises(StoreUnsupported, match="compare-and-swap") as refused:
            object_store.put_if("manifest", b"v2", head.etag)
        assert not refused.value.retryable and refused.value.key == "manifest"
        assert object_store.get("manifest") == b"v1"
        return
    token = object_store.put_if("manifest", b"v2", head.etag)
    assert token and token != head.etag
    assert object_store.put_if("manifest", b"v3 from a stale reader", head.etag) is None
    assert object_store.get("manifest") == b"v2"
    read = object_store.get_versioned("manifest")
    assert read == Versioned(b"v2", token)
    assert object_store.put_if("manifest", b"v3", read.etag or "") is not None
    assert object_store.get("manifest") == b"v3"


def test_put_if_on_a_missing_object_is_a_mismatch(object_store: ObjectStore) -> None:
    if not object_store.supports_compare_and_swap:
        pytest.skip("the backend has no compare-and-swap (checked in test_put_if_swaps_on_the_version)")
    object_store.put("gone", b"x")
    head = object_store.head("gone")
    assert head is not None and head.etag
    object_store.delete("gone")
    assert object_store.put_if("gone", b"y", head.etag) is None
    assert object_store.get("gone") is None


def test_put_if_race_has_exactly_one_winner(object_store: ObjectStore) -> None:
    if not object_store.supports_compare_and_swap:
        pytest.skip("the backend has no compare-and-swap (checked in test_put_if_swaps_on_the_version)")
    etag = object_store.put("cas", b"start") or ""
    barrier = threading.Barrier(RACERS)

    def race(writer: int) -> str | None:
        barrier.wait(timeout=60)
        return object_store.put_if("cas", f"writer {writer}".encode(), etag)

    with ThreadPoolExecutor(RACERS) as pool:
        answers = list(pool.map(race, range(RACERS)))
    winners = [writer for writer, answer in enumerate(answers) if answer is not None]
    assert len(winners) == 1
    assert object_store.get("cas") == f"writer {winners[0]}".encode()


def test_get_range(object_store: ObjectStore) -> None:
    object_store.put("r", b"0123456789")
    assert object_store.get_range("r", 2, 5) == b"234"
    assert object_store.get_range("r", 7, 100) == b"789"  # ends early with the object
    assert object_store.get_range("r", 4, 4) == b""
    assert object_store.get_range("missing", 0, 4) is None
    with pytest.raises(InvalidRequest, match="range"):
        object_store.get_range("r", 10, 12)
    with pytest.raises(InvalidRequest, match="range"):
        object_store.get_range("r", 5, 2)


def test_head(object_store: ObjectStore) -> None:
    assert object_store.head("h") is None
    etag = object_store.put("h", b"12345")
    head = object_store.head("h")
    assert head is not None and head.size == 5
    assert head == ObjectHead(5, etag) or etag is None


def test_delete_is_idempotent(object_store: ObjectStore) -> None:
    object_store.delete("never/was")
    object_store.put("d", b"x")
    object_store.delete("d")
    object_store.delete("d")
    assert object_store.get("d") is None


def test_list_is_sorted_relative_and_by_segments(object_store: ObjectStore) -> None:
    keys = ["wal/00000000000000000010", "wal/00000000000000000002", "wal/00000000000000000001"]
    for key in keys:
        object_store.put(key, key.encode())
    object_store.put("wal-other/x", b"not under wal/")
    object_store.put("epochs/00000000000000000001", b"e")
    expected = [Listed(key, len(key)) for key in sorted(keys)]
    assert object_store.list("wal/") == expected
    assert object_store.list("wal") == expected
    assert [item.key for item in object_store.list()] == sorted(
        [*keys, "wal-other/x", "epochs/00000000000000000001"]
    )
    assert object_store.list("nothing/here") == []


def test_list_pages(object_store: ObjectStore) -> None:
    keys = [f"p/{n:03d}" for n in range(7)]
    for key in reversed(keys):
        object_store.put(key, b"x")
    assert [item.key for item in object_store.list("p", limit=3)] == keys[:3]
    assert [item.key for item in object_store.list("p", after=keys[2], limit=3)] == keys[3:6]
    assert [item.key for item in object_store.list("p", after=keys[5])] == keys[6:]
    with pytest.raises(InvalidRequest, match="limit"):
        object_store.list("p", limit=0)


def test_a_listing_too_long_is_refused(object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("odradek.limits.object_list_keys_max", 3)
    for n in range(4):
        object_store.put(f"many/{n}", b"x")
    with pytest.raises(RequestTooLarge, match="more than 3 objects"):
        object_store.list("many")
    assert len(object_store.list("many", limit=3)) == 3


def test_prefixes_keep_stores_apart(object_store: ObjectStore) -> None:
    object_store.put("shared/key", b"mine")
    assert object_store.prefix == "" or object_store.url.endswith(object_store.prefix)
    assert all(not item.key.startswith(object_store.prefix + "/") for item in object_store.list())


def test_counters_count_every_request(object_store: ObjectStore) -> None:
    before = object_store.counts()
    object_store.put("c/1", b"abc")
    object_store.put_new("c/1", b"taken")
    object_store.get("c/1")
    object_store.get("c/missing")
    object_store.get_range("c/1", 0, 2)
    object_store.head("c/1")
    object_store.list("c")
    object_store.delete("c/1")
    delta = object_store.counts() - before
    assert delta == RequestCounts(
        puts=2, gets=3, heads=1, lists=1, deletes=1, bytes_put=3, bytes_got=5, retries=0
    )
    assert delta.requests == 8
    assert delta.by_kind() == {"PUT": 2, "GET": 3, "HEAD": 1, "LIST": 1, "DELETE": 1}


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/",
        "//abs",
        "/a//b",
        "a//b",
        "a/./b",
        "../up",
        "a/..",
        "with space",
        "tab\tkey",
        "hash#1",
        "ünicode",
        "a/",
    ],
)
def test_bad_keys_are_refused(object_store: ObjectStore, key: str) -> None:
    before = object_store.counts()
    with pytest.raises(InvalidRequest, match="key"):
        object_store.put(key, b"x")
    with pytest.raises(InvalidRequest, match="key"):
        object_store.get(key)
    assert object_store.counts() == before  # refused before any request


def test_a_key_with_a_leading_slash_is_the_backends_own(object_store: ObjectStore) -> None:
    """Cells of one store (decision 0031): a child store's object is named from a
    sibling by its bucket-absolute key, and a key is named back relatively."""
    first, second = object_store.child("cells/a"), object_store.child("cells/b")
    first.put("files/x", b"of a")
    absolute = first.absolute("files/x")
    assert absolute == "/" + (object_store.prefix + "/" if object_store.prefix else "") + "cells/a/files/x"
    assert second.get(absolute) == b"of a"
    assert first.local(absolute) == "files/x" and second.local(absolute) == absolute
    assert object_store.get("cells/a/files/x") == b"of a"
    second.delete(absolute)
    assert first.get("files/x") is None
    assert object_store.at(first.absolute("")).get("files/x") is None


def test_safe_punctuation_is_a_key(object_store: ObjectStore) -> None:
    key = "topics/orders.eu_created-1/(seg)=0,1+2@x~y!z*'%41"
    object_store.put(key, b"x")
    assert object_store.get(key) == b"x"
    assert [item.key for item in object_store.list("topics")] == [key]


def test_bad_data_is_refused(object_store: ObjectStore) -> None:
    with pytest.raises(InvalidRequest, match="bytes"):
        object_store.put("k", "text is not bytes")  # type: ignore[arg-type]


def test_many_threads_share_a_store(object_store: ObjectStore) -> None:
    def work(n: int) -> bytes | None:
        object_store.put(f"threads/{n}", str(n).encode())
        return object_store.get(f"threads/{n}")

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(work, range(64)))
    assert answers == [str(n).encode() for n in range(64)]
    assert len(object_store.list("threads")) == 64
