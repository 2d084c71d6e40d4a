"""A reducer the cluster view tests give their agents by import path
(``cluster_view_reducers:values``); the tests put this directory on the agents'
``PYTHONPATH``."""

from __future__ import annotations

import json
from typing import Any


def values(state: bytes | None, record: dict[str, Any]) -> bytes:
    """Every value the key has had, as a sorted JSON list: a record applied twice
    leaves it as it was, one skipped is missing from it."""
    seen = set(json.loads(state)) if state else set()
    seen.add(bytes(record["value"]).decode())
    return json.dumps(sorted(seen)).encode()
