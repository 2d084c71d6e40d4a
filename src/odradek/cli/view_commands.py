"""The handlers of ``odradek view ...`` (parser: views.py)."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any

from odradek.cli.commands import client_for
from odradek.errors import InvalidRequest


def view_create(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        info = client.create_view(
            args.name,
            args.pattern,
            args.reducer,
            key=args.key,
            exist_ok=args.exist_ok,
            value_format=args.value_format,
        )
    print(f"view {info['name']} reads {info['pattern']} with {info['reducer']}")
    return 0


def view_get(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        state = client.view_get(args.name, args.key)
    if state is None:
        raise InvalidRequest(f"view {args.name!r} has no state for key {args.key!r}")
    sys.stdout.buffer.write(state + b"\n")
    sys.stdout.flush()
    return 0


def view_scan(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        table = client.view_scan(args.name, args.prefix, limit=args.limit)
    out = sys.stdout.buffer
    for row in table.to_pylist():
        if args.format == "jsonl":
            document: dict[str, Any] = {}
            _put(document, "key", row["key"])
            _put(document, "state", row["state"])
            out.write(json.dumps(document).encode() + b"\n")
        else:
            out.write(row["key"] + b"\t" + row["state"] + b"\n")
    out.flush()
    return 0


def view_describe(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        print(json.dumps(client.describe_view(args.name), indent=2))
    return 0


def view_list(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        names = client.list_views()
    if names:
        print("\n".join(names))
    return 0


def view_delete(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        client.delete_view(args.name)
    print(f"deleted view {args.name}")
    return 0


def _put(document: dict[str, Any], field: str, value: bytes) -> None:
    """Bytes as UTF-8 where valid, else base64 under ``<field>_b64`` (the JSONL rule)."""
    try:
        document[field] = value.decode()
    except UnicodeDecodeError:
        document[f"{field}_b64"] = base64.b64encode(value).decode()
