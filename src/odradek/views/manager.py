"""``Node.views``: the materialized views of a data directory.

Each view lives in ``views/<name>/`` behind the storage seam (the engine's disk, so an
object-store node journals it like the rest): ``definition`` (a checksummed JSON
document in two copies, storage/documents.py) and ``table`` (the checkpoint: states and
positions in one atomic write, table.py). A directory without a definition is what a
crash left of a create or a delete, and is removed when the node opens.

Creating a view writes its definition, then starts its applier (view.py) from the
first record of every topic its pattern matches; deleting stops the applier, then
removes the directory. The engine's arrival hook (node.py) wakes the appliers of the
views that read a topic when its records become durable or it is created, and makes
them forget a deleted topic; the engine closing stops every applier after a last
checkpoint.

Lock: the manager's ``_lock`` guards the dict of views only; it is never held while
a view applies, checkpoints or stops.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from odradek import limits
from odradek.engine.arrivals import CLOSING, CREATED, DELETED, DURABLE, Arrival
from odradek.engine.topic import normalize_key
from odradek.errors import ClosedError, InvalidRequest, OdradekError, StorageError, ViewNotFound
from odradek.names import compile_pattern
from odradek.storage.disk import describe_os_error, remove_leftovers
from odradek.storage.documents import Document
from odradek.views.definition import (
    VALUE_FORMAT_DEFAULT,
    ViewDefinition,
    check_pattern,
    check_value_format,
    check_view_name,
    import_path_of,
    resolve,
)
from odradek.views.view import STATUS_FAILED, Topics, View

if TYPE_CHECKING:
    from odradek.engine.engine import Engine

DEFINITION_FILE = "definition"


class ViewManager:
    def __init__(self, engine: Engine, on_applied: Callable[[], None]) -> None:
        """``on_applied``: called (holding no lock) whenever a view applied a batch or
        stopped, for the appends waiting on views (waits.py)."""
        self._engine = engine
        self._disk = engine.disk
        self._on_applied = on_applied
        self.directory = os.path.join(engine.path, "views")
        self._lock = threading.Lock()
        self._views: dict[str, View] = {}
        self._matchers: dict[str, Callable[[str], bool]] = {}
        # Where the views read their topics (``span``): the engine unless spanned.
        self._topics: Topics = engine
        self._poll_seconds = limits.view_checkpoint_seconds
        self.closed = False
        try:
            self._disk.makedirs(self.directory)
            names = sorted(self._disk.listdir(self.directory))
        except OSError as exc:
            raise StorageError(f"cannot use {self.directory}: {describe_os_error(exc)}") from exc
        for name in names:
            self._load(name)

    def _load(self, name: str) -> None:
        directory = os.path.join(self.directory, name)
        document = Document(self._disk, os.path.join(directory, DEFINITION_FILE), sync=self._engine.fsync)
        try:
            data = document.load()
        except OdradekError as exc:  # both copies damaged: keep the files, report it
            data = None
            definition = ViewDefinition(name, ">", "odradek.views.reducers:latest")
            view = self._made(View(definition, self._engine, directory, self._on_applied))
            view.error, view.status = f"the view's definition is damaged: {exc.message}", STATUS_FAILED
            self._views[name] = view
            return
        remove_leftovers(self._disk, directory)  # temporary files of an interrupted write
        if data is None:  # a create or delete that a crash interrupted
            self._disk.rmtree(directory)
            return
        definition = ViewDefinition.from_json(data)
        view = self._made(View(definition, self._engine, directory, self._on_applied))
        try:
            view.load()
        except OdradekError as exc:
            view.error, view.status = f"the view's checkpoint cannot be read: {exc.message}", STATUS_FAILED
        self._views[name] = view
        self._matchers[name] = compile_pattern(definition.pattern)
        if view.status != STATUS_FAILED:
            view.start()

    # -- the API ----------------------------------------------------------------------------

    def create(
        self,
        name: str,
        pattern: str,
        reducer: object,
        key: object = None,
        *,
        exist_ok: bool = False,
        value_format: object = None,
    ) -> dict[str, Any]:
        """Define a view and start applying it (see ``Client.create_view``).

        ``value_format`` None is "not said": a new view gets the default (typed), and
        ``exist_ok`` accepts a view of that name whatever its format (a program written
        before views had the choice creates its views as it did, with ``exist_ok``)."""
        definition = ViewDefinition(
            name=check_view_name(name),
            pattern=check_pattern(pattern),
            reducer=import_path_of(reducer, "reducer"),
            key=None if key is None else import_path_of(key, "key function"),
            created_at=time.time(),
            value_format=VALUE_FORMAT_DEFAULT if value_format is None else check_value_format(value_format),
        )
        resolve(definition.reducer, "reducer")  # refused now, not by the applier later
        if definition.key is not None:
            resolve(definition.key, "key function")
        with self._lock:
            self._check_open()
            existing = self._views.get(name)
            if existing is not None:
                same = existing.definition
                if (
                    exist_ok
                    and (same.pattern, same.reducer, same.key)
                    == (definition.pattern, definition.reducer, definition.key)
                    and value_format in (None, same.value_format)
                ):
                    return existing.describe()
                raise InvalidRequest(
                    f"view {name!r} exists already (pattern {same.pattern!r}, reducer {same.reducer!r}, "
                    f"value_format {same.value_format!r}); delete it first to define it again"
                )
            if len(self._views) >= limits.views_max:
                raise InvalidRequest(f"this node has {len(self._views)} views, the most it keeps (views_max)")
            directory = os.path.join(self.directory, name)
            try:
                self._disk.rmtree(directory)
                self._disk.makedirs(directory)
                Document(self._disk, os.path.join(directory, DEFINITION_FILE), sync=self._engine.fsync).save(
                    definition.to_json()
                )
            except OSError as exc:
                self._disk.rmtree(directory)
                raise StorageError(f"cannot write view {name!r}: {describe_os_error(exc)}") from exc
            view = self._made(View(definition, self._engine, directory, self._on_applied))
            self._views[name] = view
            self._matchers[name] = compile_pattern(definition.pattern)
        view.start()
        return view.describe()

    def delete(self, name: str) -> None:
        with self._lock:
            self._check_open()
            view = self._views.pop(check_view_name(name), None)
            self._matchers.pop(name, None)
        if view is None:
            raise _not_found(name)
        view.stop(checkpoint=False)
        document = Document(
            self._disk, os.path.join(view.directory, DEFINITION_FILE), sync=self._engine.fsync
        )
        try:
            document.delete()  # first: a crash after it leaves a directory removed at open
            self._disk.rmtree(view.directory)
        except OSError as exc:
            raise StorageError(f"cannot delete view {name!r}: {describe_os_error(exc)}") from exc
        self._on_applied()

    def view(self, name: str) -> View:
        with self._lock:
            self._check_open()
            view = self._views.get(check_view_name(name))
        if view is None:
            raise _not_found(name)
        return view

    def span(self, topics: Topics, poll_seconds: float) -> None:
        """Read every view's topics through ``topics`` from now on (every cell's, over
        a cluster whose topics are spread over cells: decision 0041), looking for new
        records at least every ``poll_seconds`` (other cells' arrivals wake no view)."""
        with self._lock:
            self._topics, self._poll_seconds = topics, poll_seconds
            views = list(self._views.values())
        for view in views:
            self._made(view).wake()

    def _made(self, view: View) -> View:
        view.topics, view.poll_seconds = self._topics, self._poll_seconds
        return view

    def list(self) -> list[str]:
        with self._lock:
            return sorted(self._views)

    def get(self, name: str, key: object) -> bytes | None:
        return self.view(name).get(normalize_key(key))

    def scan(
        self, name: str, prefix: object = b"", *, after: object = None, limit: int | None = None
    ) -> pa.Table:
        view = self.view(name)
        rows = limits.view_scan_rows_max if limit is None else limit
        if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= limits.view_scan_rows_max:
            raise InvalidRequest(f"limit must be an int from 1 to {limits.view_scan_rows_max}, got {limit!r}")
        start = _prefix(prefix)
        return view.scan(start, None if after is None else normalize_key(after), rows)

    def describe(self, name: str) -> dict[str, Any]:
        return self.view(name).describe()

    def matches(self, name: str, topic: str) -> bool:
        with self._lock:
            matcher = self._matchers.get(name)
        return matcher is not None and matcher(topic)

    # -- the engine's news --------------------------------------------------------------------

    def arrived(self, arrival: Arrival) -> None:
        if arrival.kind == CLOSING:
            self.close()
            return
        if arrival.topic is None or arrival.kind not in (DURABLE, CREATED, DELETED):
            return
        with self._lock:
            views = [self._views[name] for name, match in self._matchers.items() if match(arrival.topic)]
        for view in views:
            if arrival.kind == DELETED:
                view.forget(arrival.topic)
            else:
                view.wake()

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            views = list(self._views.values())
        for view in views:
            try:
                view.stop()
            except (OSError, OdradekError) as exc:  # its last applies are applied again at the next open
                view.error = f"the last checkpoint failed: {exc}"
        self._on_applied()

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError("the engine is closed")


def _not_found(name: str) -> ViewNotFound:
    return ViewNotFound(f"there is no view {name!r} (create_view makes one)", name)


def _prefix(prefix: object) -> bytes:
    if prefix is None or prefix == b"" or prefix == "":
        return b""
    return normalize_key(prefix)
