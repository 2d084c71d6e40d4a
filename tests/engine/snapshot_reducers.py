"""Reducers the snapshot tests register on topics by import path
(``snapshot_reducers:total``); the tests put this directory on ``sys.path``."""

from __future__ import annotations

import json
from typing import Any


def total(state: bytes | None, record: dict[str, Any]) -> bytes:
    """The sum of the values (decimal text) so far."""
    return b"%d" % (int(state or b"0") + int(record["value"]))


def typed_total(state: bytes | None, record: dict[str, Any]) -> bytes:
    """``total`` for a schema'd topic: its values are dicts, ``n`` an int."""
    return b"%d" % (int(state or b"0") + record["value"]["n"])


def typed_fields(state: bytes | None, record: dict[str, Any]) -> bytes:
    """For a schema'd topic: the sum of ``n``, and each value's fields and ``gift``."""
    folded = json.loads(state) if state else {"total": 0, "fields": [], "gifts": []}
    folded["total"] += record["value"]["n"]
    folded["fields"].append(sorted(record["value"]))
    folded["gifts"].append(record["value"].get("gift"))
    return json.dumps(folded).encode()


def picky(state: bytes | None, record: dict[str, Any]) -> bytes:
    """``total``, but a value ``bad`` raises (a reducer with a bug)."""
    if record["value"] == b"bad":
        raise ValueError("cannot fold 'bad'")
    return total(state, record)


def wrong_type(state: bytes | None, record: dict[str, Any]) -> Any:
    """Returns an int, not bytes."""
    return 7


def nothing(state: bytes | None, record: dict[str, Any]) -> None:
    """Keeps no state: nothing is stored."""
    return None


not_callable = 3
