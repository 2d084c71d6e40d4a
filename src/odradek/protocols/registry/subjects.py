"""Subjects that are not a topic's value schema (``<topic>-key``, record-name subjects...).

A subject named ``<topic>-value`` *is* the topic's schema history and lives in the
engine. Every other subject a Schema Registry client registers is kept here: its
versions (schema kind, canonical text, global id), an optional subject-level
compatibility mode, and whether each version was soft-deleted. The registry-wide
default compatibility is kept here too.

Rules:

* Version numbers only grow: a new version is one more than the highest ever given in
  the subject, soft-deleted versions included (as Confluent numbers them).
* A version is first soft-deleted, then may be deleted permanently; a soft-deleted
  version is hidden unless a caller asks for deleted ones.
* The whole store is one JSON file, ``registry/subjects.json`` in the data directory,
  replaced atomically on every change (changes are rare: registrations and config).
* One re-entrant lock guards the store; a caller that must check and then change
  (compatibility check, then register) holds :attr:`SubjectStore.lock` around both.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any

from odradek import defaults
from odradek.errors import StorageError
from odradek.storage.disk import LOCAL, Disk, describe_os_error
from odradek.storage.documents import Document

STORE_DIRECTORY = "registry"
STORE_FILE = "subjects.json"
STORE_FORMAT = 1

# Confluent's default compatibility level for a new registry.
DEFAULT_COMPATIBILITY = defaults.compatibility


class RegistryError(Exception):
    """A refusal in the Schema Registry's own terms: HTTP status, Confluent error code."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(subject: str, version: object) -> RegistryError:
    return RegistryError(404, 40402, f"Version {version} not found in subject '{subject}'.")


@dataclasses.dataclass(frozen=True)
class StoredVersion:
    """One version of a stored subject."""

    subject: str
    version: int
    schema_id: int
    kind: str
    text: str
    deleted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "id": self.schema_id,
            "kind": self.kind,
            "text": self.text,
            "deleted": self.deleted,
        }

    @classmethod
    def from_json(cls, subject: str, data: dict[str, Any]) -> StoredVersion:
        return cls(
            subject=subject,
            version=int(data["version"]),
            schema_id=int(data["id"]),
            kind=str(data["kind"]),
            text=str(data["text"]),
            deleted=bool(data.get("deleted", False)),
        )


@dataclasses.dataclass
class _Subject:
    versions: list[StoredVersion] = dataclasses.field(default_factory=list)
    compatibility: str | None = None
    # The highest version ever given, so that numbers are not reused after a
    # permanent delete of the newest versions.
    last_version: int = 0


