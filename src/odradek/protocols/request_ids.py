"""The id of the request a thread or task serves, for the logs (``request_id``).

Each door sets it at its dispatch point: the Flight door per call (a fresh id), the
Kafka door per request (``HOST:PORT/CORRELATION_ID`` of the client's connection), the
HTTP listener per request (the client's ``X-Request-Id`` when it is a sensible one, else
a fresh id). The server's log formatter (cli/serve.py) adds it to every line logged
while the request is served. A context variable: each thread and asyncio task has its
own.
"""

from __future__ import annotations

import contextvars
import re
import secrets

from odradek import limits

#: The request being served (None: none, e.g. a background task).
current: contextvars.ContextVar[str | None] = contextvars.ContextVar("odradek_request_id", default=None)

_SENSIBLE = re.compile(r"[A-Za-z0-9._:/@+=-]+")


def fresh() -> str:
    """A new request id: 16 hex digits (64 random bits)."""
    return secrets.token_hex(8)


def given_or_fresh(given: str | None) -> str:
    """A client's request id when it is printable and short enough
    (``limits.request_id_chars_max``), else a fresh one (a bad one is not an error: the
    request is served, its logs carry an id of the server's)."""
    if given is not None:
        given = given.strip()
        if 0 < len(given) <= limits.request_id_chars_max and _SENSIBLE.fullmatch(given):
            return given
    return fresh()
