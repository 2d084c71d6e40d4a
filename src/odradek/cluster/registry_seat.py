"""What the Schema Registry door asks of its cluster agent with several cells (decision
0034): the cells, which cell holds a topic or handed out a schema id, and where the
agent serving a cell listens with its registry door (protocols/registry/cells.py's
``RegistryCells``). Every method may block on etcd (a topic this agent's placement view
does not know yet is looked up there), at most the agent's retry time."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from odradek.cluster.keys import cell_names, cell_of_schema_id

if TYPE_CHECKING:
    from odradek.cluster.agent import ClusterAgent


class RegistrySeat:
    """``agent()`` is the agent (Unavailable while it is joining its cluster)."""

    def __init__(self, agent: Callable[[], ClusterAgent]) -> None:
        self.agent = agent

    def cells(self) -> list[str]:
        return list(cell_names(self.agent().cell_count()))

    def cell_of(self, topic: str) -> str:
        return self.agent().cell_of(topic)

    def cell_of_schema_id(self, schema_id: int) -> str | None:
        return cell_of_schema_id(schema_id, self.agent().cell_count())

    def door_of(self, cell: str) -> tuple[str, int] | None:
        return self.agent().cell_door("registry", cell)
