"""The public API is defined once (odradek.api) and every client keeps to it.

Goal: each client has exactly the protocol's public methods (mypy checks that each has
them with compatible signatures; a method added to one client only is caught here),
with the protocol's parameter names, kinds and defaults; the asyncio protocol mirrors
the sync one parameter for parameter; every parameter of the sync protocols is
documented in its method's docstring; the layers below the clients (engine, Flight
messages, consumer groups, topic config, command line) default to the same values; and
the defaults' literals appear nowhere else in the source.

Method: ``inspect`` on the classes (no client is opened); ``tokenize`` over the source
files for the literals.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import io
import sys
import tokenize
from pathlib import Path
from typing import Any

import pytest

import odradek
from odradek import api, defaults
from odradek.cli import commands, serve
from odradek.cli.main import build_parser
from odradek.client.aio import AsyncClient, AsyncConsumer
from odradek.client.consumer import Consumer
from odradek.client.embedded import EmbeddedClient
from odradek.client.remote import RemoteClient
from odradek.client.remote_consumer import RemoteConsumer
from odradek.config import TopicConfig
from odradek.engine import Engine
from odradek.groups import GroupOptions
from odradek.node import Node
from odradek.protocols.flight import group_messages, messages

SOURCE = Path(odradek.__file__).parent

IMPLEMENTATIONS: list[tuple[type, type]] = [
    (api.Client, EmbeddedClient),
    (api.Client, RemoteClient),
    (api.Consumer, Consumer),
    (api.Consumer, RemoteConsumer),
    (api.AsyncClient, AsyncClient),
    (api.AsyncConsumer, AsyncConsumer),
]
CONTEXT_METHODS = {"__enter__", "__exit__", "__aenter__", "__aexit__"}


def members(cls: type) -> set[str]:
    """Public methods and properties a class defines or inherits (not from object)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or klass.__module__ == "typing" or klass in {p for p, _ in IMPLEMENTATIONS}:
            continue
        for name, value in vars(klass).items():
            if (not name.startswith("_") or name in CONTEXT_METHODS) and (
                callable(value) or isinstance(value, property)
            ):
                names.add(name)
    return names


def protocol_members(protocol: type) -> set[str]:
    return {
        name
        for name, value in vars(protocol).items()
        if (not name.startswith("_") or name in CONTEXT_METHODS)
        and (callable(value) or isinstance(value, property))
    }


def methods(protocol: type) -> list[str]:
    return sorted(name for name in protocol_members(protocol) if callable(vars(protocol)[name]))


def parameters(function: Any) -> list[tuple[str, Any, Any]]:
    """(name, kind, default) of each parameter but self."""
    signature = inspect.signature(function)
    return [(p.name, p.kind, p.default) for p in signature.parameters.values() if p.name != "self"]


@pytest.mark.parametrize(
    ("protocol", "implementation"), IMPLEMENTATIONS, ids=lambda c: getattr(c, "__qualname__", "")
)
def test_a_client_has_exactly_the_protocols_methods(protocol: type, implementation: type) -> None:
    attributes = {name for name, value in vars(protocol).items() if isinstance(value, property)}
    assert members(implementation) - attributes == protocol_members(protocol) - attributes
    for name in attributes:  # a property, or an attribute its __init__ sets
        sources = "".join(
            inspect.getsource(klass)
            for klass in implementation.__mro__[:-1]
            if klass.__module__.startswith("odradek")
        )
        assert name in members(implementation) or f"self.{name} = " in sources, name


@pytest.mark.parametrize(
    ("protocol", "implementation"), IMPLEMENTATIONS, ids=lambda c: getattr(c, "__qualname__", "")
)
def test_a_clients_parameters_and_defaults_are_the_protocols(protocol: type, implementation: type) -> None:
    for name in methods(protocol):
        if name in CONTEXT_METHODS:
            continue
        expected = parameters(getattr(protocol, name))
        assert parameters(getattr(implementation, name)) == expected, f"{implementation.__name__}.{name}"


@pytest.mark.parametrize(
    ("sync", "asynchronous"), [(api.Client, api.AsyncClient), (api.Consumer, api.AsyncConsumer)]
)
def test_the_async_protocols_mirror_the_sync_ones(sync: type, asynchronous: type) -> None:
    context = {"__enter__": "__aenter__", "__exit__": "__aexit__"}
    assert {context.get(name, name) for name in protocol_members(sync)} == protocol_members(asynchronous)
    for name in methods(sync):
        if name in CONTEXT_METHODS:
            continue
        assert parameters(getattr(asynchronous, name)) == parameters(getattr(sync, name)), name
        assert inspect.iscoroutinefunction(getattr(asynchronous, name)) == (name != "read"), name
        assert f"{sync.__name__}.{name}" in (getattr(asynchronous, name).__doc__ or ""), name


