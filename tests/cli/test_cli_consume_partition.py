"""`odradek consume --partition N` and `%p`: the Kafka partitions of the Kafka door.

Goal: a Kafka-minded user reading one partition with the native command line gets
exactly what a Kafka consumer assigned that partition gets through the Kafka door
(decision 0014): records a Kafka producer sent to a partition stay in it whatever
their key, records appended natively belong to their key's murmur2 hash. `%p` prints
each record's partition, also for a pattern and for a group member; a partition the
topic does not have, a negative one and `--partition` with `--group` are refused.

Method: a real `odradek serve` whose Kafka door makes topics of 3 partitions;
kafka-python produces to chosen partitions (keys that hash elsewhere) and reads each
partition back as the truth; native records come from `odradek produce --keyed`.
"""

from __future__ import annotations

import warnings

from odradek_process import Server, run

from odradek.ports import free_port

with warnings.catch_warnings():  # kafka-python's protocol tables use a deprecated importlib call
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

PARTITIONS = 3


def _kafka_partition(port: int, partition: int, count: int) -> list[tuple[int, bytes]]:
    consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{port}", enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition("orders.eu", partition)])
        consumer.seek_to_beginning()
        records: list[tuple[int, bytes]] = []
        for _ in range(200):
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend((record.offset, record.key) for record in batch)
            if len(records) >= count:
                break
        return sorted(records)
    finally:
        consumer.close()


def test_a_partition_is_what_the_kafka_door_serves(start_server: type[Server]) -> None:
    port = free_port()
    server = start_server(None, "--kafka-listen", f"127.0.0.1:{port}", "--kafka-partitions", str(PARTITIONS))
    producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{port}")
    for index in range(9):  # each to a partition of our choosing, not the key's
        producer.send("orders.eu", key=b"chosen-%d" % index, value=b"k", partition=index % PARTITIONS)
    producer.flush()
    producer.close()
    lines = b"".join(b"native-%d\tn\n" % index for index in range(30))
    assert run("produce", "orders.eu", "--keyed", server=server, stdin=lines).returncode == 0

    total = 0
    for partition in range(PARTITIONS):
        printed = run(
            "consume",
            "orders.eu",
            "--from-beginning",
            "--wait",
            "0",
            "--partition",
            str(partition),
            "--format",
            "%p %o %k\\n",
            server=server,
        )
        assert printed.returncode == 0, printed.stderr
        rows = [line.split(b" ") for line in printed.stdout.splitlines()]
        assert {row[0] for row in rows} == {str(partition).encode()}
        ours = [(int(row[1]), row[2]) for row in rows]
        assert ours == _kafka_partition(port, partition, len(ours))
        assert sum(1 for _, key in ours if key.startswith(b"chosen-")) == 3
        total += len(ours)
    assert total == 39

    everything = run(
        "consume", "orders.>", "--from-beginning", "--wait", "0", "--format", "%t %p %o\\n", server=server
    )
    assert len(everything.stdout.splitlines()) == 39
    assert {line.split(b" ")[1] for line in everything.stdout.splitlines()} == {b"0", b"1", b"2"}
    grouped = run(
        "consume",
        "orders.eu",
        "--group",
        "g",
        "--from-beginning",
        "--max",
        "39",
        "--format",
        "%p\\n",
        server=server,
    )
    assert sorted(grouped.stdout.split()) == sorted(
        line.split(b" ")[1] for line in everything.stdout.splitlines()
    )

    for extra, message in (
        (("--partition", "3"), b"3 Kafka partitions"),
        (("--partition", "-1"), b"0 or more"),
        (("--partition", "0", "--group", "g"), b"a group shares"),
    ):
        refused = run("consume", "orders.eu", "--from-beginning", "--wait", "0", *extra, server=server)
        assert (refused.returncode, message in refused.stderr) == (1, True), (extra, refused.stderr)
    code, errors = server.stop()
    assert code == 0, errors
