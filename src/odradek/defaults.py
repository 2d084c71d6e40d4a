"""Every default of the public API, once.

The engine, the embedded, remote and asyncio clients, the Flight door, the Kafka and
Schema Registry doors and the command line take their defaults from here, so that a
call means the same wherever it is made (``tests/test_api.py`` compares every client's
defaults with those of the API's protocols, ``odradek.api``). Bounds, and the defaults
of bounds (``read_records_max_default``), stay in :mod:`odradek.limits`; this module
names them where the API uses them. Names end with their unit. Each constant's
docstring (the string below it) is its entry in docs/api.md
(``scripts/api_reference.py``).
"""

from __future__ import annotations

from typing import Final

from odradek import limits

# -- connecting --------------------------------------------------------------------------

listen: Final = "127.0.0.1:8815"
"""Where ``odradek serve`` accepts native (Arrow Flight) connections."""

url: Final = f"grpc://{listen}"
"""Where ``odradek.connect()`` and the command line find a server when neither a URL nor
``$ODRADEK_URL`` is given: ``odradek serve``'s default listener."""

url_variable: Final = "ODRADEK_URL"
"""The environment variable that names the server when no URL is given."""

data_dir: Final = "./odradek-data"
"""The data directory of ``odradek.open()`` and ``odradek serve``."""

call_timeout_seconds: Final = 30.0
"""A remote client's bound on every call except reads and consumer polls (None: no
bound)."""

failover_seconds: Final = 30.0
"""How long a client of a cluster keeps following redirects and trying the other agents
before it gives up on a call (a failover takes the lease TTL, 3 s, plus recovery)."""

# -- topics ------------------------------------------------------------------------------

retention: Final = "7d"
"""How long a new topic keeps its records (Kafka's ``retention.ms`` default)."""

retention_bytes: Final = None
"""How many bytes a new topic keeps at most: no limit."""

segment_bytes: Final = None
"""A new topic's segment size: None means ``limits.segment_bytes_default`` (256 MiB)."""

segment_age: Final = "7d"
"""A new topic's active segment rolls once it is this old (Kafka's ``segment.ms``), so
retention can remove whole segments of a quiet topic."""

cleanup: Final = "delete"
"""A new topic's cleanup policy: ``delete`` removes whole segments by retention;
``compact`` keeps the latest record of each key; ``compact,delete`` does both;
``snapshot`` drops the events a key snapshot covers."""

delete_retention: Final = "1d"
"""How long a compacted topic keeps a tombstone (a keyed record with a null value) once
its segment was compacted (Kafka's ``delete.retention.ms`` default)."""

min_compaction_lag: Final = 0
"""Records younger than this are never compacted away (Kafka's ``min.compaction.lag.ms``
default: 0, none)."""

min_cleanable_dirty_ratio: Final = 0.5
"""A compacted topic is compacted once this share of its sealed bytes was never
compacted (Kafka's ``min.cleanable.dirty.ratio`` default)."""

compatibility: Final = "backward"
"""A new schema'd topic's compatibility mode (the Schema Registry's default)."""

snapshot_every: Final = 1000
"""A topic's reducer snapshots a key once it has had this many events since the last
multiple (at versions crossing 1,000, 2,000, ...): a replay from the snapshot then reads
at most about a thousand events, a few milliseconds."""

# -- appends -----------------------------------------------------------------------------

append_window: Final = limits.append_window_default
"""Appends of ``append_many`` written ahead of the oldest one's acknowledgement."""

# -- reads -------------------------------------------------------------------------------

start: Final = "earliest"
"""Where a read, or a new consumer group, begins."""

read_wait_seconds: Final = 1.0
"""A read ends once it is caught up and this long passes with nothing new."""

fetch_records_max: Final = limits.read_records_max_default
"""Records of one ``fetch`` (and of each batch a read yields) at most."""

fetch_bytes_max: Final = limits.read_bytes_max_default
"""Bytes of one ``fetch`` (and of each batch a read yields) at most."""

from_version: Final = 1
"""The first version ``read_key`` returns."""

wait_for_timeout_seconds: Final = 5.0
"""How long an append with ``wait_for`` waits for its waiters."""

# -- consumer groups ---------------------------------------------------------------------

ack_timeout_seconds: Final = 30.0
"""A delivery not settled within this long is delivered again; a member silent this
long leaves the group (Kafka's ``session.timeout.ms`` is 45 s, KIP-932's lock 30 s)."""

max_deliveries: Final = 5
"""Deliveries of one record before it goes to the dead-letter topic."""

ordering: Final = "key"
"""How a group dispatches: each key's records in version order, keys in parallel."""

poll_records: Final = 500
"""Deliveries one poll returns at most (Kafka's ``max.poll.records``)."""

poll_timeout_seconds: Final = 1.0
"""How long a poll waits for its first delivery."""

nack_delay_seconds: Final = 0.0
"""How long a nacked delivery waits before it is delivered again."""
