"""Materialized key views and synchronous commit (decision 0019).

A view keeps a key -> state table up to date from the log: ``manager.py`` holds the
views of a node, ``view.py`` one view and its applier, ``table.py`` the table and its
checkpoints, ``definition.py`` what a view is; ``waits.py`` is ``append(...,
wait_for=[...])``: an append acknowledged once named groups acked it or views applied it.
"""

from odradek.views.manager import ViewManager
from odradek.views.waits import Waits

__all__ = ["ViewManager", "Waits"]
