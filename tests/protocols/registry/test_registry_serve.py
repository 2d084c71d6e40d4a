"""`odradek serve` and its Schema Registry listener: address settings, 'off', busy ports.

Goal: the registry door follows the Kafka listener's conventions: on by default at
127.0.0.1:8081, set by ODRADEK_REGISTRY_LISTEN or the TOML key ``registry_listen``,
'off' serves without it, a taken default port is a warning, a taken explicit address
stops the server with a clear error; the ready log names the registry's URL.
Method: real `odradek serve` subprocesses on free loopback ports (Kafka door off);
plain HTTP requests to the registry.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

from odradek_process import ODRADEK, Server

from odradek.ports import free_port

# Generous: a loaded machine may be slow to answer; no assertion is about speed.
http_timeout_seconds = 30.0


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=http_timeout_seconds) as response:
        assert response.headers["Content-Type"] == "application/vnd.schemaregistry.v1+json"
        return json.loads(response.read())


def test_the_environment_sets_the_registry_address(start_server: Callable[..., Server]) -> None:
    port = free_port()
    server = start_server("--kafka-listen", "off", env={"ODRADEK_REGISTRY_LISTEN": f"127.0.0.1:{port}"})
    assert _get(f"http://127.0.0.1:{port}/") == {}
    assert _get(f"http://127.0.0.1:{port}/subjects") == []
    code, errors = server.stop()
    assert code == 0, errors
    assert f"registry=http://127.0.0.1:{port}" in errors


def test_the_config_file_sets_the_registry_address(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "odradek.toml"
    config.write_text(f'[serve]\nkafka_listen = "off"\nregistry_listen = "127.0.0.1:{port}"\n')
    server = start_server("--config", str(config))
    assert _get(f"http://127.0.0.1:{port}/schemas/types") == ["AVRO", "JSON"]
    code, errors = server.stop()
    assert code == 0, errors


def test_off_serves_without_the_registry(start_server: Callable[..., Server]) -> None:
    server = start_server("--kafka-listen", "off", env={"ODRADEK_REGISTRY_LISTEN": "off"})
    code, errors = server.stop()
    assert code == 0, errors
    assert "registry=off" in errors


def test_a_taken_default_port_is_a_warning(start_server: Callable[..., Server]) -> None:
    with socket.socket() as holder:
        try:
            holder.bind(("127.0.0.1", 8081))
            holder.listen()
        except OSError:
            pass  # taken already, by something else: the case under test all the same
        server = start_server("--kafka-listen", "off")
        code, errors = server.stop()
    assert code == 0, errors
    assert "Schema Registry listener off" in errors
    assert "registry=off" in errors


def test_an_explicit_address_that_is_taken_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [*ODRADEK, "serve", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0"],
            capture_output=True,
            timeout=60,
            env={
                **os.environ,
                "ODRADEK_KAFKA_LISTEN": "off",
                "ODRADEK_REGISTRY_LISTEN": f"127.0.0.1:{port}",
            },
        )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr.decode()
