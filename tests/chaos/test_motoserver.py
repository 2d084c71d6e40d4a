"""moto's S3 server with atomic conditional writes (odradek/chaos/motoserver.py).

Goal: the S3 server the tests, the chaos run and the bench start lets exactly one of
many racing create-if-absent PUTs win, as S3 does (moto 5 checks the condition, then
writes, with no lock in between: under load two racing writers both won a test's race).
Method: the wrapper around a WSGI application that checks then writes with a pause in
between, as moto does, raced by many threads: without the wrapper several win; with it,
one. Then the real server, started as the suites start it, raced by the store client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from odradek.chaos.motoserver import atomic_conditional_puts
from odradek.chaos.stores import BUCKET, s3_store
from odradek.storage.objects import open_store

WRITERS = 8


def _check_then_write() -> tuple[Callable[..., Iterable[bytes]], dict[str, bytes]]:
    """A WSGI app that honours If-None-Match as moto does: look, pause, write."""
    objects: dict[str, bytes] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        key = environ["PATH_INFO"]
        if environ.get("HTTP_IF_NONE_MATCH") == "*" and key in objects:
            start_response("412 Precondition Failed", [])
            return [b""]
        time.sleep(0.01)  # the window between the check and the write
        objects[key] = environ["wsgi.input"]
        start_response("200 OK", [])
        return [b""]

    return app, objects


def _race(app: Callable[..., Iterable[bytes]]) -> int:
    barrier = threading.Barrier(WRITERS)

    def put(writer: int) -> bool:
        statuses: list[str] = []
        environ = {
            "REQUEST_METHOD": "PUT",
            "PATH_INFO": "/k",
            "HTTP_IF_NONE_MATCH": "*",
            "wsgi.input": b"%d" % writer,
        }
        barrier.wait(timeout=30)
        list(app(environ, lambda status, headers: statuses.append(status)))
        return statuses == ["200 OK"]

    with ThreadPoolExecutor(WRITERS) as pool:
        return sum(pool.map(put, range(WRITERS)))


def test_racing_conditional_puts_have_one_winner_through_the_wrapper() -> None:
    unwrapped, _ = _check_then_write()
    assert _race(unwrapped) > 1  # the race the wrapper closes
    wrapped, objects = _check_then_write()
    assert _race(atomic_conditional_puts(wrapped)) == 1 and len(objects) == 1


def test_the_server_the_suites_start_lets_one_racing_writer_win(tmp_path: Path) -> None:
    with s3_store(tmp_path) as server:
        store = open_store(f"s3://{BUCKET}/race", options=server.options)
        for round_ in range(10):
            barrier = threading.Barrier(WRITERS)

            def put(writer: int, key: str = f"race/{round_}", barrier: threading.Barrier = barrier) -> bool:
                barrier.wait(timeout=30)
                return store.put_new(key, f"writer {writer}".encode())

            with ThreadPoolExecutor(WRITERS) as pool:
                assert sum(pool.map(put, range(WRITERS))) == 1
