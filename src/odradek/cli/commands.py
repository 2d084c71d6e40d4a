"""The client commands of the CLI: topic, schema and group administration, consume,
key, asyncapi (``produce`` is in produce.py).

Each command is a thin use of the public client API (``odradek.connect``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, BinaryIO

import pyarrow as pa

from odradek import defaults
from odradek.cli import output
from odradek.cli.progress import Bar
from odradek.client.remote import RemoteClient, connect
from odradek.errors import IncompatibleSchema, InvalidRequest, OdradekError
from odradek.types import SchemaInfo


def client_for(args: argparse.Namespace) -> RemoteClient:
    return connect(args.server)


# -- topic ----------------------------------------------------------------------------------


def topic_create(args: argparse.Namespace) -> int:
    schema = read_schema_file(args.schema, args.kind) if args.schema is not None else None
    if schema is None and (args.kind is not None or args.compatibility is not None):
        raise InvalidRequest("--kind and --compatibility go with --schema FILE")
    with client_for(args) as client:
        info = client.create_topic(
            args.name,
            retention=args.retention,
            retention_bytes=args.retention_bytes,
            segment_bytes=args.segment_bytes,
            cleanup=args.cleanup,
            delete_retention=args.delete_retention,
            min_compaction_lag=args.min_compaction_lag,
            min_cleanable_dirty_ratio=args.min_cleanable_dirty_ratio,
            exist_ok=args.exist_ok,
            schema=schema,
            compatibility=args.compatibility or DEFAULT_COMPATIBILITY,
        )
    print(f"created topic {info.name}" if info.next_offset == 0 else f"topic {info.name} exists")
    return 0


def topic_list(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        names = client.list_topics(args.pattern)
        unavailable = client.unavailable_topics()
    if names:
        print("\n".join(names))
    for name, why in sorted(unavailable.items()):
        print(f"warning: topic {name} is unavailable: {why}", file=sys.stderr)
    return 0


def topic_delete(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        client.delete_topic(args.name)
    print(f"deleted topic {args.name}")
    return 0


def topic_verify(args: argparse.Namespace) -> int:
    if args.data_dir is not None:
        from odradek.engine import Engine  # an offline check of a stopped server's data

        with Engine(args.data_dir, retention_check_seconds=3600) as engine:
            progress = _VerifyProgress(args.name)
            report = engine.verify_topic(args.name, progress)
            progress.finish()
    else:
        with client_for(args) as client:
            report = client.verify_topic(args.name)
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(_verify_text(report))
    return 0 if _verified(report) else 1


def _verified(report: dict[str, Any]) -> bool:
    """No damage left that an operator has not accepted, in the topic or its snapshot log."""
    snapshot_log = report.get("snapshot_log") or {}
    return all(damage["accepted"] for damage in report["damaged"]) and not snapshot_log.get("damaged")


class _VerifyProgress:
    """A progress bar of the bytes an offline verify read (on a terminal), erased at the end."""

    def __init__(self, topic: str) -> None:
        self.bar = Bar(f"verifying {topic}", unit="bytes")
        self.total: int | None = None

    def __call__(self, done: int, total: int) -> None:
        if total != self.total:
            self.total = total
            self.bar.set_total(total)
        self.bar.advance(done - self.bar.done)

    def finish(self) -> None:
        self.bar.finish()


def _verify_text(report: dict[str, Any]) -> str:
    lines = [
        f"topic {report['topic']}: {report['segments']} segment(s), {report['frames']:,} frame(s), "
        f"{output.human_bytes(report['bytes'])} checked"
    ]
    for damage in report["damaged"]:
        state = "accepted by an operator" if damage["accepted"] else "NOT accepted"
        lines.append(
            f"  damaged: offsets {damage['first_offset']}-{damage['end_offset'] - 1} in segment "
            f"{damage['segment']} at bytes {damage['position']}..{damage['end_position']} "
            f"({damage['reason']}; {state})"
        )
    for problem in report["problems"]:
        if problem.startswith("snapshot log: ") and "are damaged" in problem:
            lines.append(f"  damaged: {problem}")
        else:
            lines.append(f"  rebuilt at the next open: {problem}")
    if report["damaged"]:
        pending = [d for d in report["damaged"] if not d["accepted"]]
        if pending:
            ranges = " ".join(f"--drop-range {d['first_offset']}-{d['end_offset'] - 1}" for d in pending)
            lines.append(
                f"restore the damaged records from a copy if you have one; to accept their loss: "
                f"odradek topic repair {report['topic']} {ranges}"
            )
    elif not _verified(report):
        lines.append(
            "the topic's records are intact; its snapshot log is damaged: the snapshots stored there "
            "are lost and new snapshots are refused (docs/snapshots-and-views.md)"
        )
    else:
        lines.append(
            "no damaged records" + ("" if not report["problems"] else " (derived files are rebuilt)")
        )
    return "\n".join(lines)


def topic_repair(args: argparse.Namespace) -> int:
    ranges = [_offset_range(text) for text in args.drop_range]
    if args.data_dir is not None:
        from odradek.engine import Engine

        with Engine(args.data_dir, retention_check_seconds=3600) as engine:
            info = engine.repair_topic(args.name, drop_range=ranges)
    else:
        with client_for(args) as client:
            info = client.repair_topic(args.name, drop_range=ranges)
    print(
        f"topic {info.name}: the loss of offsets {', '.join(args.drop_range)} is accepted; "
        f"status {info.status}"
    )
    return 0


def _offset_range(text: str) -> tuple[int, int]:
    first, separator, last = text.partition("-")
    if not separator or not first.strip().isdigit() or not last.strip().isdigit():
        raise InvalidRequest(f"--drop-range is FIRST-LAST (offsets, inclusive), e.g. 1200-1249; got {text!r}")
    return int(first), int(last)


# -- key --------------------------------------------------------------------------


# -- group ------------------------------------------------------------------------------------


def group_list(args: argparse.Namespace) -> int:
    """One group name a line; with --long, its kind, state, members and lag too."""
    with client_for(args) as client:
        names = client.list_groups()
        if not args.long:
            if names:
                print("\n".join(names))
            return 0
        rows = [("GROUP", "KIND", "STATE", "MEMBERS", "LAG")]
        for name in names:
            try:
                info = client.describe_group(name)
            except InvalidRequest:  # deleted since it was listed
                continue
            rows.append((name, info.kind, info.state, str(len(info.members)), str(info.lag)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def group_delete(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        client.delete_group(args.group)
    print(f"deleted group {args.group}")
    return 0


def key(args: argparse.Namespace) -> int:
    from_snapshot = getattr(args, "from_snapshot", False)
    if from_snapshot and args.from_version != defaults.from_version:
        raise InvalidRequest("--from-snapshot starts at the key's latest snapshot: leave --from-version out")
    last = getattr(args, "last", False)
    if last and (from_snapshot or args.from_version != defaults.from_version):
        raise InvalidRequest("--last prints the key's latest record only: leave --from-version out")
    with client_for(args) as client:
        from_version = args.from_version
        if last:
            from_version = max(client.key_version(args.topic, args.key.encode()), 1)
        if from_snapshot:
            table = client.read_key(args.topic, args.key.encode(), from_snapshot=True)
        else:
            table = client.read_key(args.topic, args.key.encode(), from_version)
        if table.num_rows == 0:
            _no_records(client, args.topic, args.key, from_version)
    out = sys.stdout.buffer
    if from_snapshot:
        table = _write_snapshot_row(out, table, args.format, args.topic)
    for batch in table.to_batches():
        out.write(_format(batch, args.format, args.topic))
    out.flush()
    return 0


def _no_records(client: RemoteClient, topic: str, key: str, from_version: int) -> None:
    """A key with nothing to print is an error (exit 1) that says why."""
    latest = client.key_version(topic, key.encode())
    if latest == 0:
        raise OdradekError(f"topic {topic}: key {key!r} has no records")
    raise OdradekError(
        f"topic {topic}: key {key!r} has no records from version {from_version} (its latest is {latest})"
    )


def _write_snapshot_row(out: BinaryIO, table: pa.Table, style: str, topic: str) -> pa.Table:
    """Write the snapshot row of a ``read_key(from_snapshot=True)`` (its first row, if
    flagged), in JSON lines with ``"snapshot": true``; return the events after it. On a
    schema'd topic the state (its ``state`` column) is printed as the row's value, as
    on a topic without a schema."""
    flags = table.column("snapshot")
    typed = "state" in table.column_names
    events = table.drop_columns(["snapshot", "state"] if typed else ["snapshot"])
    if table.num_rows == 0 or not flags[0].as_py():
        return events
    first_row = events.slice(0, 1)
    if typed:
        index = first_row.schema.get_field_index("value")
        first_row = first_row.set_column(index, "value", table.column("state").slice(0, 1))
    first = first_row.combine_chunks().to_batches()[0]
    if style == "jsonl":
        row = output.rows(first, topic)[0]
        out.write((json.dumps({**row, "snapshot": True}, ensure_ascii=False) + "\n").encode())
    else:
        out.write(_format(first, style, topic))  # its value, the state
    return events.slice(1)


def _format(batch: pa.RecordBatch, style: str, topic: str) -> bytes:
    """The batch as text, as ``consume`` writes it (text, jsonl or a template)."""
    from odradek.cli.consume import format_batch, formatter

    return format_batch(batch, formatter(style), topic)


# -- schema ----------------------------------------------------------------------------------

# A new schema'd topic's compatibility mode when --compatibility is not given (the engine's).
DEFAULT_COMPATIBILITY = defaults.compatibility
# Where `--kind` and a schema file's extension point, in the engine's names for the kinds.
_SCHEMA_KINDS = {"avro": "AVRO", "json": "JSON"}
_KIND_BY_EXTENSION = {".avsc": "AVRO"}


def read_schema_file(path: str, kind: str | None = None) -> object:
    """The schema document in ``path`` (``-``: stdin), parsed from JSON.

    ``.avsc`` files are Avro; other files are read as whatever the document is (Avro: a
    record with ``fields``; JSON Schema: an object with ``properties``). A forced kind
    (``--kind``, or the extension) is checked here: the server tells the kinds apart by
    the document alone, so a document it would read as the other kind is refused rather
    than stored as something the user did not mean.
    """
    if path == "-":
        text = sys.stdin.read()
    else:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(
            f"{'stdin' if path == '-' else path} is not a JSON schema document: {exc}"
        ) from exc
    forced = _SCHEMA_KINDS[kind] if kind is not None else _KIND_BY_EXTENSION.get(os.path.splitext(path)[1])
    if forced is not None:
        _check_schema_kind(document, forced)
    return document


def _check_schema_kind(document: object, kind: str) -> None:
    from odradek.schemas import compile_schema

    compile_schema(document, kind)  # InvalidSchema, in that language's terms
    try:
        detected = compile_schema(document).kind
    except InvalidRequest:
        detected = None
    if detected != kind:
        raise InvalidRequest(
            f"the document is valid {kind} but the server would not read it as {kind}: "
            "an Avro schema is a record with 'fields', a JSON Schema an object with 'properties'"
        )


def _schema_json(info: SchemaInfo) -> dict[str, object]:
    schema = info.text if info.kind == "ARROW" else info.schema
    described: dict[str, object] = {
        "topic": info.topic,
        "version": info.version,
        "id": info.id,
        "kind": info.kind,
        "compatibility": info.compatibility,
        "schema": schema,
    }
    if info.kind == "ARROW":
        described["arrow"] = str(info.schema)
    return described


def schema_get(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        info = client.get_schema(args.topic, args.version)
    if info is None:
        raise InvalidRequest(f"topic {args.topic!r} has no schema")
    print(json.dumps(_schema_json(info), indent=2))
    return 0


def schema_set(args: argparse.Namespace) -> int:
    document = read_schema_file(args.file, args.kind)
    with client_for(args) as client:
        before = client.get_schema(args.topic)
        try:
            info = client.set_schema(args.topic, document, compatibility=args.compatibility)
        except IncompatibleSchema as exc:
            return _print_problems(exc.message, exc.problems)
    unchanged = before is not None and before.version == info.version
    state = "unchanged at" if unchanged else "is now"
    print(
        f"topic {info.topic}: schema {state} version {info.version} "
        f"(id {info.id}, {info.kind}, compatibility {info.compatibility})"
    )
    return 0


def schema_versions(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        infos = client.schema_versions(args.topic)
    print(json.dumps([_schema_json(info) for info in infos], indent=2))
    return 0


def schema_check(args: argparse.Namespace) -> int:
    document = read_schema_file(args.file, args.kind)
    with client_for(args) as client:
        problems = client.check_schema(args.topic, document, compatibility=args.compatibility)
    if problems:
        return _print_problems(f"the schema is not compatible with topic {args.topic}", problems)
    print(f"compatible with topic {args.topic}")
    return 0


def _print_problems(message: str, problems: list[str]) -> int:
    """An incompatible schema: the message and every problem on stderr; exit code 1."""
    lines = [f"odradek: error: {message}", *(f"  - {problem}" for problem in problems)]
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()
    return 1


# -- asyncapi --------------------------------------------------------------------------------


def asyncapi_document(args: argparse.Namespace) -> int:
    from odradek import asyncapi

    servers = [asyncapi.flight_server(args.server)]
    if args.registry is not None and args.kafka is None:
        raise InvalidRequest("--registry goes with --kafka: the registry serves the Kafka door's clients")
    if args.kafka is not None:
        servers.append(asyncapi.kafka_server(args.kafka, args.registry))
    with client_for(args) as client:
        document = asyncapi.build_document(
            client, args.pattern, servers=servers, title=args.title, version=args.api_version
        )
    sys.stdout.write(asyncapi.document_text(document, args.format))
    sys.stdout.flush()
    return 0
