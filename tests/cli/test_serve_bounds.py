"""`odradek serve`'s bounds settings: flags, ODRADEK_* variables and TOML keys.

Goal: the in-flight budget, connection caps and timeouts are read from each source with
the usual precedence (TOML < environment < flags), take units, refuse bad values with a
clear error, and reach each door's bounds (unset caps keep each door's own default).
Method: ``settings_from`` on parsed command lines (the real parser), an environment
dict and a TOML file; no server is started.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from odradek import limits
from odradek.cli.main import build_parser
from odradek.cli.serve import Settings, settings_from
from odradek.errors import InvalidRequest
from odradek.protocols import connections


def _settings(*flags: str, environ: dict[str, str] | None = None) -> Settings:
    return settings_from(build_parser().parse_args(["serve", *flags]), environ or {})


def test_defaults_keep_each_doors_own_bounds() -> None:
    settings = _settings()
    assert settings.inflight_bytes == limits.inflight_bytes_max_default
    assert settings.door_bounds(connections.KAFKA) == connections.KAFKA
    assert settings.door_bounds(connections.METRICS) == connections.METRICS


def test_toml_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "odradek.toml"
    config.write_text(
        '[serve]\ninflight_bytes = "64MiB"\nconnections_max = 10\nidle_seconds = "2m"\n'
        "request_read_seconds = 5\n"
    )
    settings = _settings(
        "--config",
        str(config),
        "--connections-per-peer-max",
        "3",
        environ={"ODRADEK_CONNECTIONS_MAX": "20", "ODRADEK_REQUEST_READ_SECONDS": "500ms"},
    )
    assert settings.inflight_bytes == 64 * 1024 * 1024
    assert settings.connections_max == 20  # the environment over the file
    assert settings.connections_per_peer_max == 3
    assert settings.idle_seconds == 120.0
    assert settings.request_read_seconds == 0.5
    kafka = settings.door_bounds(connections.KAFKA)
    assert (kafka.connections_max, kafka.connections_per_peer_max) == (20, 3)
    assert (kafka.idle_seconds, kafka.request_seconds) == (120.0, 0.5)
    flags = _settings(
        "--inflight-bytes", "1GiB", "--idle-seconds", "7", environ={"ODRADEK_IDLE_SECONDS": "9"}
    )
    assert flags.inflight_bytes == 1024**3 and flags.idle_seconds == 7.0


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [
        ("--connections-max", "0", "connections_max"),
        ("--connections-per-peer-max", "many", "connections_per_peer_max"),
        ("--inflight-bytes", "-5", "inflight_bytes"),
        ("--request-read-seconds", "soon", "request_read_seconds"),
        ("--idle-seconds", "0", "idle_seconds"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(flag: str, value: str, named: str) -> None:
    with pytest.raises(InvalidRequest, match=named):
        _settings(flag, value)
