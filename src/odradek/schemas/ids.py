"""Global schema ids, as a Schema Registry hands out: one id per distinct schema.

The same (kind, canonical text) always has the same id, whichever topic or subject
uses it, and an id is never reused. Ids are kept in ``schemas/ids.json`` in the data
directory, replaced atomically when a new one is allocated (rare: once per distinct
schema), so a restart gives every schema the id it had.
"""

from __future__ import annotations

import os
import threading

from odradek.errors import DataDamaged, StorageError
from odradek.storage.disk import LOCAL, Disk, describe_os_error
from odradek.storage.documents import Document


class SchemaIds:
    def __init__(self, directory: str, disk: Disk = LOCAL, *, fsync: bool = True) -> None:
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
            schema_id = max(self._by_id, default=0) + 1
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
