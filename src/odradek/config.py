"""Per-topic configuration: retention and segment size, with parsing of human units."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from odradek import defaults, limits
from odradek.errors import InvalidRequest

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib|t|tb|tib)?\s*$", re.I)
_SIZE_BYTES = {
    None: 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}


def parse_duration(value: object, what: str = "duration") -> float | None:
    """Seconds from ``7d``, ``12h``, ``30m``, ``45s``, ``500ms`` or a number of seconds.

    ``None``, ``"forever"``, ``"infinite"`` and ``-1`` mean no limit (None).
    """
    if value is None or value in ("forever", "infinite", "none", -1):
        return None
    if isinstance(value, bool):
        raise InvalidRequest(f"{what} must be a duration like '7d' or a number of seconds")
    if isinstance(value, (int, float)):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise InvalidRequest(f"{what} must be a finite number of seconds, got {value!r}")
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise InvalidRequest(
                f"invalid {what} {value!r}: use a number with a unit ms, s, m, h, d or w (e.g. '7d')"
            )
        seconds = float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
    if seconds <= 0:
        raise InvalidRequest(f"{what} must be positive, got {value!r}")
    return seconds


def parse_size(value: object, what: str = "size") -> int | None:
    """Bytes from ``10GiB``, ``512MB``, ``64k`` or an integer; None/-1 mean no limit."""
    if value is None or value in ("none", "infinite", -1):
        return None
    if isinstance(value, bool):
        raise InvalidRequest(f"{what} must be a size like '1GiB' or a number of bytes")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InvalidRequest(f"{what} must be a finite number of bytes, got {value!r}")
        size = int(value)
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise InvalidRequest(f"invalid {what} {value!r}: use bytes or a unit like KiB, MiB, GiB")
        unit = match.group(2).lower() if match.group(2) else None
        size = int(float(match.group(1)) * _SIZE_BYTES[unit])
    if size <= 0:
        raise InvalidRequest(f"{what} must be positive, got {value!r}")
    return size


@dataclasses.dataclass(frozen=True)
class TopicConfig:
    """Settings of one topic. ``None`` retention means keep forever. The defaults are
    :mod:`odradek.defaults`' (``build()`` with no arguments gives them)."""

    retention_seconds: float | None = parse_duration(defaults.retention, "retention")
    retention_bytes: int | None = parse_size(defaults.retention_bytes, "retention_bytes")
    segment_bytes: int = limits.segment_bytes_default
    segment_seconds: float | None = parse_duration(defaults.segment_age, "segment_age")

    @classmethod
    def build(
        cls,
        retention: object = defaults.retention,
        retention_bytes: object = defaults.retention_bytes,
        segment_bytes: object = defaults.segment_bytes,
        segment_age: object = defaults.segment_age,
    ) -> TopicConfig:
        segment_size = parse_size(segment_bytes, "segment_bytes") or limits.segment_bytes_default
        if not limits.segment_bytes_min <= segment_size <= limits.segment_bytes_max:
            raise InvalidRequest(
                f"segment_bytes must be between {limits.segment_bytes_min} and "
                f"{limits.segment_bytes_max}, got {segment_size}"
            )
        return cls(
            retention_seconds=parse_duration(retention, "retention"),
            retention_bytes=parse_size(retention_bytes, "retention_bytes"),
            segment_bytes=segment_size,
            segment_seconds=parse_duration(segment_age, "segment_age"),
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TopicConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})
