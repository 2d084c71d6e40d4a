"""Every bound Odradek enforces, named with its unit last.

A limit exists so that one bad request cannot exhaust memory or disk for everybody else;
each comment says where the number comes from. Per-topic settings (retention, segment
size) live in :mod:`odradek.config`; these are the engine-wide ceilings.
"""

from __future__ import annotations

# DESIGN §3: topic names are at most 249 characters, as in Kafka (whose file names
# append a partition suffix to stay under 255).
topic_name_length_max = 249

# One append is one atomic frame on disk and one group-commit unit. 64 MiB keeps a
# frame well inside one segment and within gRPC's message budget with room for framing.
append_bytes_max_default = 64 * 1024 * 1024
append_records_max = 1_000_000

# A single key is an index key; Kafka's practical limit is far larger, but keys beyond
# a few KiB make the key index slow for everybody.
key_bytes_max = 4096

# Headers per record: names are UTF-8, values bytes.
header_count_max = 128

# Long-poll waits: a server must not hold a request open forever.
wait_seconds_max = 300.0

# A read returns at most this much per batch it yields, unless asked for less.
read_records_max_default = 100_000
read_bytes_max_default = 16 * 1024 * 1024

# Idempotent producers: results remembered per producer, so a retry of any of the
# last few in-flight appends is answered from memory (Kafka keeps 5 batches).
producer_results_remembered = 5
producer_id_length_max = 256

# Segments: default size at which a segment rolls.
segment_bytes_default = 256 * 1024 * 1024
segment_bytes_min = 64 * 1024
segment_bytes_max = 4 * 1024 * 1024 * 1024

# The key index buffers this many entries in memory before writing a sorted run.
# Small enough that a lookup's linear filter of the memtable stays well under a
# millisecond, large enough that flushes (a sort in a background thread) are rare.
key_index_memtable_entries_max = 262_144
# When this many runs of similar size exist they are merged into one.
key_index_merge_fan_in = 4

# Arrow Flight door: one gRPC message (a record batch of a DoPut, a ticket, an action
# body) is at most this large. An append is at most append_bytes_max_default, and its
# Arrow IPC framing adds a few hundred bytes, so the door allows 1 MiB of headroom.
flight_message_bytes_max = append_bytes_max_default + 1024 * 1024
# Tickets, descriptors' commands and action bodies are small JSON documents.
flight_command_bytes_max = 1024 * 1024
# How long `odradek serve` waits for in-flight requests to finish on SIGTERM/SIGINT
# before it closes the engine regardless (clients see the stream fail and retry).
shutdown_drain_seconds_max = 10.0
