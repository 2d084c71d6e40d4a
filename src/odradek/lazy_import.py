"""Modules imported on their first use: for heavy modules that only some paths need.

``pyarrow.compute`` costs about 50 ms to import (its function registry and docstrings);
a command such as ``odradek topic list`` never calls it, yet imports the modules that
do. Such modules name it through :func:`lazy_module`, typed as the real module for
mypy::

    if TYPE_CHECKING:
        import pyarrow.compute as pc
    else:
        pc = lazy_module("pyarrow.compute")
"""

from __future__ import annotations

import importlib


class LazyModule:
    """The module ``name``, imported on the first attribute access."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> object:
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._name}>"


def lazy_module(name: str) -> LazyModule:
    """A stand-in for module ``name`` that imports it when first used."""
    return LazyModule(name)
