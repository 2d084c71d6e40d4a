"""Per-topic configuration: retention, segment size and cleanup policy (compaction),
with parsing of human units."""

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


# What alter_topic may change on a live topic: create_topic's names for the retention,
# segment and cleanup settings (a schema, a reducer and the snapshot cadence have calls
# of their own).
ALTERABLE_SETTINGS = (
    "retention",
    "retention_bytes",
    "segment_bytes",
    "segment_age",
    "cleanup",
    "delete_retention",
    "min_compaction_lag",
    "min_cleanable_dirty_ratio",
)


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


CLEANUP_POLICIES = ("delete", "compact", "compact,delete", "snapshot")


def parse_cleanup(value: object) -> str:
    """A cleanup policy: ``delete``, ``compact`` or ``compact,delete`` (Kafka's
    ``cleanup.policy``; the list in any order, any case), or ``snapshot`` (events a key
    snapshot covers are dropped, engine/snapshots.py)."""
    if not isinstance(value, str):
        raise InvalidRequest(f"cleanup must be one of {', '.join(CLEANUP_POLICIES)}, got {value!r}")
    parts = sorted({part.strip().lower() for part in value.split(",") if part.strip()})
    policy = ",".join(parts)
    if policy not in CLEANUP_POLICIES:
        raise InvalidRequest(f"cleanup must be one of {', '.join(CLEANUP_POLICIES)}, got {value!r}")
    return policy


_REDUCER_NAME = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?$")


def parse_reducer(value: object) -> str | None:
    """A reducer's name: an import path ``package.module:function`` or the name of an
    entry point of the ``odradek.reducers`` group; None for no reducer. Only its form
    is checked here (the engine imports it)."""
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or len(value) > limits.reducer_name_chars_max
        or not _REDUCER_NAME.match(value)
    ):
        raise InvalidRequest(
            "reducer must be an import path like 'package.module:function' or the name of an "
            f"'odradek.reducers' entry point (at most {limits.reducer_name_chars_max} characters), "
            f"got {str(value)[:100]!r}"
        )
    return value


def parse_snapshot_every(value: object) -> int:
    """How many events of a key between two snapshots its reducer makes (1 to
    ``limits.snapshot_every_max``)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limits.snapshot_every_max:
        raise InvalidRequest(
            f"snapshot_every must be an int from 1 to {limits.snapshot_every_max}, got {value!r}"
        )
    return value


def parse_ratio(value: object, what: str) -> float:
    """A ratio between 0 and 1 (a number or its text)."""
    if isinstance(value, bool):
        raise InvalidRequest(f"{what} must be a number between 0 and 1, got {value!r}")
    try:
        ratio = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidRequest(f"{what} must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= ratio <= 1.0:  # NaN too
        raise InvalidRequest(f"{what} must be a number between 0 and 1, got {value!r}")
    return ratio


def _duration_or_zero(value: object, what: str) -> float | None:
    """A duration that may be 0 (Kafka's ``delete.retention.ms=0``: at once); None and
    ``forever`` mean no limit."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return 0.0
    if isinstance(value, str) and value.strip() in ("0", "0s", "0ms"):
        return 0.0
    return parse_duration(value, what)


@dataclasses.dataclass(frozen=True)
class TopicConfig:
    """Settings of one topic. ``None`` retention means keep forever. The defaults are
    :mod:`odradek.defaults`' (``build()`` with no arguments gives them)."""

    retention_seconds: float | None = parse_duration(defaults.retention, "retention")
    retention_bytes: int | None = parse_size(defaults.retention_bytes, "retention_bytes")
    segment_bytes: int = limits.segment_bytes_default
    segment_seconds: float | None = parse_duration(defaults.segment_age, "segment_age")
    cleanup: str = defaults.cleanup
    delete_retention_seconds: float | None = parse_duration(defaults.delete_retention, "delete_retention")
    min_compaction_lag_seconds: float = 0.0
    min_cleanable_dirty_ratio: float = defaults.min_cleanable_dirty_ratio
    # Key snapshots made on the server (engine/reducers.py): the reducer's import path
    # or entry-point name, and how many events of a key between two of its snapshots.
    reducer: str | None = None
    snapshot_every: int = defaults.snapshot_every

    @property
    def compacted(self) -> bool:
        """Whether the topic keeps only the latest record of each key."""
        return self.cleanup.startswith("compact")

    @property
    def snapshot_cleanup(self) -> bool:
        """Whether events that a key snapshot covers are dropped (engine/snapshots.py)."""
        return self.cleanup == "snapshot"

    @property
    def deletes(self) -> bool:
        """Whether retention removes whole segments by age and size."""
        return self.cleanup.endswith("delete")

    @classmethod
    def build(
        cls,
        retention: object = defaults.retention,
        retention_bytes: object = defaults.retention_bytes,
        segment_bytes: object = defaults.segment_bytes,
        segment_age: object = defaults.segment_age,
        cleanup: object = defaults.cleanup,
        delete_retention: object = defaults.delete_retention,
        min_compaction_lag: object = defaults.min_compaction_lag,
        min_cleanable_dirty_ratio: object = defaults.min_cleanable_dirty_ratio,
        reducer: object = None,
        snapshot_every: object = defaults.snapshot_every,
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
            cleanup=parse_cleanup(cleanup),
            delete_retention_seconds=_duration_or_zero(delete_retention, "delete_retention"),
            min_compaction_lag_seconds=_duration_or_zero(min_compaction_lag, "min_compaction_lag") or 0.0,
            min_cleanable_dirty_ratio=parse_ratio(min_cleanable_dirty_ratio, "min_cleanable_dirty_ratio"),
            reducer=parse_reducer(reducer),
            snapshot_every=parse_snapshot_every(snapshot_every),
        )

    def settings(self) -> dict[str, object]:
        """This config as :meth:`build`'s keywords (what ``alter_topic`` starts from)."""
        return {
            "retention": self.retention_seconds,
            "retention_bytes": self.retention_bytes,
            "segment_bytes": self.segment_bytes,
            "segment_age": self.segment_seconds,
            "cleanup": self.cleanup,
            "delete_retention": self.delete_retention_seconds,
            "min_compaction_lag": self.min_compaction_lag_seconds,
            "min_cleanable_dirty_ratio": self.min_cleanable_dirty_ratio,
            "reducer": self.reducer,
            "snapshot_every": self.snapshot_every,
        }

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.reducer is None:  # a topic without a reducer reads as before reducers
            del data["reducer"], data["snapshot_every"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TopicConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})
