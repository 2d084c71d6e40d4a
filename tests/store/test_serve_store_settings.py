"""`odradek serve --store` settings: flags, environment and TOML, bounds refused clearly.

Goal: --store, --store-flush-ms and --store-flush-bytes (ODRADEK_STORE,
ODRADEK_STORE_FLUSH_MS, ODRADEK_STORE_FLUSH_BYTES) reach the journal's settings with
the defaults of odradek.limits; values outside their bounds are refused naming the
bound; a server given a local data directory as its cache refuses to start.

Method: the CLI's parser and serve.settings_from, and one real `odradek serve` process.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from object_servers import unique_prefix
from odradek_process import ODRADEK
from stores import StoreURL

import odradek
from odradek import limits
from odradek.cli import serve
from odradek.cli.main import build_parser
from odradek.errors import InvalidRequest


def _settings(*flags: str, environ: dict[str, str] | None = None) -> serve.Settings:
    return serve.settings_from(build_parser().parse_args(["serve", *flags]), environ or {})


def test_the_defaults_and_the_flags() -> None:
    plain = _settings()
    assert plain.store is None
    assert plain.store_settings().flush_seconds == limits.store_flush_seconds_default
    assert plain.store_settings().flush_bytes == limits.store_flush_bytes_default
    given = _settings("--store", "memory://", "--store-flush-ms", "2", "--store-flush-bytes", "1MiB")
    assert given.store == "memory://"
    assert given.store_settings().flush_seconds == 0.002
    assert given.store_settings().flush_bytes == 1024 * 1024


def test_the_environment() -> None:
    settings = _settings(
        environ={
            "ODRADEK_STORE": "file:///tmp/x",
            "ODRADEK_STORE_FLUSH_MS": "5",
            "ODRADEK_STORE_FLUSH_BYTES": "64KiB",
        }
    )
    assert settings.store == "file:///tmp/x"
    assert settings.store_settings().flush_seconds == 0.005
    assert settings.store_settings().flush_bytes == 64 * 1024
    assert _settings(environ={"ODRADEK_STORE": "off"}).store is None


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--store-flush-ms", "0"),
        ("--store-flush-ms", "20000"),
        ("--store-flush-ms", "fast"),
        ("--store-flush-bytes", "1"),
        ("--store-flush-bytes", "1GiB"),
    ],
)
def test_values_out_of_bounds_are_refused(flag: str, value: str) -> None:
    with pytest.raises(InvalidRequest, match=flag.removeprefix("--").replace("-", "_")):
        _settings("--store", "memory://", flag, value)


def test_a_server_refuses_a_local_data_directory_as_its_cache(tmp_path: Path) -> None:
    with odradek.open(tmp_path / "data") as local:
        local.create_topic("orders")
    command = [*ODRADEK, "serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0"]
    command += [
        "--kafka-listen",
        "off",
        "--registry-listen",
        "off",
        "--store",
        f"file://{tmp_path / 'store'}",
    ]
    finished = subprocess.run(command, capture_output=True, timeout=60)
    assert finished.returncode == 1
    assert b"holds the data of an engine without a store" in finished.stderr
    with odradek.open(tmp_path / "data") as local:
        assert local.list_topics() == ["orders"]


def test_store_options_from_flags_environment_and_toml(tmp_path: Path) -> None:
    flags = ["--store", "s3://b/p", "--store-option", "secret_access_key=hush"]
    given = _settings(*flags, "--store-option", "Allow_HTTP=true")
    assert given.store_options == {"secret_access_key": "hush", "allow_http": "true"}
    assert "hush" not in repr(given)  # options may hold secrets: never printed with the settings
    environ = {"ODRADEK_STORE": "s3://b", "ODRADEK_STORE_OPTIONS": "region=eu-west-1, allow_http=true"}
    assert _settings(environ=environ).store_options == {"region": "eu-west-1", "allow_http": "true"}
    config = tmp_path / "odradek.toml"
    config.write_text('[serve]\nstore = "s3://b"\nstore_options = { region = "x", allow_http = true }\n')
    assert _settings("--config", str(config)).store_options == {"region": "x", "allow_http": "true"}
    with pytest.raises(InvalidRequest, match="KEY=VALUE"):
        _settings("--store", "s3://b", "--store-option", "endpoint")


def test_a_server_reaches_s3_with_store_options_alone(
    tmp_path: Path, moto_s3: Any, start_store_server: Any
) -> None:
    """Endpoint and credentials given as --store-option, none in the environment."""
    options = [
        f"--store-option={key}={'true' if value is True else value}" for key, value in moto_s3.options.items()
    ]
    url = StoreURL(moto_s3.url(unique_prefix()), {}, {})
    server = start_store_server(tmp_path / "cache", url, *options)
    with odradek.connect(server.url) as client:
        client.create_topic("orders")
        client.append("orders", [{"key": b"a", "value": b"1"}])
    server.stop()
    assert moto_s3.open(url.url.split("/", 3)[3]).list("wal/")
