"""kcat's transactional producer against the Kafka door.

Goal: kcat (1.7, Debian's, on librdkafka 2.0) produces stdin in one transaction when
given ``transactional.id`` (it prints "Transaction successfully committed"), and a
read_committed kcat consumer reads every record once, in order.

Method: kcat as a subprocess against the in-process listener (conftest), as in
test_kafka_kcat.py; the records are also read back through the engine. Skipped when the
binary is missing (``./dev setup`` installs it with apt).
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from wire import door_values

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed (apt-get install kcat)")


def kcat(door: Any, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert KCAT is not None
    done = subprocess.run(
        [KCAT, "-b", door.bootstrap, *args], input=stdin, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.compat("kcat", "transactions")
def test_a_transactional_produce_is_read_committed(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    lines = [f"record-{i}" for i in range(50)]
    transactional = "transactional.id=kcat-" + topic_name
    produced = kcat(kafka_door, "-P", "-t", topic_name, "-X", transactional, stdin="\n".join(lines))
    assert "Transaction successfully committed" in produced.stderr
    consumed = kcat(
        kafka_door, "-C", "-t", topic_name, "-e", "-X", "isolation.level=read_committed", "-f", "%s\\n"
    )
    assert consumed.stdout.splitlines() == lines
    assert door_values(kafka_door, topic_name) == [line.encode() for line in lines]
