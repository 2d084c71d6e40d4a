"""Global schema ids, as a Schema Registry hands out: one id per distinct schema.

The same (kind, canonical text) always has the same id, whichever topic or subject
uses it, and an id is never reused. Ids are kept in ``schemas/ids.json`` in the data
directory, replaced atomically when a new one is allocated (rare: once per distinct
schema), so a restart gives every schema the id it had.
"""

from __future__ import annotations

import json
import os
import threading

from odradek.errors import StorageError
from odradek.files import write_json_atomically


class SchemaIds:
    def __init__(self, directory: str) -> None:
        self._path = os.path.join(directory, "ids.json")
        self._lock = threading.Lock()
        self._by_id: dict[int, tuple[str, str]] = {}
        self._by_schema: dict[tuple[str, str], int] = {}
        os.makedirs(directory, exist_ok=True)
        if os.path.exists(self._path):
            try:
                with open(self._path) as handle:
                    stored = json.load(handle)
            except (OSError, ValueError) as exc:
                raise StorageError(f"cannot read schema ids from {self._path}: {exc}") from exc
            for entry in stored["schemas"]:
                key = (str(entry["kind"]), str(entry["text"]))
                self._by_id[int(entry["id"])] = key
                self._by_schema[key] = int(entry["id"])

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
                raise StorageError(f"cannot write schema ids to {self._path}: {exc}") from exc
            return schema_id

    def get(self, schema_id: int) -> tuple[str, str] | None:
        return self._by_id.get(schema_id)

    def _save(self) -> None:
        entries = [{"id": i, "kind": k, "text": t} for i, (k, t) in sorted(self._by_id.items())]
        write_json_atomically(self._path, {"schemas": entries})
