"""The stores of a cluster's cells (decision 0032): each cell's under the cluster's
store prefix (cluster/keys.py, ``cell_store_prefix``), all on one backend."""

from __future__ import annotations

from odradek.cluster.keys import cell_store_prefix
from odradek.storage.objects import ObjectStore


def sibling_cell_store(store: ObjectStore, cell: str, other: str) -> ObjectStore:
    """The store of cell ``other`` on the backend of ``store``, cell ``cell``'s: what an
    adopter gives ``Engine.adopt_topic`` to take a topic another cell released."""
    own = cell_store_prefix(cell)
    root = store.absolute("")  # "/<cluster prefix>/<own>"
    if own:
        if not root.endswith("/" + own):
            raise ValueError(f"store {root!r} is not the store of cell {cell}")
        root = root[: len(root) - len(own)]
    return store.at(root + cell_store_prefix(other))


def cell_store(root: ObjectStore, cell: str) -> ObjectStore:
    """The store of ``cell`` under ``root``, the cluster's store (the home cell's is
    ``root`` itself)."""
    prefix = cell_store_prefix(cell)
    return root.child(prefix) if prefix else root
