"""``odradek group reset-offsets``: move a consumer group's committed offsets.

Kafka's ``kafka-consumer-groups --reset-offsets``: without ``--execute`` the plan is
printed and nothing changes (``--dry-run`` says so explicitly); the server refuses the
reset while the group has members (groups/reset.py). The plan is a table, a row per
topic, and per Kafka partition for a group joined through the Kafka door.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys

from odradek.cli import terminal
from odradek.client.remote import connect
from odradek.errors import InvalidRequest
from odradek.groups.info import OffsetReset

TO_USAGE = "--to earliest | --to latest | --to datetime WHEN | --to offset N"


def parse_target(words: list[str]) -> str | int:
    """What ``--to`` names, as ``reset_offsets`` takes it."""
    if words in (["earliest"], ["latest"]):
        return words[0]
    if len(words) == 2 and words[0] == "offset":
        if not words[1].isdigit():
            raise InvalidRequest(f"--to offset takes a whole number >= 0, got {words[1]!r}")
        return int(words[1])
    if len(words) == 2 and words[0] == "datetime":
        micros = terminal.parse_moment(words[1], "--to datetime")
        moment = datetime.datetime.fromtimestamp(micros / 1_000_000, datetime.UTC)
        return moment.isoformat()
    raise InvalidRequest(f"--to takes {TO_USAGE}; got {' '.join(words)!r}")


def plan_text(plan: list[OffsetReset]) -> str:
    header = ("TOPIC", "PARTITION", "OLD", "NEW")
    rows = [header]
    for row in plan:
        partition = "-" if row.partition is None else str(row.partition)
        old = "-" if row.old is None else f"{row.old:,}"
        rows.append((row.topic, partition, old, f"{row.new:,}"))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    )


def group_reset_offsets(args: argparse.Namespace) -> int:
    to = parse_target(args.to)
    with connect(args.server) as client:
        plan = client.reset_offsets(args.group, to, topics=args.topic, dry_run=not args.execute)
    if args.format == "json":
        print(json.dumps([row.to_json() for row in plan]), flush=True)
    else:
        print(plan_text(plan), flush=True)
    count = terminal.plural(len(plan), "offset")
    if args.execute:
        print(f"group {args.group}: reset {count}", file=sys.stderr)
    else:
        hint = "" if args.dry_run else "; add --execute to apply it"
        print(f"group {args.group}: dry run, nothing changed ({count} planned{hint})", file=sys.stderr)
    return 0
