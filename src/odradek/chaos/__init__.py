"""The chaos test of cluster mode: a real cluster (3 agents, a 3-member etcd, an S3
store behind a fault proxy), workers appending through the client and the Kafka door
while faults are injected at random, a history of every operation and a checker of the
history against the topics read back at the end.

* ``history``: the operations as invoked and completed (JSON lines);
* ``checker``: what must hold of a history and the final logs, and the report;
* ``processes``, ``etcd``, ``stores``, ``agents``: the servers, as subprocesses on
  loopback ports (the store behind a fault proxy);
* ``faults``: the faults and the rotator that injects them;
* ``workload``: the workers and the failover probe;
* ``kafka_workload``: the Kafka-door workers (an idempotent librdkafka producer each);
* ``cluster``: the harness that puts them together (``scripts/chaos.py`` runs it).
"""
