"""A view's key -> state table: a sorted Arrow table plus a small delta of changes.

Rules
-----
* The **base** is two Arrow binary arrays, ``keys`` (sorted, unique) and ``states``,
  as the last merge left them. The **delta** is a dict of the keys changed since:
  ``key -> state``, ``None`` meaning the reducer deleted the key.
* ``get`` looks in the delta, then binary-searches the base (about 20 probes for a
  million keys). ``scan`` takes the base's slice of a prefix (two binary searches) and
  overlays the delta's keys of that prefix.
* A **merge** folds the delta into the base with Arrow compute (``is_in``, ``concat``,
  ``sort_indices``): no per-key Python. It runs when the delta holds
  ``view_delta_entries_max`` keys and before every checkpoint.
* ``nbytes`` counts keys and states of both parts (the delta approximately): the bound
  ``view_bytes_max`` is checked against it after each applied batch.
* A **checkpoint** is one blob: a header with the per-topic positions and a CRC-32C,
  then the merged table as an Arrow IPC stream. It is written with one atomic write
  (storage seam), so positions and states are never out of step: a crash re-applies
  from the positions of the last checkpoint (at least once), never skips.

Not thread-safe: the view (manager.py) holds its lock around every call.
"""

from __future__ import annotations

import bisect
import json
import struct
from collections.abc import Sequence
from typing import Any

import crc32c
import pyarrow as pa
import pyarrow.compute as pc

from odradek import limits
from odradek.errors import DataDamaged

SCHEMA = pa.schema([pa.field("key", pa.binary(), nullable=False), pa.field("state", pa.binary())])

# The checkpoint blob: magic, format version, CRC-32C of everything after the header,
# length of the JSON positions; then the JSON, then the Arrow IPC stream.
_MAGIC = b"ODVT"
_FORMAT = 1
_HEADER = struct.Struct(">4sBII")


class _Keys(Sequence[bytes]):
    """The base's keys as a sequence ``bisect`` can search (one scalar per probe)."""

    def __init__(self, keys: pa.BinaryArray) -> None:
        self._keys = keys

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, index: Any) -> Any:
        return self._keys[index].as_py()


