"""Write docs/api.md, the API reference, from the docstrings of ``odradek.api``.

    python scripts/api_reference.py           # rewrite docs/api.md
    python scripts/api_reference.py --check   # exit 1 if docs/api.md is not up to date

The page is generated, never edited by hand: its sections are the functions that make a
client (``odradek.open``, ``connect``, ``connect_async``), the parameter types and the
defaults (from the docstrings under each name in api.py and defaults.py), the protocols
``Client``, ``Consumer``, ``AsyncClient`` and ``AsyncConsumer`` (signatures and
docstrings), the result types and the errors. tests/test_api_reference.py fails when the
page is not what this script writes now.

Docstrings are Google style: a summary, paragraphs, then ``Args:``, ``Returns:``,
``Raises:`` (entries ``name: text`` indented by four, continued by eight) and
``Example::`` followed by an indented block of code.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import odradek
from odradek import api, defaults, errors
from odradek.groups import AckResult, Delivery, DeliveryBatch, GroupInfo, MemberInfo, TopicLag
from odradek.types import AppendResult, SchemaInfo, TopicInfo

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "api.md"
SIGNATURE_WIDTH = 88
PROTOCOLS = (api.Client, api.Consumer, api.AsyncClient, api.AsyncConsumer)
RESULTS = (
    AppendResult,
    TopicInfo,
    SchemaInfo,
    GroupInfo,
    MemberInfo,
    TopicLag,
    Delivery,
    DeliveryBatch,
    AckResult,
)
CONTEXT_METHODS = ("__enter__", "__exit__", "__aenter__", "__aexit__")
SECTIONS = ("Args:", "Returns:", "Raises:", "Example::")


# -- docstrings -------------------------------------------------------------------------


@dataclasses.dataclass
class Docstring:
    """A docstring taken apart: prose, then the entries of each section."""

    prose: str = ""
    args: dict[str, str] = dataclasses.field(default_factory=dict)
    returns: str = ""
    raises: dict[str, str] = dataclasses.field(default_factory=dict)
    example: str = ""


def parse_docstring(raw: str | None) -> Docstring:
    lines = inspect.cleandoc(raw or "").splitlines()
    parsed = Docstring()
    prose: list[str] = []
    index = 0
    while index < len(lines) and lines[index].strip() not in SECTIONS:
        prose.append(lines[index])
        index += 1
    parsed.prose = "\n".join(prose).strip()
    while index < len(lines):
        header = lines[index].strip()
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index].strip() not in SECTIONS:
            body.append(lines[index])
            index += 1
        text = textwrap.dedent("\n".join(body)).strip("\n")
        if header == "Args:":
            parsed.args = _entries(text)
        elif header == "Raises:":
            parsed.raises = _entries(text)
        elif header == "Returns:":
            parsed.returns = _joined(text)
        else:
            parsed.example = text
    return parsed


def _entries(text: str) -> dict[str, str]:
    """``name: text`` entries, each continued by more deeply indented lines. Anything
    else in a section is refused: the page must not lose text silently."""
    entries: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        match = re.match(r"^(\w+): ?(.*)$", line)
        if match:
            name = match.group(1)
            entries[name] = match.group(2)
        elif name is not None and line.startswith(" ") and line.strip():
            entries[name] += " " + line.strip()
        elif line.strip():
            raise ValueError(f"a docstring section holds a line that is not an entry: {line!r}")
    return {key: value.strip() for key, value in entries.items()}


def _joined(text: str) -> str:
    """Paragraphs with their lines joined."""
    return "\n\n".join(" ".join(part.split()) for part in re.split(r"\n\s*\n", text) if part.strip())


def markdown(text: str) -> str:
    """reST-flavoured docstring text as Markdown: ````x```` and roles become code."""
    text = re.sub(r":(?:class|meth|func|mod|attr):`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def prose(text: str) -> str:
    """Paragraphs as Markdown; a paragraph ending in ``::`` introduces a code block."""
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        if not paragraph.strip():
            continue
        if paragraph.startswith("    ") and out and out[-1].endswith(":"):
            out.append("```\n" + textwrap.dedent(paragraph) + "\n```")
            continue
        joined = " ".join(paragraph.split())
        if joined.endswith("::"):
            joined = joined[:-1]
        out.append(markdown(joined))
    return "\n\n".join(out)


# -- signatures -------------------------------------------------------------------------


def signature(name: str, function: Callable[..., Any]) -> str:
    """``def name(...) -> result`` with annotations as written and defaults' values."""
    parts: list[str] = []
    keyword_only_started = False
    for parameter in inspect.signature(function).parameters.values():
        if parameter.name == "self":
            continue
        if parameter.kind is parameter.KEYWORD_ONLY and not keyword_only_started:
            parts.append("*")
            keyword_only_started = True
        text = parameter.name
        if parameter.kind is parameter.VAR_POSITIONAL:
            text, keyword_only_started = "*" + text, True
        elif parameter.kind is parameter.VAR_KEYWORD:
            text = "**" + text
        if parameter.annotation is not parameter.empty:
            text += f": {_annotation(parameter.annotation)}"
        if parameter.default is not parameter.empty:
            text += f" = {parameter.default!r}"
        parts.append(text)
    returns = inspect.signature(function).return_annotation
    result = "" if returns is inspect.Signature.empty else f" -> {_annotation(returns)}"
    keyword = "async def" if inspect.iscoroutinefunction(function) else "def"
    one_line = f"{keyword} {name}({', '.join(parts)}){result}"
    if len(one_line) <= SIGNATURE_WIDTH:
        return one_line
    inner = "".join(f"    {part},\n" for part in parts)
    return f"{keyword} {name}(\n{inner}){result}"


