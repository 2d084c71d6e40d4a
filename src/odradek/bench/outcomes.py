"""Why a figure is missing: raised by systems, caught by the runner, written into rows."""

from __future__ import annotations


class Skipped(Exception):
    """A system cannot run here (binary or client library missing); the message says how to fix it."""


class NotYetAvailable(Exception):
    """The system does not offer this workload yet (e.g. a feature still to be built)."""
