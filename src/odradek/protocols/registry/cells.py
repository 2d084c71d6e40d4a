"""The Schema Registry door over a cluster whose topics are spread over cells (decision 0034).

Every agent listens with the registry door. Each cell it serves answers with a
:class:`~odradek.protocols.registry.routes.Registry` of its own, over the cell's engine
and a subject store in the cell's storage; a request is answered by the cell it
concerns, here when this agent serves that cell, else by the agent that does, to which
the door forwards it (as a Confluent registry's followers forward to their leader):

* a subject (``/subjects/S/...``, ``/compatibility/subjects/S/...``, ``/config/S``,
  ``/mode/S``) naming a topic's value (``<topic>-value``) is its topic's cell's; a
  topic placed nowhere yet is the home cell's, whose registry places it there when a
  registration creates it; every other subject is the home cell's;
* a schema id (``/schemas/ids/N/...``) is the cell that handed it out: each cell hands
  out ids from a range of its own (schemas/ids.py);
* ``GET /subjects`` is every cell's: the answers are merged (a sorted union);
* ``PUT`` and ``DELETE /config`` (the default compatibility, which each cell's
  registry reads when a topic gets its first schema) go to every cell, so that each
  holds it; the home cell's answer is given once every cell took it;
* everything else (the global ``config`` and ``mode`` read, schema types, views) is
  the home cell's.

A forwarded request carries the client's own credentials and the cell it is for
(:data:`CELL_HEADER`): the agent receiving it authenticates, authorizes and answers it
as any request, with that cell's registry; if it does not serve that cell (its owner
changed meanwhile) it answers 503, which clients retry. The header only chooses which
of the receiving agent's cells answers, never what the principal may do.

This module decides where a request goes and merges answers, without IO; the HTTP
shell (server.py) answers locally or forwards.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from odradek import limits
from odradek.cluster.placement import create_placed
from odradek.errors import InvalidRequest, Unavailable
from odradek.names import validate_topic_name
from odradek.protocols.registry.routes import Registry, Response, topic_of

if TYPE_CHECKING:
    from odradek.console.api import ConsoleApi
    from odradek.engine.replica import Replicas
    from odradek.protocols.http_api import HttpApi

# The header naming the cell a forwarded request is for.
CELL_HEADER = "X-Odradek-Cell"

# Where a request goes.
ONE = "one"  # one cell
MERGE = "merge"  # every cell; their listings merged
EVERY = "every"  # every cell; each must take it


@dataclasses.dataclass(frozen=True)
class Route:
    """Where a request is answered: ``kind`` ONE (``cell``, or the cell of ``topic``,
    or of ``schema_id``; the home cell when none is set), MERGE or EVERY."""

    kind: str
    topic: str | None = None
    schema_id: int | None = None


HOME = Route(ONE)


def route(method: str, path: str, prefix: str = "") -> Route:
    """Where a registry request goes. ``prefix`` is what the principal's namespace puts
    before its subjects' names (security/tenants.py; "" outside a tenant)."""
    segments = [urllib.parse.unquote(part) for part in path.strip("/").split("/") if part]
    method = method.upper()
    if segments == ["subjects"]:
        return Route(MERGE) if method == "GET" else HOME
    if segments == ["config"]:
        return Route(EVERY) if method in ("PUT", "DELETE") else HOME
    subject = None
    if segments[:1] == ["subjects"] and len(segments) >= 2:
        subject = segments[1]
    elif segments[:2] == ["compatibility", "subjects"] and len(segments) >= 3:
        subject = segments[2]
    elif segments[:1] in (["config"], ["mode"]) and len(segments) == 2:
        subject = segments[1]
    if subject is not None:
        topic = topic_of(prefix + subject)
        if topic is None:
            return HOME
        try:
            validate_topic_name(topic)
        except InvalidRequest:
            return HOME  # the registry refuses it, wherever it is asked
        return Route(ONE, topic=topic)
    if segments[:2] == ["schemas", "ids"] and len(segments) >= 3 and segments[2].isdigit():
        return Route(ONE, schema_id=int(segments[2]))
    return HOME


def merge(route: Route, answers: Sequence[Response]) -> Response:
    """One answer from each cell's (the home cell's first): the first refusal if any
    cell refused; else for MERGE the sorted union of the listings, for EVERY the home
    cell's answer."""
    for answer in answers:
        if answer.status >= 400:
            return answer
    if route.kind != MERGE:
        return answers[0]
    names: set[Any] = set()
    for answer in answers:
        try:
            listing = json.loads(answer.body)
        except ValueError:
            return Response.error(502, 50001, "an agent answered a subject listing that is not JSON")
        if not isinstance(listing, list):
            return Response.error(502, 50001, "an agent answered a subject listing that is not a list")
        names.update(name for name in listing if isinstance(name, str))
    return Response(200, json.dumps(sorted(names)).encode(), answers[0].content_type)


