"""What a run produces: the limits, the systems as configured, and one figure per
(metric, system). These are plain dataclasses so the JSON is their ``asdict``."""

from __future__ import annotations

import dataclasses
from typing import Any

SCHEMA = "odradek-bench/1"

OK = "ok"
SKIPPED = "skipped"
NOT_AVAILABLE = "not yet available"
ERROR = "error"
STATUSES = (OK, SKIPPED, NOT_AVAILABLE, ERROR)


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    workload: str
    title: str
    unit: str
    higher_is_better: bool
    #: Name of the limit a payload bandwidth is compared with, if any.
    limit: str | None = None
    #: Compare with the limit only for systems that cross a socket (reads over TCP).
    limit_networked_only: bool = False


@dataclasses.dataclass
class SystemInfo:
    name: str
    title: str
    durability: str
    durability_label: str
    weaker_durability: bool
    networked: bool
    is_odradek: bool
    tuning: str
    status: str = OK
    note: str = ""
    versions: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Figure:
    metric: str
    system: str
    status: str
    value: float | None = None
    runs: list[float] = dataclasses.field(default_factory=list)
    warmup: float | None = None
    #: Payload (value bytes) per second, median over runs, for throughput metrics.
    payload_mib_per_second: float | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
