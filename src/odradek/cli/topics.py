"""``topic alter``, and ``topic describe`` / ``group describe`` as people read them.

``describe`` prints a table of readable sizes, durations and dates when stdout is a
terminal (or with ``--format text``) and the JSON it always printed otherwise (or with
``--format json``), so scripts keep their JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from odradek.cli import terminal
from odradek.cli.main import ALTER_FLAGS
from odradek.client.remote import connect
from odradek.errors import InvalidRequest
from odradek.groups.info import GroupInfo
from odradek.types import TopicInfo


def topic_alter(args: argparse.Namespace) -> int:
    settings: dict[str, Any] = {}
    for dest, flag, _, _ in ALTER_FLAGS:
        value = getattr(args, dest)
        if value is None:
            continue
        if dest == "min_cleanable_dirty_ratio":
            try:
                value = float(value)
            except ValueError:
                raise InvalidRequest(f"{flag} is a number from 0 to 1, got {value!r}") from None
        elif dest == "retention_bytes" and value.lower() in ("none", "unlimited", "-1"):
            value = None
        settings[dest] = value
    if not settings:
        flags = ", ".join(flag for _, flag, _, _ in ALTER_FLAGS)
        raise InvalidRequest(f"topic alter needs a setting to change: {flags}")
    with connect(args.server) as client:
        info = client.alter_topic(args.name, **settings)
    print(f"altered topic {info.name}: " + ", ".join(_config_lines(info.config, only=set(settings))))
    return 0


def topic_move(args: argparse.Namespace) -> int:
    if (args.agent is None) == (args.cell is None):
        raise InvalidRequest("topic move needs either an AGENT or --cell CELL to move the topic to")
    with connect(args.server) as client:
        moved = client._move_topic(args.name, to=args.agent, cell=args.cell)
    where = f" (agent {moved['to_agent']})" if moved.get("to_agent") else ""
    print(
        f"moved topic {moved['topic']} from cell {moved['from_cell']} to cell {moved['to_cell']}{where} "
        f"in {moved['seconds']:.2f} s"
    )
    return 0


def _wants_text(args: argparse.Namespace) -> bool:
    chosen = getattr(args, "format", None)
    return bool(chosen == "text" or (chosen is None and sys.stdout.isatty()))


def topic_describe(args: argparse.Namespace) -> int:
    with connect(args.server) as client:
        info = client.describe_topic(args.name)
    print(topic_text(info) if _wants_text(args) else json.dumps(info.to_json(), indent=2))
    return 0


def group_describe(args: argparse.Namespace) -> int:
    with connect(args.server) as client:
        info = client.describe_group(args.group)
    print(group_text(info) if _wants_text(args) else json.dumps(info.to_json(), indent=2))
    return 0


def _config_lines(config: dict[str, Any], only: set[str] | None = None) -> list[str]:
    described = {
        "retention": f"retention {terminal.human_duration(config.get('retention_seconds'))}",
        "retention_bytes": "retention bytes "
        + (
            "none"
            if config.get("retention_bytes") is None
            else terminal.human_bytes(config["retention_bytes"])
        ),
        "segment_bytes": f"segment bytes {terminal.human_bytes(config.get('segment_bytes') or 0)}",
        "segment_age": f"segment age {terminal.human_duration(config.get('segment_seconds'))}",
        "cleanup": f"cleanup {config.get('cleanup')}",
        "delete_retention": "delete retention "
        + terminal.human_duration(config.get("delete_retention_seconds")),
        "min_compaction_lag": "min compaction lag "
        + terminal.human_duration(config.get("min_compaction_lag_seconds")),
        "min_cleanable_dirty_ratio": f"min cleanable dirty ratio {config.get('min_cleanable_dirty_ratio')}",
    }
    return [text for name, text in described.items() if only is None or name in only]


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def topic_text(info: TopicInfo) -> str:
    config = info.config
    compacted = str(config.get("cleanup", "delete")) != "delete"
    rows = [
        ("topic", info.name),
        ("status", info.status),
        ("offsets", f"{info.first_offset:,} to {max(info.next_offset - 1, info.first_offset):,} "
         f"(next {info.next_offset:,})"),
        ("records", f"{terminal.plural(info.records, 'record')}, {terminal.plural(info.keys, 'key')}"),
        ("size", f"{terminal.human_bytes(info.bytes)} in {terminal.plural(info.segments, 'segment')}"),
        ("created", terminal.human_time(int(info.created_at * 1_000_000)) if info.created_at else "-"),
        ("retention", f"{terminal.human_duration(config.get('retention_seconds'))}"
         + ("" if config.get("retention_bytes") is None
            else f" or {terminal.human_bytes(config['retention_bytes'])}")),
        ("segments roll", f"at {terminal.human_bytes(config.get('segment_bytes') or 0)} or "
         f"{terminal.human_duration(config.get('segment_seconds'))}"),
        ("cleanup", str(config.get("cleanup", "delete"))),
    ]  # fmt: skip
    if compacted:
        rows.append(("compaction", ", ".join(_config_lines(config)[5:])))
    schema = info.schema
    if schema:
        rows.append(("schema", f"{schema.get('kind', '?')} version {schema.get('version', '?')}"))
    for damage in info.damaged:
        rows.append(("damaged", json.dumps(damage)))
    return _table(rows)


def group_text(info: GroupInfo) -> str:
    rows = [("group", info.group), ("kind", info.kind), ("state", info.state or "-")]
    if info.pattern:
        rows.append(("pattern", info.pattern))
    rows.append(("members", str(len(info.members))))
    rows.append(("lag", f"{info.lag:,}"))
    lines = [_table(rows), ""]
    header = ("TOPIC", "PARTITION", "COMMITTED", "END", "LAG")
    table: list[tuple[str, ...]] = [header]
    for topic in info.topics:
        table.append((topic.topic, "-", f"{topic.committed:,}", f"{topic.next_offset:,}", f"{topic.lag:,}"))
        for partition in topic.partitions or ():
            table.append(("", str(partition.partition), f"{partition.committed:,}", "", f"{partition.lag:,}"))
    lines.extend(_columns(table))
    if info.members:
        lines.append("")
        lines.extend(_columns(_member_rows(info)))
        if any(topic.uncommitted for member in info.members for topic in member.assignment or ()):
            lines.append("* no committed offset: the partition's lag is not known and not counted")
    return "\n".join(lines)


def _member_rows(info: GroupInfo) -> list[tuple[str, ...]]:
    """A row per member: a Kafka member's partitions and their lag; an odradek member's
    records in flight, and its lag where it has one (ordering="topic")."""
    rows: list[tuple[str, ...]] = [("MEMBER", "CLIENT", "PARTITIONS", "LAG", "IN-FLIGHT", "IDLE", "ACTIVE")]
    for member in info.members:
        client = " ".join(part for part in (member.client_id, member.client_host) if part) or "-"
        if member.assignment is None:
            partitions = "-"
        else:
            partitions = " ".join(
                f"{topic.topic}:"
                + ",".join(f"{p}*" if p in topic.uncommitted else str(p) for p in topic.partitions)
                for topic in member.assignment
            )
        lag = "-" if member.lag is None else f"{member.lag:,}"
        rows.append(
            (
                member.member,
                client,
                partitions or "none",
                lag,
                f"{member.in_flight:,}",
                f"{member.idle_seconds:.1f}s",
                "yes" if member.active else "standby",
            )
        )
    return rows


def _columns(table: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table]