class ViewTable:
    def __init__(self) -> None:
        self.keys: pa.Array = pa.array([], pa.binary())
        self.states: pa.Array = pa.array([], pa.binary())
        self.delta: dict[bytes, bytes | None] = {}
        self._delta_bytes = 0
        self._base_bytes = 0

    # -- reading --------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        if key in self.delta:
            return self.delta[key]
        index = bisect.bisect_left(_Keys(self.keys), key)
        if index < len(self.keys) and self.keys[index].as_py() == key:
            state: bytes | None = self.states[index].as_py()
            return state
        return None

    def scan(self, prefix: bytes, after: bytes | None, limit: int) -> pa.Table:
        """Rows whose key starts with ``prefix`` (and comes after ``after``), in key
        order, at most ``limit``."""
        keys = _Keys(self.keys)
        low = bisect.bisect_left(keys, prefix)
        if after is not None and after >= prefix:
            low = max(low, bisect.bisect_right(keys, after))
        high = len(keys) if not prefix else bisect.bisect_left(keys, _prefix_end(prefix), lo=low)
        high = min(high, low + limit + len(self.delta))  # the delta may delete some of them
        base = pa.table([self.keys.slice(low, high - low), self.states.slice(low, high - low)], schema=SCHEMA)
        changed = sorted(
            key for key in self.delta if key.startswith(prefix) and (after is None or key > after)
        )
        if changed:
            overlay = pa.table(
                [pa.array(changed, pa.binary()), pa.array([self.delta[k] for k in changed], pa.binary())],
                schema=SCHEMA,
            )
            kept = base.filter(pc.invert(pc.is_in(base.column("key"), value_set=overlay.column("key"))))
            base = pa.concat_tables([kept, overlay.filter(pc.is_valid(overlay.column("state")))])
            base = base.take(pc.sort_indices(base, sort_keys=[("key", "ascending")]))
        return base.slice(0, limit).combine_chunks()

    def __len__(self) -> int:
        """Keys in the table: the base's, less those the delta deleted, plus its new ones
        (one Arrow ``is_in`` of the delta's keys against the base)."""
        if not self.delta:
            return len(self.keys)
        changed = pa.array(list(self.delta), pa.binary())
        present = pc.is_in(changed, value_set=self.keys).to_pylist()
        alive = [state is not None for state in self.delta.values()]
        added = sum(1 for there, live in zip(present, alive, strict=True) if live and not there)
        removed = sum(1 for there, live in zip(present, alive, strict=True) if there and not live)
        return len(self.keys) + added - removed

    def states_of(self, keys: list[bytes]) -> dict[bytes, bytes | None]:
        """The current state of each of ``keys`` (unique), looked up in one go: the
        delta's, else the base's through one Arrow ``index_in`` (a hash of the base)."""
        found: dict[bytes, bytes | None] = {}
        missing: list[bytes] = []
        for key in keys:
            if key in self.delta:
                found[key] = self.delta[key]
            else:
                missing.append(key)
        if missing and len(self.keys):
            positions = pc.index_in(pa.array(missing, pa.binary()), value_set=self.keys)
            hits = pc.is_valid(positions)
            states = self.states.take(positions.filter(hits)).to_pylist()
            for key, state in zip(
                pa.array(missing, pa.binary()).filter(hits).to_pylist(), states, strict=True
            ):
                found[key] = state
        return found

    @property
    def nbytes(self) -> int:
        return self._base_bytes + self._delta_bytes

    # -- changing ---------------------------------------------------------------------------

    def put(self, key: bytes, state: bytes | None) -> None:
        previous = self.delta.get(key)
        if previous is not None:
            self._delta_bytes -= len(key) + len(previous)
        self.delta[key] = state
        self._delta_bytes += len(key) + (len(state) if state is not None else 0)
        if len(self.delta) >= limits.view_delta_entries_max:
            self.merge()

    def merge(self) -> None:
        """Fold the delta into the sorted base (Arrow compute; see the module rules)."""
        if not self.delta:
            return
        changed = pa.array(list(self.delta), pa.binary())
        states = pa.array(list(self.delta.values()), pa.binary())
        kept = pc.invert(pc.is_in(self.keys, value_set=changed))
        keys = pa.concat_arrays([self.keys.filter(kept), changed.filter(pc.is_valid(states))])
        values = pa.concat_arrays([self.states.filter(kept), states.filter(pc.is_valid(states))])
        order = pc.sort_indices(keys)
        self.keys = keys.take(order)
        self.states = values.take(order)
        self.delta = {}
        self._delta_bytes = 0
        self._base_bytes = self.keys.nbytes + self.states.nbytes

    # -- checkpoints --------------------------------------------------------------------------

    def frozen(self) -> tuple[pa.Array, pa.Array]:
        """The merged table's arrays: immutable, so a checkpoint can encode them while
        the table changes (the view takes this under its lock, encodes outside it)."""
        self.merge()
        return self.keys, self.states

    def encode(self, positions: dict[str, Any]) -> bytes:
        """The checkpoint blob of the merged table and ``positions`` (module rules)."""
        return encode(*self.frozen(), positions)

    @classmethod
    def decode(cls, blob: bytes, where: str) -> tuple[ViewTable, dict[str, Any]]:
        """The table and positions of a checkpoint blob; DataDamaged saying what is wrong."""
        if len(blob) < _HEADER.size:
            raise DataDamaged(f"{where} is damaged: {len(blob)} bytes, shorter than its header")
        magic, version, crc, text_length = _HEADER.unpack_from(blob)
        if magic != _MAGIC or version != _FORMAT:
            raise DataDamaged(f"{where} is not a view checkpoint of format {_FORMAT}")
        body = blob[_HEADER.size :]
        if crc32c.crc32c(body) != crc or text_length > len(body):
            raise DataDamaged(f"{where} is damaged: its checksum does not match its contents")
        positions = json.loads(body[:text_length])
        table = pa.ipc.open_stream(pa.py_buffer(body[text_length:])).read_all()
        view = cls()
        if table.num_rows:
            view.keys = table.column("key").combine_chunks()
            view.states = table.column("state").combine_chunks()
        view._base_bytes = view.keys.nbytes + view.states.nbytes
        return view, dict(positions)


def encode(keys: pa.Array, states: pa.Array, positions: dict[str, Any]) -> bytes:
    """The checkpoint blob of a merged table's arrays and ``positions`` (module rules)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SCHEMA) as writer:
        writer.write_table(pa.table([keys, states], schema=SCHEMA))
    text = json.dumps(positions, separators=(",", ":")).encode()
    body: bytes = text + bytes(sink.getvalue().to_pybytes())
    header: bytes = _HEADER.pack(_MAGIC, _FORMAT, crc32c.crc32c(body), len(text))
    return header + body


def _prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key that starts with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\xff" * (len(prefix) + limits.key_bytes_max)  # nothing sorts above it
    return stripped[:-1] + bytes([stripped[-1] + 1])
