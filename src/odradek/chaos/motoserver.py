"""moto's S3 server with its conditional writes made atomic, as S3's are.

``python -m odradek.chaos.motoserver -H HOST -p PORT`` serves moto's S3 (the ``stores``
extra) like ``python -m moto.server``, for the tests, the chaos run and the bench.

Why not moto's own entry point: moto 5 answers a conditional PUT (``If-None-Match: *``,
``If-Match: ETAG``) by looking at the key and then writing it, on a threaded server,
with no lock in between. Two create-if-absent PUTs racing on one key can then both
succeed, which S3 never allows, and which the object-store journal relies on: a new
agent's fence and an old agent's upload racing for one slot must have exactly one
winner (decision record 0011). Under load the race shows (a test racing eight writers
on one key saw two winners). Here every PUT that carries a condition runs under the
lock of its key (one of ``STRIPES``, by the key's hash: PUTs of different keys, such as
a journal's flushes in flight, still run side by side), its body written before the lock
is let go; everything else runs as moto runs it.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Iterable
from typing import Any

_CONDITIONS = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH")
STRIPES = 256  # locks conditional PUTs are spread over, by the hash of their key


def atomic_conditional_puts(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """``app`` (a WSGI application) with its conditional PUTs of one key serialized."""
    locks = [threading.Lock() for _ in range(STRIPES)]

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "PUT" and any(name in environ for name in _CONDITIONS):
            key = f"{environ.get('HTTP_HOST', '')}{environ.get('PATH_INFO', '')}"
            with locks[hash(key) % STRIPES]:
                return list(app(environ, start_response))  # the whole answer, the write done
        return app(environ, start_response)

    return serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1", help="the address to bind")
    parser.add_argument("-p", "--port", type=int, required=True, help="the port to bind")
    args = parser.parse_args(argv)

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        atomic_conditional_puts(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
