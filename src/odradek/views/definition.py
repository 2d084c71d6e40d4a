"""What a view is: a name, a topic pattern, a reducer and an optional key function.

A view must survive a restart, so its functions are stored as **import paths**
(``"package.module:function"``, decision 0019) and imported by the server that applies
it. A remote client can only name one; the embedded client also takes a callable, which
is stored as its path when importing that path gives the same object back (a function
defined at the top level of an importable module). Lambdas, closures, bound methods and
functions of ``__main__`` are refused: a restarted process could not find them.

The reducer is called as ``reducer(state, record) -> state``: ``state`` is the key's
bytes (None for a new key), ``record`` a dict with ``topic``, ``offset``, ``key``,
``value``, ``headers`` (dict), ``timestamp`` (microseconds) and ``version``; it returns
the new state (bytes) or None to delete the key. A schema'd topic's ``value`` follows
the view's ``value_format``: ``typed`` (the typed value, a dict for a record schema, as
``read_key`` and a topic's reducer get it; the default of a new view) or ``json`` (its
JSON text). A definition stored without the field was written before views had the
choice, when the value was always JSON text: it reads as ``json``, so such a view's
reducer keeps the convention it was written for (decision 0019). The key function, when given, is
called as ``key(record) -> bytes | None`` and names the view key of a record (None: the
record does not change the view); without one the record's own key is used, and
keyless records are skipped.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable
from typing import Any

from odradek import limits
from odradek.errors import InvalidRequest
from odradek.names import compile_pattern, validate_topic_name

Reducer = Callable[[bytes | None, dict[str, Any]], bytes | None]
KeyFunction = Callable[[dict[str, Any]], bytes | None]

_PATH = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
)


# How a schema'd topic's values reach a view's reducer and key function (module docstring).
VALUE_FORMATS = ("typed", "json")
VALUE_FORMAT_DEFAULT = "typed"
# What a stored definition without ``value_format`` means: it was written when a view
# always got JSON text.
VALUE_FORMAT_BEFORE = "json"


@dataclasses.dataclass(frozen=True)
class ViewDefinition:
    name: str
    pattern: str
    reducer: str  # import path
    key: str | None = None  # import path of the key function; None: the record's key
    created_at: float = 0.0
    value_format: str = VALUE_FORMAT_DEFAULT  # a schema'd topic's values: typed or json

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ViewDefinition:
        return cls(
            name=str(data["name"]),
            pattern=str(data["pattern"]),
            reducer=str(data["reducer"]),
            key=None if data.get("key") is None else str(data["key"]),
            created_at=float(data.get("created_at", 0.0)),
            value_format=str(data.get("value_format", VALUE_FORMAT_BEFORE)),
        )


def check_view_name(name: object) -> str:
    """A view's name follows the rules of topic names (and may not start with ``_``)."""
    if not isinstance(name, str):
        raise InvalidRequest(f"a view name must be a string, got {type(name).__name__}")
    try:
        validate_topic_name(name)
    except InvalidRequest as exc:
        raise InvalidRequest(f"bad view name: {exc.message}") from None
    return name


def check_value_format(value_format: object) -> str:
    if value_format not in VALUE_FORMATS:
        raise InvalidRequest(
            f"a view's value_format is 'typed' (a schema'd topic's typed values, as read_key "
            f"gives them) or 'json' (their JSON text), got {value_format!r}"
        )
    return str(value_format)


def check_pattern(pattern: object) -> str:
    if not isinstance(pattern, str):
        raise InvalidRequest(f"a view's pattern must be a string, got {type(pattern).__name__}")
    compile_pattern(pattern)  # raises InvalidRequest for a bad one
    return pattern


def import_path_of(function: object, what: str) -> str:
    """The import path naming ``function``: a path given as text is checked; a callable
    must be found again by importing its module and name (module docstring)."""
    if isinstance(function, str):
        if len(function) > limits.view_import_path_chars_max or not _PATH.match(function):
            raise InvalidRequest(
                f"{what} must be an import path like 'package.module:function' "
                f"(at most {limits.view_import_path_chars_max} characters), got {function[:100]!r}"
            )
        return function
    if not callable(function):
        raise InvalidRequest(f"{what} must be an import path or a function, got {type(function).__name__}")
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        raise InvalidRequest(
            f"{what} {function!r} cannot be stored: give a function defined at the top level "
            "of an importable module (not a lambda or a closure), or its import path"
        )
    if module == "__main__":
        raise InvalidRequest(
            f"{what} {qualname} is defined in __main__, which a restarted server cannot import: "
            "move it into a module and pass that module's function (or 'module:function')"
        )
    path = f"{module}:{qualname}"
    try:
        found = resolve(path, what)
    except InvalidRequest:
        found = None
    if found is not function:
        raise InvalidRequest(
            f"{what} {qualname} cannot be stored: importing {path!r} does not give it back; "
            "give a function defined at the top level of an importable module"
        )
    return path


def resolve(path: str, what: str) -> Callable[..., Any]:
    """Import ``path`` (``module:name``) and return the callable it names."""
    module_name, _, attribute = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except Exception as exc:  # noqa: BLE001 (an import runs arbitrary code: any failure is a refusal)
        raise InvalidRequest(
            f"{what} {path!r} cannot be imported here: {type(exc).__name__}: {exc}"
        ) from None
    if not callable(target):
        raise InvalidRequest(f"{what} {path!r} is not callable")
    return target  # type: ignore[no-any-return]
