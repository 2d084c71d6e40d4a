"""`odradek serve`'s Kafka topic settings: auto-creation and the default partition count.

Goal: Kafka's `auto.create.topics.enable` and `num.partitions` have their equivalents,
`--[no-]kafka-auto-create` and `--kafka-partitions N`, read from flags, ODRADEK_*
variables and TOML with the usual precedence (TOML < environment < flags); bad values
are refused with a clear error naming the setting. Method: ``settings_from`` on parsed
command lines (the real parser), an environment dict and a TOML file; no server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from odradek.cli.main import build_parser
from odradek.cli.serve import Settings, settings_from
from odradek.errors import InvalidRequest


def _settings(*flags: str, environ: dict[str, str] | None = None) -> Settings:
    return settings_from(build_parser().parse_args(["serve", *flags]), environ or {})


def test_defaults_are_kafkas() -> None:
    settings = _settings()
    assert settings.kafka_auto_create is True
    assert settings.kafka_partitions == 1


def test_toml_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "odradek.toml"
    config.write_text("[serve]\nkafka_auto_create = false\nkafka_partitions = 4\n")
    from_file = _settings("--config", str(config))
    assert (from_file.kafka_auto_create, from_file.kafka_partitions) == (False, 4)
    environment = {"ODRADEK_KAFKA_AUTO_CREATE": "true", "ODRADEK_KAFKA_PARTITIONS": "6"}
    from_environment = _settings("--config", str(config), environ=environment)
    assert (from_environment.kafka_auto_create, from_environment.kafka_partitions) == (True, 6)
    flags = _settings(
        "--config", str(config), "--no-kafka-auto-create", "--kafka-partitions", "8", environ=environment
    )
    assert (flags.kafka_auto_create, flags.kafka_partitions) == (False, 8)
    assert _settings("--kafka-auto-create", environ={"ODRADEK_KAFKA_AUTO_CREATE": "no"}).kafka_auto_create


@pytest.mark.parametrize("value", ["0", "-1", "1025", "four", "2.5"])
def test_a_bad_partition_count_is_refused(value: str) -> None:
    with pytest.raises(InvalidRequest, match="kafka_partitions"):
        _settings("--kafka-partitions", value)


def test_a_bad_auto_create_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="kafka_auto_create"):
        _settings(environ={"ODRADEK_KAFKA_AUTO_CREATE": "sometimes"})