class SubjectStore:
    """The stored subjects of one data directory."""

    def __init__(self, data_directory: str, disk: Disk = LOCAL, *, fsync: bool = True) -> None:
        self.directory = os.path.join(data_directory, STORE_DIRECTORY)
        self.path = os.path.join(self.directory, STORE_FILE)
        self.disk = disk
        # Two checksummed copies (storage/documents.py): subjects cannot be rebuilt.
        self._document = Document(disk, self.path, sync=fsync)
        self.lock = threading.RLock()
        self._subjects: dict[str, _Subject] = {}
        self._default_compatibility = DEFAULT_COMPATIBILITY
        self._load()

    # -- reading -----------------------------------------------------------------------

    def names(self, *, include_deleted: bool = False) -> list[str]:
        """Subjects with at least one version (live, or soft-deleted when asked for)."""
        with self.lock:
            return sorted(
                name
                for name, subject in self._subjects.items()
                if any(include_deleted or not version.deleted for version in subject.versions)
            )

    def versions(self, subject: str, *, include_deleted: bool = False) -> list[StoredVersion] | None:
        """The subject's versions, oldest first; None when it has none at all."""
        with self.lock:
            entry = self._subjects.get(subject)
            if entry is None or not entry.versions:
                return None
            return [version for version in entry.versions if include_deleted or not version.deleted]

    def uses_of(self, schema_id: int, *, include_deleted: bool = False) -> list[StoredVersion]:
        """Every stored version whose schema has this id."""
        with self.lock:
            return [
                version
                for entry in self._subjects.values()
                for version in entry.versions
                if version.schema_id == schema_id and (include_deleted or not version.deleted)
            ]

    def compatibility(self, subject: str) -> str | None:
        """The subject-level mode, or None when the subject follows the default."""
        with self.lock:
            entry = self._subjects.get(subject)
            return entry.compatibility if entry is not None else None

    @property
    def default_compatibility(self) -> str:
        with self.lock:
            return self._default_compatibility

    # -- changing ----------------------------------------------------------------------

    def add_version(self, subject: str, kind: str, text: str, schema_id: int) -> StoredVersion:
        """Append a new version; the caller checked compatibility under :attr:`lock`."""
        with self.lock:
            entry = self._subjects.setdefault(subject, _Subject())
            highest = max((version.version for version in entry.versions), default=0)
            added = StoredVersion(subject, max(highest, entry.last_version) + 1, schema_id, kind, text)
            previous_last = entry.last_version
            entry.versions.append(added)
            entry.last_version = added.version
            try:
                self._save()
            except StorageError:
                entry.versions.pop()
                entry.last_version = previous_last
                raise
            return added

    def delete_subject(self, subject: str, *, permanent: bool) -> list[int]:
        """Soft-delete every live version, or (``permanent``) remove soft-deleted ones."""
        with self.lock:
            entry = self._subjects.get(subject)
            if entry is None or not entry.versions:
                raise subject_not_found(subject)
            live = [version for version in entry.versions if not version.deleted]
            if permanent:
                if live:
                    raise RegistryError(
                        404,
                        40405,
                        f"Subject '{subject}' was not deleted first before being permanently deleted.",
                    )
                removed = [version.version for version in entry.versions]
                self._replace(entry, [])
                return removed
            if not live:
                raise RegistryError(404, 40404, f"Subject '{subject}' was soft deleted.")
            kept = [dataclasses.replace(version, deleted=True) for version in entry.versions]
            self._replace(entry, kept)
            return [version.version for version in live]

    def delete_version(self, subject: str, version: int, *, permanent: bool) -> int:
        """Soft-delete one version, or (``permanent``) remove a soft-deleted one."""
        with self.lock:
            entry = self._subjects.get(subject)
            if entry is None or not entry.versions:
                raise subject_not_found(subject)
            found = next((stored for stored in entry.versions if stored.version == version), None)
            if found is None:
                raise version_not_found(subject, version)
            if permanent:
                if not found.deleted:
                    raise RegistryError(
                        404,
                        40407,
                        f"Subject '{subject}' Version {version} was not deleted first before "
                        "being permanently deleted.",
                    )
                kept = [stored for stored in entry.versions if stored.version != version]
            else:
                if found.deleted:
                    raise RegistryError(
                        404, 40406, f"Subject '{subject}' Version {version} was soft deleted."
                    )
                kept = [
                    dataclasses.replace(stored, deleted=True) if stored.version == version else stored
                    for stored in entry.versions
                ]
            self._replace(entry, kept)
            return version

    def set_compatibility(self, subject: str, mode: str | None) -> None:
        """Set (or, with None, clear) the subject-level mode."""
        with self.lock:
            entry = self._subjects.setdefault(subject, _Subject())
            previous = entry.compatibility
            entry.compatibility = mode
            try:
                self._save()
            except StorageError:
                entry.compatibility = previous
                raise

    def set_default_compatibility(self, mode: str) -> None:
        with self.lock:
            previous = self._default_compatibility
            self._default_compatibility = mode
            try:
                self._save()
            except StorageError:
                self._default_compatibility = previous
                raise

    def _replace(self, entry: _Subject, versions: list[StoredVersion]) -> None:
        previous = entry.versions
        entry.versions = versions
        try:
            self._save()
        except StorageError:
            entry.versions = previous
            raise

    # -- the file ----------------------------------------------------------------------

    def _load(self) -> None:
        try:
            stored = self._document.load()
        except OSError as exc:
            raise StorageError(f"cannot read the registry's subjects from {self.path}: {exc}") from exc
        if stored is None:
            return
        try:
            if stored.get("format") != STORE_FORMAT:
                raise ValueError(f"unknown format {stored.get('format')!r}")
            self._default_compatibility = str(stored["compatibility"])
            for name, data in stored["subjects"].items():
                self._subjects[name] = _Subject(
                    versions=[StoredVersion.from_json(name, version) for version in data["versions"]],
                    compatibility=data.get("compatibility"),
                    last_version=int(data.get("last_version", 0)),
                )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"cannot read the registry's subjects from {self.path}: {exc}") from exc

    def _save(self) -> None:
        document = {
            "format": STORE_FORMAT,
            "compatibility": self._default_compatibility,
            "subjects": {
                name: {
                    "versions": [version.to_json() for version in entry.versions],
                    "compatibility": entry.compatibility,
                    "last_version": entry.last_version,
                }
                for name, entry in sorted(self._subjects.items())
                if entry.versions or entry.compatibility is not None
            },
        }
        try:
            if not self.disk.isdir(self.directory):
                self.disk.makedirs(self.directory)
            self._document.save(document)
        except OSError as exc:
            raise StorageError(
                f"cannot write the registry's subjects to {self.path}: {describe_os_error(exc)}"
            ) from exc