def _annotation(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


# -- documented names in a module's source ------------------------------------------------


def documented_names(module: Any) -> list[tuple[str, str, str]]:
    """(name, source of its value, docstring) of each top-level assignment followed by a
    string, in source order."""
    tree = ast.parse(Path(module.__file__).read_text())
    found: list[tuple[str, str, str]] = []
    source = Path(module.__file__).read_text()
    body = tree.body
    for statement, following in itertools.pairwise(body):
        target = None
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target = statement.targets[0]
        elif isinstance(statement, ast.AnnAssign):
            target = statement.target
        value = getattr(statement, "value", None)
        if (
            isinstance(target, ast.Name)
            and value is not None
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            found.append((target.id, ast.get_source_segment(source, value) or "", following.value.value))
    return found


# -- the page ----------------------------------------------------------------------------


def render() -> str:
    out: list[str] = [
        "# API reference",
        "",
        "<!-- Generated by scripts/api_reference.py from the docstrings of src/odradek/api.py",
        "     and src/odradek/defaults.py: edit those, then run the script. -->",
        "",
        prose(inspect.cleandoc(api.__doc__ or "")),
        "",
        "## Making a client",
        "",
    ]
    for function in (odradek.open, odradek.connect, odradek.connect_async):
        out += _function_section(f"odradek.{function.__name__}", function, level="###")
    out += ["## Types of parameters", "", "| type | is | meaning |", "|---|---|---|"]
    for name, value, doc in documented_names(api):
        out.append(f"| `{name}` | `{_cell(value)}` | {_cell(markdown(' '.join(doc.split())))} |")
    stream = " ".join(inspect.cleandoc(api.BatchStream.__doc__ or "").split())
    out += [f"| `BatchStream` | `Iterator[pa.RecordBatch]` with `close()` | {_cell(markdown(stream))} |", ""]
    out += ["## Defaults", "", prose(_first_paragraph(defaults.__doc__)), ""]
    out += ["| name | value | meaning |", "|---|---|---|"]
    for name, _, doc in documented_names(defaults):
        value = getattr(defaults, name)
        out.append(f"| `defaults.{name}` | `{value!r}` | {_cell(markdown(' '.join(doc.split())))} |")
    out.append("")
    for protocol in PROTOCOLS:
        out += _protocol_section(protocol)
    out += ["## Results", ""]
    for cls in RESULTS:
        out += _result_section(cls)
    out += ["## Errors", "", "```", inspect.cleandoc(errors.__doc__ or "").split("\n\n", 1)[1], "```", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _first_paragraph(text: str | None) -> str:
    return inspect.cleandoc(text or "").split("\n\n")[0]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _function_section(title: str, function: Callable[..., Any], level: str) -> list[str]:
    doc = parse_docstring(function.__doc__)
    out = [f"{level} `{title}`", "", "```python", signature(title.rsplit(".", 1)[-1], function), "```", ""]
    if doc.prose:
        out += [prose(doc.prose), ""]
    if doc.args:
        out += ["**Parameters**", ""]
        out += [f"- `{name}`: {markdown(text)}" for name, text in doc.args.items()]
        out.append("")
    if doc.returns:
        out += ["**Returns:** " + markdown(doc.returns), ""]
    if doc.raises:
        out += ["**Raises**", ""]
        out += [f"- `{name}`: {markdown(text)}" for name, text in doc.raises.items()]
        out.append("")
    if doc.example:
        out += ["**Example**", "", "```python", doc.example, "```", ""]
    return out


def _protocol_section(protocol: type) -> list[str]:
    out = [f"## `{protocol.__name__}`", "", prose(inspect.cleandoc(protocol.__doc__ or "")), ""]
    members = vars(protocol)
    properties = [name for name, value in members.items() if isinstance(value, property)]
    if properties:
        out += ["| attribute | meaning |", "|---|---|"]
        for name in properties:
            getter = members[name].fget
            out.append(
                f"| `{name}` | {_cell(markdown(' '.join(inspect.cleandoc(getter.__doc__).split())))} |"
            )
        out.append("")
    for name, value in members.items():
        if callable(value) and (not name.startswith("_") or name in CONTEXT_METHODS):
            out += _function_section(f"{protocol.__name__}.{name}", value, level="###")
    return out


def _result_section(cls: type) -> list[str]:
    out = [f"### `{cls.__name__}`", ""]
    doc = cls.__doc__ or ""
    if doc and not doc.startswith(f"{cls.__name__}("):  # a dataclass's generated docstring
        out += [prose(inspect.cleandoc(doc)), ""]
    out += ["| field | type |", "|---|---|"]
    for field in dataclasses.fields(cls):
        out.append(f"| `{field.name}` | `{_cell(_annotation(field.type))}` |")
    out += [""]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is not up to date")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        if PAGE.read_text() != page:
            print(f"{PAGE} is not up to date: run python scripts/api_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
