"""Command handlers imported when their command runs, not when the parser is built.

``odradek --help`` and a mistyped option must not pay for pyarrow, NumPy or the Flight
client (docs/cli.md, start time). The parser therefore names each handler through a
:class:`Handlers` stand-in for its module: ``commands.topic_list`` is a
:class:`Handler` that imports ``odradek.cli.commands`` and calls ``topic_list`` only
once the command runs. :func:`resolve` imports it at once (the tests check that every
handler of the parser exists).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable


class Handler:
    """The function ``name`` of module ``module``, imported on the first call."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    def __repr__(self) -> str:
        return f"{self.module}.{self.name}"

    def __call__(self, args: argparse.Namespace) -> int:
        return resolve(self)(args)


def resolve(handler: Handler) -> Callable[[argparse.Namespace], int]:
    module = importlib.import_module(handler.module)
    function: Callable[[argparse.Namespace], int] = getattr(module, handler.name)
    return function


class Handlers:
    """Stands for a module of command functions: each attribute is a :class:`Handler`."""

    def __init__(self, module: str) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Handler:
        if name.startswith("__"):
            raise AttributeError(name)
        return Handler(self._module, name)
