"""Crash test on an object store: `kill -9` never loses an acknowledged record.

Goal: the guarantee of tests/engine/test_crash.py, with the data on an object store
and the cache deleted after every crash: every acknowledged append is present at its
offsets after the restart, offsets are dense, key versions count 1, 2, 3..., and
retrying the last attempted append with its producer sequence writes it exactly once.

Method: the crash harness of tests/engine/test_crash.py (its writer child, kill at a
random moment, its invariant checks), the writer opening its data directory on the
store (store_crash_writer.py). After each kill the data directory is deleted and a new
engine attaches to the store (so the writer's agent is fenced each time, as a replaced
agent would be). ``ODRADEK_STORE_CRASH_CYCLES`` cycles on a directory store (default 30)
and a few on moto's S3 server; scripts/store-crash-soak.sh runs thousands.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from pathlib import Path

import pytest
from object_servers import S3Server

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))

import test_crash
from stores import moto_store

import odradek
from odradek.storage.agent import StoreSettings

WRITER = Path(__file__).with_name("store_crash_writer.py")
CYCLES = int(os.environ.get("ODRADEK_STORE_CRASH_CYCLES", "30"))
MOTO_CYCLES = 3
SETTINGS = StoreSettings(flush_seconds=0.002)
CHECKPOINT_SECONDS = (60.0, 0.05)  # the writer's checkpoint interval, one picked per cycle


def _crash_cycles(
    url: str, tmp_path: Path, cycles: int, monkeypatch: pytest.MonkeyPatch, writer: Path = WRITER
) -> None:
    monkeypatch.setattr(test_crash, "WRITER", writer)
    monkeypatch.setenv("ODRADEK_CRASH_STORE", url)
    data_dir = tmp_path / "cache"
    rng = random.Random(int(os.environ.get("ODRADEK_CRASH_SEED", "4321")))
    acks: dict[int, dict] = {}
    next_sequence = 0
    for cycle in range(cycles):
        # Half the cycles checkpoint often (a manifest every few flushes, the kill
        # falling anywhere around one), half only at start (the journal alone).
        monkeypatch.setenv("ODRADEK_CRASH_CHECKPOINT_SECONDS", str(rng.choice(CHECKPOINT_SECONDS)))
        for ack in test_crash.run_writer_until_killed(data_dir, next_sequence, rng.randrange(1 << 30), rng):
            acks[ack["seq"]] = ack
        shutil.rmtree(data_dir)  # the cache is gone: everything must come from the store
        with odradek.open(
            data_dir, store=url, store_settings=SETTINGS, retention_check_seconds=3600
        ) as client:
            if test_crash.TOPIC in client.engine.released_topics():  # killed between release and adoption
                client.engine.adopt_topic(test_crash.TOPIC)
            table = test_crash.check_invariants(client, acks)
            # Retry the last attempted append with its sequence: written exactly once.
            intent = json.loads((tmp_path / "intent.json").read_text())
            records = [{"key": k, "value": v.encode()} for k, v in intent["records"]]
            before = client.describe_topic(test_crash.TOPIC).next_offset
            result = client.append(test_crash.TOPIC, records, producer=(test_crash.PRODUCER, intent["seq"]))
            written_before = intent["seq"] in {
                int(v.split(b":")[0]) for v in table.column("value").to_pylist()
            }
            assert result.duplicate == written_before, f"cycle {cycle}: retry duplicate flag is wrong"
            if written_before:
                assert client.describe_topic(test_crash.TOPIC).next_offset == before
            if intent["seq"] in acks:
                assert result.base_offset == acks[intent["seq"]]["base"]
            acks[intent["seq"]] = {"seq": intent["seq"], "base": result.base_offset, "count": result.count}
            test_crash.check_invariants(client, acks)
            next_sequence = intent["seq"] + 1
    assert len(acks) > cycles, "the writer acknowledged too little to prove anything"


def check_and_retry(client: odradek.EmbeddedClient, acks: dict[int, dict], intent_path: Path) -> int:
    """Check the invariants, retry the writer's last attempted append with its producer
    sequence (written once: a duplicate at its first offset if it was acknowledged), note
    it acknowledged, check again; returns the writer's next sequence."""
    test_crash.check_invariants(client, acks)
    intent = json.loads(intent_path.read_text())
    records = [{"key": k, "value": v.encode()} for k, v in intent["records"]]
    result = client.append(test_crash.TOPIC, records, producer=(test_crash.PRODUCER, intent["seq"]))
    if intent["seq"] in acks:
        assert result.duplicate and result.base_offset == acks[intent["seq"]]["base"]
    acks[intent["seq"]] = {"seq": intent["seq"], "base": result.base_offset, "count": result.count}
    test_crash.check_invariants(client, acks)
    return int(intent["seq"]) + 1


@pytest.mark.slow
def test_sigkill_on_a_directory_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _crash_cycles(f"file://{tmp_path / 'store'}", tmp_path, CYCLES, monkeypatch)


@pytest.mark.slow
def test_sigkill_on_an_s3_store(moto_s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = moto_store(moto_s3)
    for name, value in store.env.items():
        monkeypatch.setenv(name, value)
    _crash_cycles(store.url, tmp_path, MOTO_CYCLES, monkeypatch)
