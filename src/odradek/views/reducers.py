"""Reducers that come with Odradek, for views that need no code of their own.

Name them by import path: ``client.create_view("last", "orders.>",
"odradek.views.reducers:latest")``.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
from typing import Any


def latest(state: bytes | None, record: dict[str, Any]) -> bytes | None:
    """The key's latest value (a record with a null value deletes the key): its bytes,
    or, for a typed value of a schema'd topic (a view's ``value_format="typed"``), its
    compact JSON text (``_json_default`` says how it writes bytes, times and decimals)."""
    value = record.get("value")
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode()


def count(state: bytes | None, record: dict[str, Any]) -> bytes:
    """How many records the key has had, as decimal text."""
    return b"%d" % (int(state or b"0") + 1)


def _json_default(value: object) -> Any:
    """A JSON form of what ``json`` cannot write: bytes as base64, times as ISO-8601
    (an aware one in UTC with ``Z``), durations as microseconds, decimals as numbers."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, datetime.date | datetime.time | datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value // datetime.timedelta(microseconds=1)
    if isinstance(value, decimal.Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    raise TypeError(f"a value of type {type(value).__name__} has no JSON form")
