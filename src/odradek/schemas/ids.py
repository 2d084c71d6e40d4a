"""Global schema ids, as a Schema Registry hands out: one id per distinct schema.

The same (kind, canonical text) always has the same id, whichever topic or subject
uses it, and an id is never reused. Ids are kept in ``schemas/ids.json`` in the data
directory, replaced atomically when a new one is allocated (rare: once per distinct
schema), so a restart gives every schema the id it had.

An engine hands out ids from a range of :data:`SPAN` ids starting past its ``base``: 0
for a single node and a cluster's home cell, ``n * SPAN`` for cell ``_cell.<n>`` of a
cluster whose topics are spread over cells (decision 0034), so that ids are unique in
the cluster and say which cell allocated them. 64 cells of 2**24 ids stay within the
positive 32-bit ids Confluent's clients take.
"""

from __future__ import annotations

import os
import threading

from odradek.errors import DataDamaged, InvalidRequest, StorageError
from odradek.storage.disk import LOCAL, Disk, describe_os_error
from odradek.storage.documents import Document

# How many ids one engine (one cell) may hand out: its ids are base + 1 .. base + SPAN - 1.
SPAN = 1 << 24


class SchemaIds:
    def __init__(self, directory: str, disk: Disk = LOCAL, *, fsync: bool = True, base: int = 0) -> None:
        if isinstance(base, bool) or not isinstance(base, int) or base < 0 or base % SPAN:
            raise InvalidRequest(f"a schema id base is a multiple of {SPAN} (>= 0), not {base!r}")
        self._base = base
        self._path = os.path.join(directory, "ids.json")
        self._lock = threading.Lock()
        self._by_id: dict[int, tuple[str, str]] = {}
        self._by_schema: dict[tuple[str, str], int] = {}
        try:
            if not disk.isdir(directory):
                disk.makedirs(directory)
        except OSError as exc:
            raise StorageError(f"cannot use {directory}: {describe_os_error(exc)}") from exc
        # Two checksummed copies: ids cannot be rebuilt, and topics and subjects name them.
        self._document = Document(disk, self._path, sync=fsync)
        stored = self._document.load()
        if stored is not None:
            try:
                for entry in stored["schemas"]:
                    key = (str(entry["kind"]), str(entry["text"]))
                    self._by_id[int(entry["id"])] = key
                    self._by_schema[key] = int(entry["id"])
            except (KeyError, TypeError, ValueError) as exc:
                raise DataDamaged(f"schema ids in {self._path} are not valid: {exc}") from exc

    def id_for(self, kind: str, text: str) -> int:
        """The schema's id, allocated and made durable on first use."""
        key = (kind, text)
        with self._lock:
            known = self._by_schema.get(key)
            if known is not None:
                return known
            # Past the newest id of the range (ids of a range given before are kept).
            schema_id = max((i for i in self._by_id if i > self._base), default=self._base) + 1
            if schema_id >= self._base + SPAN:
                raise InvalidRequest(f"no schema id left: {SPAN - 1} distinct schemas have ids here already")
            self._by_id[schema_id] = key
            self._by_schema[key] = schema_id
            try:
                self._save()
            except OSError as exc:
                del self._by_id[schema_id], self._by_schema[key]
                raise StorageError(
                    f"cannot write schema ids to {self._path}: {describe_os_error(exc)}"
                ) from exc
            return schema_id

    def get(self, schema_id: int) -> tuple[str, str] | None:
        return self._by_id.get(schema_id)

    def _save(self) -> None:
        entries = [{"id": i, "kind": k, "text": t} for i, (k, t) in sorted(self._by_id.items())]
        self._document.save({"schemas": entries})
