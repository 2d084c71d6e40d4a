"""Reducers that come with Odradek, for views that need no code of their own.

Name them by import path: ``client.create_view("last", "orders.>",
"odradek.views.reducers:latest")``.
"""

from __future__ import annotations

from typing import Any


def latest(state: bytes | None, record: dict[str, Any]) -> bytes | None:
    """The key's latest value (a record with a null value deletes the key)."""
    value = record.get("value")
    return None if value is None else bytes(value)


def count(state: bytes | None, record: dict[str, Any]) -> bytes:
    """How many records the key has had, as decimal text."""
    return b"%d" % (int(state or b"0") + 1)
