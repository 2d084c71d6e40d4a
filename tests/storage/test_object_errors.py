"""What a store answers is translated into the right error, through obstore for real.

Goal: each failure a real store produces becomes the error its caller needs: a 503
SlowDown, a 500, a 429 and a 409 ConditionalRequestConflict are retried
(StoreUnavailable; a write's outcome is unknown after a 500 but not after the others),
a 403 is StoreRefused and never retried, a missing bucket is StoreRefused rather than an
empty store, wrong credentials are StoreRefused, a refused connection is
StoreUnavailable with nothing written, a server that never answers is a timeout with an
unknown outcome, and the directory store's file-system conflicts are StoreRefused.

Method: a scripted HTTP server on a loopback port answering S3 error documents, a
listening socket that never answers, a port nobody listens on, moto's S3 server and
SeaweedFS with wrong settings; retries without backoff so nothing waits.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from object_servers import ACCESS_KEY_ID, S3Server, free_ports, unique_prefix

from odradek.errors import StorageError
from odradek.storage.objectbackends import translate
from odradek.storage.objects import ObjectStore, RetryPolicy, StoreRefused, StoreUnavailable, open_store

QUICK = RetryPolicy(attempts=3, backoff_base_seconds=0.0, backoff_max_seconds=0.0)


class ScriptedS3(http.server.ThreadingHTTPServer):
    """Answers every request with the next (status, S3 error code) of its script, the
    last one repeated; records the methods it saw."""

    def __init__(self, script: list[tuple[int, str]]) -> None:
        super().__init__(("127.0.0.1", 0), _Answer)
        self.script = script
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def next_answer(self, method: str) -> tuple[int, str]:
        with self.lock:
            self.seen.append(method)
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]


class _Answer(http.server.BaseHTTPRequestHandler):
    server: ScriptedS3

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, code = self.server.next_answer(self.command)
        body = b"" if status == 200 else f"<Error><Code>{code}</Code><Message>x</Message></Error>".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"abc"')
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        return


@pytest.fixture
def scripted() -> Iterator[ScriptedS3]:
    server = ScriptedS3([(200, "")])
    thread = threading.Thread(target=server.serve_forever, name="scripted-s3", daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _store_at(port: int, retry: RetryPolicy = QUICK) -> ObjectStore:
    options: dict[str, str | bool] = {
        "endpoint": f"http://127.0.0.1:{port}",
        "access_key_id": "key",
        "secret_access_key": "secret",
        "region": "us-east-1",
        "allow_http": True,
    }
    return open_store("s3://bucket/p", options=options, retry=retry)


@pytest.mark.parametrize(
    ("status", "code", "unknown"),
    [(503, "SlowDown", False), (500, "InternalError", True), (429, "TooManyRequests", False)],
)
def test_server_errors_are_retried(scripted: ScriptedS3, status: int, code: str, unknown: bool) -> None:
    scripted.script = [(status, code), (status, code), (200, "")]
    store = _store_at(scripted.server_address[1])
    store.put("k", b"v")
    assert scripted.seen == ["PUT"] * 3
    scripted.script = [(status, code)]
    with pytest.raises(StoreUnavailable) as failed:
        store.put("k", b"v")
    assert failed.value.attempts == 3 and failed.value.outcome_unknown is unknown
    assert code in str(failed.value) or str(status) in str(failed.value)


def test_a_concurrent_conditional_write_is_retried(scripted: ScriptedS3) -> None:
    """S3 answers 409 ConditionalRequestConflict to a create-if-absent racing another:
    nothing was written, the retry decides (here: the key is free)."""
    scripted.script = [(409, "ConditionalRequestConflict"), (200, "")]
    store = _store_at(scripted.server_address[1])
    assert store.put_new("k", b"v") is True
    assert scripted.seen == ["PUT", "PUT"]


def test_access_denied_is_refused_at_once(scripted: ScriptedS3) -> None:
    scripted.script = [(403, "AccessDenied")]
    store = _store_at(scripted.server_address[1])
    with pytest.raises(StoreRefused, match="access denied") as refused:
        store.get("k")
    assert not refused.value.retryable and refused.value.attempts == 1 and scripted.seen == ["GET"]


def test_a_refused_connection_wrote_nothing() -> None:
    (port,) = free_ports(1)  # nobody listens there
    store = _store_at(port)
    with pytest.raises(StoreUnavailable) as failed:
        store.put_new("k", b"v")
    assert failed.value.attempts == 3 and not failed.value.outcome_unknown
    assert "connect" in str(failed.value)


def test_a_server_that_never_answers_times_out_with_an_unknown_outcome() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections complete in the backlog; nothing ever answers
    try:
        retry = RetryPolicy(
            attempts=2, backoff_base_seconds=0.0, backoff_max_seconds=0.0, request_timeout_seconds=0.5
        )
        store = _store_at(silent.getsockname()[1], retry)
        with pytest.raises(StoreUnavailable) as failed:
            store.put("k", b"v")
        assert failed.value.outcome_unknown and "timeout" in str(failed.value)
        with pytest.raises(StoreUnavailable) as read:
            store.get("k")
        assert not read.value.outcome_unknown  # a read changes nothing
    finally:
        silent.close()


def test_a_missing_bucket_is_not_an_empty_store(moto_s3: S3Server) -> None:
    store = open_store("s3://no-such-bucket/p", options=moto_s3.options, retry=QUICK)
    for operation in (
        lambda: store.get("k"),
        lambda: store.get_range("k", 0, 1),
        lambda: store.put("k", b"v"),
        lambda: store.put_new("k", b"v"),
        lambda: store.list(),
    ):
        with pytest.raises(StoreRefused, match="bucket does not exist"):
            operation()


def test_wrong_credentials_are_refused(seaweedfs_s3: S3Server) -> None:
    options = {**seaweedfs_s3.options, "secret_access_key": "not the secret"}
    store = open_store(seaweedfs_s3.url(unique_prefix()), options=options, retry=QUICK)
    with pytest.raises(StoreRefused, match="access denied") as refused:
        store.put("k", b"v")
    assert refused.value.attempts == 1 and store.counts().puts == 1
    assert ACCESS_KEY_ID not in str(refused.value) and "not the secret" not in str(refused.value)


def test_a_key_that_is_an_object_and_a_directory_is_refused(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}", retry=QUICK)
    store.put("a", b"x")
    with pytest.raises(StoreRefused, match="both an object and the prefix"):
        store.put("a/b", b"y")
    store.put("c/d", b"x")
    with pytest.raises(StoreRefused, match="both an object and the prefix"):
        store.put("c", b"y")
    assert store.counts().retries == 0


@pytest.mark.parametrize(
    ("message", "kind", "unknown"),
    [
        (
            "Generic S3 error: ... Server returned non-2xx status code: 503 Service Unavailable",
            StoreUnavailable,
            False,
        ),
        (
            "Generic S3 error: ... Server returned non-2xx status code: 502 Bad Gateway",
            StoreUnavailable,
            True,
        ),
        (
            "Generic S3 error: ... status code: 400 Bad Request: <Code>InvalidRequest</Code>",
            StoreRefused,
            False,
        ),
        (
            "Generic LocalFileSystem error: Unable to write: No space left on device (os error 28)",
            StoreUnavailable,
            True,
        ),
        (
            "Generic LocalFileSystem error: Unable to open: Permission denied (os error 13)",
            StoreRefused,
            False,
        ),
        ("PUT http://169.254.169.254/latest/api/token - 403 Forbidden", StoreRefused, False),
        ("something nobody has seen before", StoreUnavailable, True),
    ],
)
def test_translation_of_messages(message: str, kind: type[StorageError], unknown: bool) -> None:
    error = translate(RuntimeError(message), write=True)
    assert type(error) is kind
    assert getattr(error, "outcome_unknown", False) is unknown
    assert "\n" not in str(error)
