"""Records per second a share consumer (KIP-932) reads through the Kafka door.

    python scripts/kafka_share_bench.py [--records N] [--max-poll-records M] [--consumers C]
                                        [--fetch-max-bytes B]

An embedded node with a Kafka listener on loopback; N records of 100 bytes appended
natively (10,000 a batch) into one topic; C confluent-kafka ShareConsumers of one share
group (implicit acknowledgement) polled in turn from one thread until every record was
received, then once more so that the last acknowledgements are settled. Prints the
seconds and records/s of the reading, and checks that the group settled every record
and that no record was received twice. ``--fetch-max-bytes`` sets the consumers'
``fetch.max.bytes`` (ShareFetch's MaxBytes; librdkafka's default is 50 MiB); the
highest delivery count seen shows whether records a fetch could not carry were
counted as deliveries.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import confluent_kafka

from odradek.node import Node
from odradek.protocols.kafka.server import start_kafka_listener

TOPIC = "bench.share"
GROUP = "bench-share"
BATCH = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--max-poll-records", type=int, default=500)
    parser.add_argument("--consumers", type=int, default=1)
    parser.add_argument("--fetch-max-bytes", type=int, default=52_428_800)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        node = Node.open(directory + "/data", fsync=False)
        door = start_kafka_listener(node, "127.0.0.1", 0)
        try:
            node.engine.create_topic(TOPIC)
            node.groups.leave(GROUP, node.groups.join(GROUP, TOPIC, ordering="none", start="earliest"))
            for first in range(0, args.records, BATCH):
                count = min(BATCH, args.records - first)
                node.engine.append(
                    TOPIC, [{"key": b"k%d" % (first + i), "value": b"x" * 100} for i in range(count)]
                )
            consumers = [
                confluent_kafka.ShareConsumer(
                    {
                        "bootstrap.servers": door.bootstrap,
                        "group.id": GROUP,
                        "max.poll.records": str(args.max_poll_records),
                        "fetch.max.bytes": str(args.fetch_max_bytes),
                    }
                )
                for _ in range(args.consumers)
            ]
            for consumer in consumers:
                consumer.subscribe([TOPIC])
            seen: set[int] = set()
            received = 0
            deliveries = 0  # the highest delivery count seen
            start = time.perf_counter()
            while len(seen) < args.records:
                for consumer in consumers:
                    polled = [m for m in consumer.poll(0.2) if m.error() is None]
                    received += len(polled)
                    seen.update(m.offset() for m in polled)
                    deliveries = max([deliveries, *(m.delivery_count() for m in polled)])
            elapsed = time.perf_counter() - start
            for consumer in consumers:
                consumer.poll(0.5)  # acknowledges the last poll's records
            settled = node.groups.committed(GROUP, TOPIC)[1]
            for consumer in consumers:
                consumer.close()
            print(
                f"{args.records} records, {args.consumers} share consumer(s), max.poll.records "
                f"{args.max_poll_records}, fetch.max.bytes {args.fetch_max_bytes}: {elapsed:.2f} s, "
                f"{args.records / elapsed:,.0f} records/s; received {received} (duplicates "
                f"{received - len(seen)}, highest delivery count {deliveries}), settled up to offset "
                f"{settled}"
            )
        finally:
            door.close()
            node.close()


if __name__ == "__main__":
    main()
