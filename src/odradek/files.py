"""Durable file primitives shared by the engine, groups and doors.

A file that must be all old or all new is written to ``<path>.tmp``, fsync'd, then
renamed over ``path``; a directory whose entries changed (a file created, renamed or
removed) is fsync'd so that the change itself survives a crash.
"""

from __future__ import annotations

import json
import os
from typing import Any


def fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_atomically(path: str, data: Any) -> None:
    replace_atomically(path, json.dumps(data).encode())
