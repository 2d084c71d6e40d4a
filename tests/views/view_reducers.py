"""Reducers and key functions the view tests name by import path (this directory is on
sys.path in the tests and on PYTHONPATH of the servers they start)."""

from __future__ import annotations

import json
import threading
from typing import Any


def total(state: bytes | None, record: dict[str, Any]) -> bytes:
    """The sum of the records' JSON ``amount``: not idempotent (counts a record twice if
    it is applied twice)."""
    amount = int(json.loads(record["value"])["amount"])
    return b"%d" % (int(state or b"0") + amount)


def orders(state: bytes | None, record: dict[str, Any]) -> bytes:
    """The set of order ids (the record keys) of a customer, as sorted JSON: idempotent,
    so applying a record twice gives the same state."""
    ids = set(json.loads(state)) if state else set()
    ids.add(record["key"].decode())
    return json.dumps(sorted(ids)).encode()


def customer(record: dict[str, Any]) -> bytes | None:
    """The view key of an order: its JSON ``customer``."""
    found = json.loads(record["value"]).get("customer")
    return None if found is None else str(found).encode()


def fails_on_poison(state: bytes | None, record: dict[str, Any]) -> bytes:
    """Raises on a record whose value is ``poison``."""
    if record["value"] == b"poison":
        raise ValueError("poison")
    return bytes(record["value"])


def not_bytes(state: bytes | None, record: dict[str, Any]) -> Any:
    """Returns what no state can be."""
    return 42


def trail(state: bytes | None, record: dict[str, Any]) -> bytes:
    """Every value of the key in the order applied, comma-separated: order-sensitive."""
    value = bytes(record["value"])
    return value if state is None else state + b"," + value


# A reducer that holds the applier until a test opens the gate (embedded views only:
# the gate lives in the test's process).
GATE = threading.Event()
ENTERED = threading.Event()
LEFT = threading.Event()


def held(state: bytes | None, record: dict[str, Any]) -> bytes:
    """Waits (at most a minute) for ``GATE``; then the latest value."""
    ENTERED.set()
    GATE.wait(60.0)
    LEFT.set()
    return bytes(record["value"])


def typed_total(state: bytes | None, record: dict[str, Any]) -> bytes:
    """The sum of the typed values' ``amount`` (a view with value_format "typed" over a
    schema'd topic: ``record["value"]`` is a dict)."""
    return b"%d" % (int(state or b"0") + record["value"]["amount"])


def typed_customer(record: dict[str, Any]) -> bytes:
    """The view key of a typed order: its ``customer`` field."""
    return str(record["value"]["customer"]).encode()


def value_kind(state: bytes | None, record: dict[str, Any]) -> bytes:
    """What the reducer was given as the value: its type's name, then the value."""
    value = record["value"]
    shown = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True).encode()
    return type(value).__name__.encode() + b" " + shown


def latest_by_record(state: bytes | None, record: dict[str, Any]) -> bytes | None:
    """The built-in ``latest`` under another name, so the view folds record by record
    (the built-in takes the batch path): the two views must hold the same states."""
    from odradek.views import reducers

    return reducers.latest(state, record)
