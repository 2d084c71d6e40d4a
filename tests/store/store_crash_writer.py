"""Child process of the store crash test: tests/engine/crash_writer.py with its data on
an object store (``ODRADEK_CRASH_STORE``, a URL; S3 settings from the AWS_* variables).

Usage: python store_crash_writer.py DATA_DIR PRODUCER_ID FIRST_SEQUENCE SEED, as
crash_writer.py: a line on stdout is an acknowledgement.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))

import crash_writer

import odradek
from odradek.storage.agent import StoreSettings
from odradek.storage.objects import ObjectStore, open_store

FLUSH_SECONDS = 0.002  # the tests' short journal window


def settings() -> StoreSettings:
    return StoreSettings(
        flush_seconds=FLUSH_SECONDS,
        # Checkpoints during the run (the test picks the interval per cycle), so that
        # kills land between a manifest and its garbage collection too.
        checkpoint_seconds=float(os.environ.get("ODRADEK_CRASH_CHECKPOINT_SECONDS", "60")),
    )


def store() -> str | ObjectStore:
    """The store: ``ODRADEK_CRASH_STORE``, or its cell ``ODRADEK_CRASH_STORE_CELL`` (a
    child prefix on the same backend, as cells of one store are opened)."""
    cell = os.environ.get("ODRADEK_CRASH_STORE_CELL")
    url = os.environ["ODRADEK_CRASH_STORE"]
    return open_store(url).child(cell) if cell else url


if __name__ == "__main__":
    # crash_writer opens its data directory with odradek.open: on the store here.
    odradek.open = functools.partial(  # type: ignore[assignment]
        odradek.open, store=store(), store_settings=settings()
    )
    crash_writer.main()