def load_script(name: str) -> Any:
    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("protocol", [api.Client, api.Consumer])
def test_every_parameter_is_documented(protocol: type) -> None:
    reference = load_script("api_reference")
    for name in sorted(protocol_members(protocol)):
        function = vars(protocol)[name]
        doc = inspect.getdoc(function.fget if isinstance(function, property) else function)
        assert doc, f"{protocol.__name__}.{name} has no docstring"
        if name in CONTEXT_METHODS or isinstance(function, property):
            continue
        names = [parameter for parameter, _, _ in parameters(function)]
        documented = list(reference.parse_docstring(function.__doc__).args)
        assert documented == names, f"{protocol.__name__}.{name}"


def test_help_shows_the_protocols_docstrings() -> None:
    for cls in (EmbeddedClient, RemoteClient):
        assert inspect.getdoc(cls.append) == inspect.getdoc(api.Client.append)
    assert inspect.getdoc(AsyncClient.read) == inspect.getdoc(api.AsyncClient.read)


# -- the layers below the clients -----------------------------------------------------------


def defaults_of(function: Any) -> dict[str, Any]:
    return {
        name: default for name, _, default in parameters(function) if default is not inspect.Parameter.empty
    }


@pytest.mark.parametrize(
    "name",
    ["create_topic", "append", "append_many", "read", "fetch", "read_key", "set_schema", "check_schema"],
)
def test_the_engine_defaults_as_the_api(name: str) -> None:
    # Appends go through the node (node.py), which adds wait_for (synchronous commit).
    engine = defaults_of(getattr(Node if name == "append" else Engine, name))
    protocol = defaults_of(getattr(api.Client, name))
    assert {key: engine[key] for key in protocol} == protocol


def test_the_lower_layers_default_as_the_api() -> None:
    create = defaults_of(api.Client.create_topic)
    assert (
        TopicConfig.build()
        == TopicConfig()
        == TopicConfig.build(
            create["retention"], create["retention_bytes"], create["segment_bytes"], create["segment_age"]
        )
    )
    subscribe = defaults_of(api.Client.subscribe)
    options = {field.name: field.default for field in dataclasses.fields(GroupOptions)}
    for name in (
        "start",
        "ack_timeout",
        "max_deliveries",
        "dead_letter_topic",
        "max_in_flight_per_key",
        "ordering",
    ):
        assert options[name] == subscribe[name], name
    read = defaults_of(api.Client.read)
    ticket = messages.decode_ticket(messages.dump({"kind": "read", "pattern": "t"}))
    assert isinstance(ticket, messages.ReadRequest)
    assert (ticket.start, ticket.wait, ticket.follow) == (read["start"], read["wait"], read["follow"])
    fetch = defaults_of(api.Client.fetch)
    ticket = messages.decode_ticket(messages.dump({"kind": "fetch", "topic": "t", "offset": 0}))
    assert isinstance(ticket, messages.FetchRequest)
    assert (ticket.max_records, ticket.max_bytes) == (fetch["max_records"], fetch["max_bytes"])
    poll = defaults_of(api.Consumer.poll)
    request = group_messages.decode_request(messages.dump({"op": "poll"}))
    assert request == group_messages.Poll(poll["max_records"], poll["timeout"])
    nack = group_messages.decode_request(messages.dump({"op": "nack"}))
    assert nack == group_messages.Settle(True, defaults_of(api.Consumer.nack)["delay"])


def test_the_command_line_defaults_as_the_api() -> None:
    parser = build_parser()
    created = parser.parse_args(["topic", "create", "t"])
    assert created.retention == defaults_of(api.Client.create_topic)["retention"]
    assert commands.DEFAULT_COMPATIBILITY == defaults_of(api.Client.create_topic)["compatibility"]
    settings = serve.settings_from(parser.parse_args(["serve"]), {})
    assert (settings.data_dir, "grpc://" + settings.listen) == (defaults.data_dir, defaults.url)
    assert inspect.signature(odradek.open).parameters["path"].default == defaults.data_dir
    assert isinstance(created, argparse.Namespace)


# -- literals -------------------------------------------------------------------------------


@pytest.mark.parametrize("literal", [defaults.retention, defaults.url, defaults.listen])
def test_a_defaults_literal_is_written_once(literal: str) -> None:
    """A string token that is exactly a default (not prose that mentions it) lives in
    defaults.py only."""
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        if path.name == "defaults.py":
            continue
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        for token in tokens:
            if token.type == tokenize.STRING and token.string.strip("\"'") == literal:
                found.append(f"{path.relative_to(SOURCE)}:{token.start[0]}")
    assert found == []
