"""Shared fixtures of the Schema Registry door tests: an in-memory engine stand-in.

``FakeBackend`` keeps topics' schema histories in dicts with the engine's contract
(global ids per (kind, canonical text), ``set_schema`` returns the latest when nothing
changed, refuses incompatible schemas with ``IncompatibleSchema``). ``FakeLanguages``
is a small schema language pair: Avro records (``fields``) and JSON Schema objects
(``properties``), canonical text is sorted compact JSON, and "backward" refuses a new
field that has no default (Avro) or is required (JSON Schema). Routes are tested
against these so that a failure points at the door, not at the schema compilers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from odradek.errors import IncompatibleSchema, InvalidSchema, TopicExists, TopicNotFound
from odradek.protocols.registry.routes import Registry, Request, Response
from odradek.protocols.registry.subjects import SubjectStore
from odradek.schemas.model import CompiledSchema
from odradek.types import SchemaInfo

# `odradek serve` subprocesses are started with the command-line tests' helper.
sys.path.insert(0, str(Path(__file__).parents[2] / "cli"))

from odradek_process import Server


class _NoCodec:
    def decode(self, payloads: pa.Array) -> pa.StructArray:
        raise NotImplementedError

    def encode(self, values: pa.StructArray) -> pa.Array:
        raise NotImplementedError

    def check(self, values: pa.StructArray) -> None:
        raise NotImplementedError


class FakeLanguages:
    def __init__(self) -> None:
        self.compiled = 0

    def compile(self, text: str, kind: str | None) -> CompiledSchema:
        self.compiled += 1
        try:
            document = json.loads(text) if isinstance(text, str) else text
        except ValueError as exc:
            raise InvalidSchema(f"not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise InvalidSchema("a schema is an object")
        if kind is None:
            if "fields" in document:
                kind = "AVRO"
            elif "properties" in document:
                kind = "JSON"
            else:
                raise InvalidSchema("cannot tell the schema's language")
        if kind == "AVRO":
            fields = [
                pa.field(str(entry["name"]), pa.string(), nullable="default" in entry)
                for entry in document.get("fields", [])
            ]
        else:
            required = set(document.get("required", []))
            fields = [
                pa.field(name, pa.string(), nullable=name not in required)
                for name in document.get("properties", {})
            ]
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return CompiledSchema(kind, canonical, pa.struct(fields), _NoCodec())  # type: ignore[arg-type]

    def check(self, history: list[pa.StructType], new: pa.StructType, mode: str) -> list[str]:
        if mode == "none":
            return []
        problems = []
        for old in history:
            old_names = {old.field(i).name for i in range(old.num_fields)}
            for i in range(new.num_fields):
                field = new.field(i)
                if field.name not in old_names and not field.nullable:
                    problems.append(f"{field.name}: a new field needs a default")
        return problems


class FakeBackend:
    def __init__(self, languages: FakeLanguages) -> None:
        self.languages = languages
        self.topics: dict[str, list[SchemaInfo]] = {}
        self.modes: dict[str, str] = {}
        self.ids: dict[tuple[str, str], int] = {}
        self.fail_with: Exception | None = None

    def _maybe_fail(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def list_topics(self, pattern: str | None = None) -> list[str]:
        self._maybe_fail()
        return sorted(self.topics)

    def create_topic(self, name: str, *, schema: object = None, compatibility: str = "backward") -> object:
        self._maybe_fail()
        if name in self.topics:
            raise TopicExists(f"topic {name!r} already exists", name)
        self.topics[name] = []
        self.modes[name] = compatibility
        if schema is not None:
            self.set_schema(name, schema)
        return name

    def set_schema(self, topic: str, schema: object, *, compatibility: str | None = None) -> SchemaInfo:
        self._maybe_fail()
        history = self._history(topic)
        if compatibility is not None:
            self.modes[topic] = compatibility
        compiled = self.languages.compile(json.dumps(schema), None)
        if history and history[-1].text == compiled.text:
            return history[-1]
        problems = self.check_schema(topic, schema)
        if problems:
            raise IncompatibleSchema(f"schema of topic {topic!r} is incompatible", problems)
        info = SchemaInfo(
            topic,
            len(history) + 1,
            self.schema_id_for(compiled.kind, compiled.text),
            compiled.kind,
            compiled.text,
            self.modes[topic],
            compiled.value_type,
        )
        history.append(info)
        return info

    def get_schema(self, topic: str, version: int | None = None) -> SchemaInfo | None:
        history = self._history(topic)
        if not history:
            return None
        return history[-1] if version is None else history[version - 1]

    def schema_versions(self, topic: str) -> list[SchemaInfo]:
        return list(self._history(topic))

    def check_schema(self, topic: str, schema: object, *, compatibility: str | None = None) -> list[str]:
        history = self._history(topic)
        mode = compatibility or self.modes[topic]
        compiled = self.languages.compile(json.dumps(schema), None)
        chosen = history if mode.endswith("_transitive") else history[-1:]
        return self.languages.check([info.value_type for info in chosen], compiled.value_type, mode)

    def set_compatibility(self, topic: str, mode: str) -> None:
        self._history(topic)
        self.modes[topic] = mode
        self.topics[topic] = [dataclasses.replace(info, compatibility=mode) for info in self.topics[topic]]

    def schema_by_id(self, schema_id: int) -> tuple[str, str] | None:
        return next((key for key, known in self.ids.items() if known == schema_id), None)

    def schema_id_for(self, kind: str, text: str) -> int:
        return self.ids.setdefault((kind, text), len(self.ids) + 1)

    def schema_subjects_of(self, schema_id: int) -> list[tuple[str, int]]:
        return [
            (topic, info.version)
            for topic, history in self.topics.items()
            for info in history
            if info.id == schema_id
        ]

    def _history(self, topic: str) -> list[SchemaInfo]:
        self._maybe_fail()
        if topic not in self.topics:
            raise TopicNotFound(f"topic {topic!r} not found", topic)
        return self.topics[topic]


@dataclasses.dataclass
class RegistryUnderTest:
    registry: Registry
    backend: FakeBackend
    data_dir: str

    def call(self, method: str, path: str, body: Any = None, **query: str) -> Response:
        raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
        return self.registry.handle(Request(method, path, query, raw))

    def reopen(self) -> None:
        """A new registry over the same data directory (the backend keeps its state)."""
        self.registry = Registry(self.backend, SubjectStore(self.data_dir), self.backend.languages)


@pytest.fixture
def registry(tmp_path: os.PathLike[str]) -> Iterator[RegistryUnderTest]:
    languages = FakeLanguages()
    backend = FakeBackend(languages)
    data_dir = os.fspath(tmp_path)
    yield RegistryUnderTest(Registry(backend, SubjectStore(data_dir), languages), backend, data_dir)


@pytest.fixture(scope="session")
def new_registry(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Registry]:
    """Makes fresh registries (for property tests, where function fixtures do not reset)."""

    def make() -> Registry:
        languages = FakeLanguages()
        return Registry(
            FakeBackend(languages), SubjectStore(str(tmp_path_factory.mktemp("registry"))), languages
        )

    return make


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts `odradek serve` processes (killed at the end if a test left them running)."""
    started: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Server:
        server = Server(tmp_path / f"data{len(started)}", *args, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate()
