"""Result types shared by the engine, the doors and the clients."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class AppendResult:
    """What an append assigned: offsets ``base_offset .. base_offset + count - 1`` and,
    for each key in the append, its version after the append."""

    base_offset: int
    count: int
    versions: dict[bytes, int]
    duplicate: bool = False  # True when an idempotent retry was answered from memory

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.count


@dataclasses.dataclass(frozen=True)
class TopicInfo:
    name: str
    first_offset: int
    next_offset: int
    records: int
    bytes: int
    keys: int
    segments: int
    config: dict[str, Any]
    created_at: float
    schema: Any = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TopicInfo:
        return cls(**data)
