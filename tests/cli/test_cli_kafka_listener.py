"""`odradek serve` and its Kafka listener: default on, 'off', advertised address, busy port.

Method: real `odradek serve` subprocesses. A Kafka client (confluent-kafka) asks the
listener for metadata and must be told the advertised address; an explicitly requested
address that is taken must stop the server with a clear error, while 'off' serves
without the Kafka door. (The default address, 127.0.0.1:9092, is exercised by every
other serve test: when it is taken the server runs on with a warning.)
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from odradek_process import ODRADEK, Server

from odradek.ports import free_port


def test_listener_tells_clients_the_advertised_address(start_server: type[Server]) -> None:
    kafka = pytest.importorskip("confluent_kafka.admin")
    port = free_port()
    server = start_server(
        None, "--kafka-listen", f"127.0.0.1:{port}", "--kafka-advertised", f"localhost:{port}"
    )
    admin = kafka.AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
    brokers = admin.list_topics(timeout=10).brokers
    assert [(b.host, b.port) for b in brokers.values()] == [("localhost", port)]
    code, errors = server.stop()
    assert code == 0, errors


def test_off_serves_without_the_kafka_door(start_server: type[Server]) -> None:
    server = start_server(None, "--kafka-listen", "off")
    code, errors = server.stop()
    assert code == 0
    assert "kafka=off" in errors


def test_an_explicit_address_that_is_taken_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [
                *ODRADEK,
                "serve",
                "--data-dir",
                str(tmp_path / "d"),
                "--listen",
                "127.0.0.1:0",
                "--kafka-listen",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr.decode()