class RegistryCells(Protocol):
    """What the registry door asks of its cluster agent (cluster/registry_seat.py)."""

    def cells(self) -> list[str]:
        """The cluster's cells, the home cell first."""

    def cell_of(self, topic: str) -> str:
        """The cell holding ``topic`` (the home cell for a topic placed nowhere)."""

    def cell_of_schema_id(self, schema_id: int) -> str | None:
        """The cell that hands out ``schema_id``; None when none does."""

    def door_of(self, cell: str) -> tuple[str, int] | None:
        """Where the agent serving ``cell`` listens with its registry door (this agent's
        too); None while no agent is known to serve it."""


class CellRegistries:
    """The registries of the cells this agent serves, each added as the agent opens its
    cell and removed as it closes it, and the cluster's view the door routes with."""

    def __init__(
        self, cluster: RegistryCells, cluster_status: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        self.cluster = cluster
        self._lock = threading.Lock()
        self._registries: dict[str, Registry] = {}
        # Each served cell's HTTP API and console (decision 0036); the console's cluster
        # page shows ``cluster_status()``.
        self._apis: dict[str, tuple[HttpApi, ConsoleApi]] = {}
        # Set as the listener closes: the tails of every cell this agent merges end.
        self.draining = threading.Event()
        self._cluster_status = cluster_status
        # The readers of the cells' stores: a read of another cell's topic is answered
        # from its sealed segments when they hold it (decision 0042); None: forwarded.
        self.replicas: Replicas | None = None

    def serve(self, cell: str, registry: Registry, api: HttpApi | None = None) -> Callable[[], None]:
        """Answer ``cell``'s requests with ``registry`` (and the HTTP API's and the
        console's with ``api``) from now on; returns what stops it, which ends the API's
        event streams (waiting at most ``limits.http_sse_drain_seconds_max``)."""
        from odradek.console.api import ConsoleApi

        served = (api, ConsoleApi(api, self._cluster_status)) if api is not None else None
        with self._lock:
            self._registries[cell] = registry
            if served is not None:
                self._apis[cell] = served

        def stop() -> None:
            with self._lock:
                if self._registries.get(cell) is registry:
                    del self._registries[cell]
                if served is not None and self._apis.get(cell) is served:
                    del self._apis[cell]
            if api is not None:
                api.drain(limits.http_sse_drain_seconds_max)

        return stop

    def local(self, cell: str) -> Registry | None:
        """The registry of ``cell`` if this agent serves it."""
        with self._lock:
            return self._registries.get(cell)

    def local_api(self, cell: str) -> tuple[HttpApi, ConsoleApi] | None:
        """The HTTP API and the console of ``cell`` if this agent serves it."""
        with self._lock:
            return self._apis.get(cell)

    def any_api(self) -> tuple[HttpApi, ConsoleApi] | None:
        """The API of a cell this agent serves, the home cell's if it does (what answers
        the same everywhere: the OpenAPI document, a 404, the cluster page)."""
        cells = self.cluster.cells()
        with self._lock:
            for cell in cells:
                if cell in self._apis:
                    return self._apis[cell]
            return next(iter(self._apis.values()), None)

    def drain(self) -> None:
        """End every served cell's event streams (the listener is closing)."""
        self.draining.set()
        with self._lock:
            apis = [api for api, _ in self._apis.values()]
        for api in apis:
            api.drain(limits.http_sse_drain_seconds_max)

    def targets(self, where: Route) -> list[str]:
        """The cells a request routed ``where`` goes to (the home cell first); a schema
        id no cell hands out goes to the home cell (which answers: not found)."""
        cells = self.cluster.cells()
        if where.kind in (MERGE, EVERY):
            return cells
        if where.topic is not None:
            return [self.cluster.cell_of(where.topic)]
        if where.schema_id is not None:
            cell = self.cluster.cell_of_schema_id(where.schema_id)
            return [cell if cell is not None else cells[0]]
        return cells[:1]


class CellSubjects:
    """A cell's engine as its :class:`Registry` calls it: a creation (a registration
    under a new topic's value subject creates the topic) places the topic in this cell
    first, and drops the placement again when the engine refuses it
    (cluster/placement.py's ``create_placed``)."""

    def __init__(self, engine: Any, claim: Callable[[str], bool], release: Callable[[str], None]) -> None:
        self.engine = engine  # what the views' authorization looks at (authorization.py)
        self._claim = claim
        self._release = release

    def create_topic(self, name: str, **settings: Any) -> Any:
        validate_topic_name(name)  # a name the engine refuses is not placed at all
        if not self._claim(name):  # placed in another cell since the request was routed
            raise Unavailable(f"topic {name!r} was just created in another cell of the cluster; retry")
        engine = self.engine
        return create_placed(
            name,
            lambda: engine.create_topic(name, **settings),
            lambda: name in engine.list_topics(),
            lambda: self._release(name),
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)
