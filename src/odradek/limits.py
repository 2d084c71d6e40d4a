"""Every bound Odradek enforces, named with its unit last.

A limit exists so that one bad request cannot exhaust memory or disk for everybody else;
each comment says where the number comes from. Per-topic settings (retention, segment
size) live in :mod:`odradek.config`; these are the process-wide ceilings. Modules that
use a bound may name it locally (``FRAME_BYTES_MAX = limits.segment_frame_bytes_max``),
but its value is set here. What is not here is not a bound: wire-format facts (a
varint's 10 bytes, a header's size) and timing intervals (how often a loop looks again)
stay beside the code they describe.
"""

from __future__ import annotations

# DESIGN §3: topic names are at most 249 characters, as in Kafka (whose file names
# append a partition suffix to stay under 255).
topic_name_length_max = 249

# One append is one atomic frame on disk and one group-commit unit. 64 MiB keeps a
# frame well inside one segment and within gRPC's message budget with room for framing.
append_bytes_max_default = 64 * 1024 * 1024
append_records_max = 1_000_000
# append_many writes this many appends ahead of the oldest acknowledgement: enough to
# keep the disk busy with one fsync while the next batches are prepared.
append_window_default = 8
# A DoPut stream may ask for at most this many appends in flight: each may hold a
# batch of up to append_bytes_max_default in the server's memory until it is durable.
append_window_max = 64

# A key is at most this long. Kafka bounds a record (message.max.bytes, 1 MiB by
# default), not its key, and clients produce keys of several KiB (composite and windowed
# keys); 4 KiB refused them. A key is also an index key: kept in memory by the key heads,
# written to key-index runs, hashed by group dispatch (groups/keys.py, a power table of
# this length) and by the Kafka door's murmur2 (partitions.py: 1.3 ms for a 64 KiB key,
# measured on the dev machine). 64 KiB is the longest the key heads' hash takes
# (engine/keyheads.py, _LENGTH_MAX); a longer key is refused (RequestTooLarge; the Kafka
# door answers MESSAGE_TOO_LARGE, which clients report at once instead of retrying).
key_bytes_max = 64 * 1024

# Headers per record: names are UTF-8, values bytes. Kafka bounds only the record's bytes;
# the Kafka door decodes headers one position at a time across a batch's records, about
# 29 us a round on the dev machine (1,024 headers: 24 ms a batch; 10,000: 0.3 s), so the
# count stays bounded. 1,024 is 8 times the former 128, which clients with tracing and
# lineage headers exceeded; past it the Kafka door answers INVALID_RECORD (not retried).
header_count_max = 1024

# Long-poll waits: a server must not hold a request open forever.
wait_seconds_max = 300.0

# A read returns at most this much per batch it yields, unless asked for less.
read_records_max_default = 100_000
read_bytes_max_default = 16 * 1024 * 1024

# Idempotent producers: results remembered per producer, so a retry of any of the
# last few in-flight appends is answered from memory (Kafka keeps 5 batches).
producer_results_remembered = 5
producer_id_length_max = 256

# A frame's declared length above this is damage, not a frame: any frame is bounded by
# the append size limit, and this guards recovery against a corrupt length field that
# would otherwise make it read gigabytes.
segment_frame_bytes_max = 1024 * 1024 * 1024

# The active segment keeps this many zeroed bytes written ahead of its frames, so that an
# append's fdatasync flushes data only, not a new file size (ext4 on the dev machine: p50
# 0.12 instead of 0.17 ms); written synchronously, a chunk this size costs ~0.3 ms once
# per megabyte of appends. Only with fsync on.
segment_preallocate_bytes = 1024 * 1024

# Segments: default size at which a segment rolls.
segment_bytes_default = 256 * 1024 * 1024
segment_bytes_min = 64 * 1024
segment_bytes_max = 4 * 1024 * 1024 * 1024

# The key index buffers this many entries in memory before writing a sorted run.
# Small enough that a lookup's linear filter of the memtable stays well under a
# millisecond, large enough that flushes (a sort in a background thread) are rare.
key_index_memtable_entries_max = 262_144
# A memtable holding at least this many entries is also written as a run once it is this
# old (checked as entries are added): a restart or a cluster takeover after a kill -9
# indexes again from the log only what no run covers, one frame at a time (single
# appends: ~30 us each), so what a steady topic leaves to index stays a few seconds'
# worth instead of up to key_index_memtable_entries_max records. A slow topic writes no
# run smaller than the floor.
key_index_spill_seconds = 10.0
key_index_spill_entries_min = 4096
# Indexing keys again from the log gathers the key, version and offset columns of many
# frames and adds them to the index this many records at a time, or once the frames
# gathered (whose batches those columns keep in memory) reach this many bytes.
key_index_reindex_records = 65_536
key_index_reindex_bytes = 64 * 1024 * 1024
# Entries of appends of a few records (engine/topic.py's small path) wait in Python
# lists until this many, then join the memtable as one Arrow table (~20 us, instead of
# ~10 us of Arrow calls for each append's own table); a lookup takes them in first.
key_index_pending_entries_max = 256
# When this many runs of similar size exist they are merged into one.
key_index_merge_fan_in = 4
# Past this many runs of a topic, the adjacent runs with the fewest entries are merged
# whatever their sizes: each lookup searches every run (a few microseconds each), and
# restarts can leave runs of alternating sizes that size tiers alone never merge.
key_index_runs_max = 16
# A key-index flush that failed (a full disk) is retried at most this often, on the
# next append; meanwhile appends go on into memory until this many full memtables
# wait to be written (2 x 262,144 entries, tens of MiB), then they are refused with
# the reason until a retry succeeds.
key_index_flush_retry_seconds = 1.0
key_index_frozen_max = 2

# Open files (storage/handles.py). Files the engine writes (active segments, head
# files, group progress) share one LRU of descriptors: this share of the process's
# open-files limit, between the two bounds; connections use the rest. Odradek raises its
# soft limit to the hard limit at start, or to open_files_wanted when the hard limit is
# unlimited.
file_handles_share = 0.5
file_handles_min = 64
file_handles_max = 16_384
open_files_wanted = 65_536
# Topics in one data directory. No topic keeps a descriptor, so the bound is memory and
# start time: an idle topic costs about 13 KiB and 0.7 ms to open on the 2-core dev
# machine (scripts/many_topics.py), so 100,000 topics are ~1.3 GiB and ~70 s to start.
topics_max_default = 100_000

# Arrow Flight door: one gRPC message (a record batch of a DoPut, a ticket, an action
# body) is at most this large. An append is at most append_bytes_max_default, and its
# Arrow IPC framing adds a few hundred bytes, so the door allows 1 MiB of headroom.
flight_message_bytes_max = append_bytes_max_default + 1024 * 1024
# Tickets, descriptors' commands and action bodies are small JSON documents.
flight_command_bytes_max = 1024 * 1024
# An action whose answer can grow without bound (a topic's schema history) answers in
# pages of about this many bytes, half the message limit.
flight_result_page_bytes = flight_command_bytes_max // 2
# An append result carries the versions of up to this many keys inside its JSON, more
# as Arrow IPC. Measured: one key costs ~1-5 us each way as JSON and ~10-25 us as an
# IPC stream (its setup); around 32 keys JSON costs as much, at 64 keys already more.
flight_result_inline_keys_max = 16
# How long `odradek serve` waits for in-flight requests to finish on SIGTERM/SIGINT
# before it closes the engine regardless (clients see the stream fail and retry).
shutdown_drain_seconds_max = 10.0

# Kafka door. A request frame is at most this large: Kafka's own default for
# socket.request.max.bytes (100 MiB). A larger declared size closes the connection
# before any of the frame is buffered.
kafka_frame_bytes_max = 100 * 1024 * 1024
# Elements of one array inside a request. Far above what a client sends (a Metadata
# request naming every topic of a large cluster); a hostile count is refused before
# anything is allocated, and a count larger than the bytes left is refused as well.
kafka_array_length_max = 1_000_000
# A compressed record batch may inflate to at most one append's worth of bytes.
kafka_decompressed_bytes_max = append_bytes_max_default
# Fetch long-poll: the wait a client asks for (fetch.wait.max.ms, 500 ms by default)
# is capped here. A waiting fetch is woken by the engine's arrival hook, whatever door
# the records came through; it does not poll.
kafka_fetch_wait_ms_max = 30_000
# Partitions per topic: more is allowed by Kafka, but the partition index keeps an entry
# per block and partition present (see kafka_partition_index_entries_max), so the index
# of a topic grows coarser as the count grows.
kafka_partitions_max = 1024
# Consumer groups: members per group (Kafka's group.max.size is unbounded by default;
# a bound keeps one misbehaving client from growing a group forever), committed
# metadata per offset (Kafka's offset.metadata.max.bytes), session timeouts accepted
# (Kafka's group.min/max.session.timeout.ms defaults) and the delay before the first
# rebalance of a new group completes (Kafka waits 3 s; a short delay keeps tests fast
# while still letting members that start together join one generation).
kafka_group_members_max = 1000
kafka_offset_metadata_bytes_max = 4096
kafka_session_timeout_ms_min = 1_000
kafka_session_timeout_ms_max = 1_800_000
kafka_initial_rebalance_delay_ms = 300
# Idempotent producers: batches remembered per producer and partition for dedupe, as in
# Kafka (5 in-flight requests per connection).
kafka_producer_batches_remembered = 5
# Engine calls (appends wait for fsync) run on a thread pool of this size.
kafka_engine_threads_max = 16
# Produce requests of one connection whose appends are written and await their fsync
# while the next requests are read (librdkafka keeps up to 5 in flight when idempotent).
kafka_pipelined_produces_max = 8

# The asyncio client (client/aio.py) runs the sync client's calls on threads: every
# read in progress holds one while it waits for data, so the pool is larger than the
# default executor's (min(32, cores + 4)); calls beyond it queue.
async_client_threads_max = 64

# Consumer groups (groups/). KIP-932 bounds a share group's in-flight records per
# partition (a few thousand by default); Odradek's unit is the key, so the bound is on
# the *window* of a topic: the records between the group's committed watermark and
# the furthest record it has read. A key that never completes holds the watermark, and
# other keys keep flowing until the window is full. 23 bytes of bookkeeping a record:
# 262,144 records is 6 MiB per topic and group.
group_window_records_max = 262_144
# One read of the log into a window; the engine caps a fetch at this many records.
group_fetch_records_max = 65_536
# One poll returns at most this many deliveries (a poll builds them in memory).
group_poll_records_max = 100_000
# An ack timeout longer than an hour hides dead consumers (KIP-932's lock duration
# has the same ceiling).
group_ack_timeout_seconds_max = 3600.0
# A nack may delay the redelivery for up to a day; delays are kept in memory only.
group_nack_delay_seconds_max = 86_400.0
# Deliveries per record before it goes to the dead-letter topic (attempt is a uint16).
group_max_deliveries_max = 1000
# A key may have at most this many records in flight (pipelining to one member).
group_in_flight_per_key_max = 10_000
# Members of one group at once; each poll scans the member list for expiry.
group_members_max = 10_000
# Group names: the dead-letter topic is "dlq.<group>", which must be a topic name.
group_name_length_max = topic_name_length_max - len("dlq.")
# Patterns of one group's subscription when it is a list (a Kafka share member
# subscribed to several topics, groups/subscription.py): the list is compared on every
# join and matched against every topic name on each refresh of the group's topics.
group_subscription_patterns_max = 1_000
# A group progress frame's body above this is damage, not a frame (a DONE frame of one
# ack of group_poll_records_max scattered offsets is 1.6 MB).
group_state_frame_bytes_max = 64 * 1024 * 1024
# The progress log of a group is rewritten as a snapshot once it grows past this.
group_state_log_bytes_max = 16 * 1024 * 1024

# -- Hostile peers: connections, partial requests and bytes in flight per door -----------
# (budget.py, protocols/connections.py; `odradek serve` settings override the defaults.)
# Bytes of requests all doors together hold in memory at once: Kafka frames from their
# size prefix until handled, Flight batches until acknowledged, registry bodies. Room
# for five Kafka frames of the largest size (kafka_frame_bytes_max, 100 MiB) at once,
# or eight appends of the largest size (append_bytes_max_default) in flight.
inflight_bytes_max_default = 512 * 1024 * 1024
# A request (a Kafka frame, an HTTP request's head and body) must arrive whole within
# this long of its first byte, waiting for room in the in-flight budget included;
# otherwise it is dropped and its buffer freed. Apache's mod_reqtimeout gives a request
# head 20-40 s; 30 s lets a 100 MiB Kafka frame arrive at 3.4 MB/s.
request_read_seconds_default = 30.0
# Kafka door. Kafka's max.connections and max.connections.per.ip are unbounded by
# default; a client process keeps one to three connections per broker, so 256 per peer
# address leaves room for many clients behind one NAT address, and 1,024 connections
# (an asyncio task and at most ~2 MiB of read buffer each) stay affordable. A connection
# with no request for Kafka's connections.max.idle.ms (10 minutes) is closed.
kafka_connections_max_default = 1024
kafka_connections_per_peer_max_default = 256
kafka_idle_seconds_default = 600.0
# Responses of one Kafka connection waiting to be written (its client is not reading
# them); then the connection's next request is not read. Twice the pipelined produces
# (kafka_pipelined_produces_max), so pipelining never waits on it.
kafka_responses_unwritten_max = 16
# Flight door: gRPC hides its connections from the service (pyarrow exposes no server
# channel arguments), so the bound is on calls in progress (a gRPC thread each),
# counted per peer address as gRPC reports it.
flight_calls_max_default = 1024
flight_calls_per_peer_max_default = 256
# Schema Registry door: a thread per connection. 256 is far above the few connections a
# client process keeps; 64 per peer address keeps one host from taking them all. A
# keep-alive connection silent for 30 s is closed (Confluent's client sends its next
# request at once or reconnects).
registry_connections_max_default = 256
registry_connections_per_peer_max_default = 64
registry_idle_seconds_default = 30.0
# Metrics endpoint: a thread per connection. A Prometheus server keeps one connection
# per target; 16 covers a few servers and people with curl, 4 per peer address.
metrics_connections_max_default = 16
metrics_connections_per_peer_max_default = 4
metrics_idle_seconds_default = 30.0

# -- Poison records: what every reader can decode --------------------------------------
# (records.py refuses the rest on append, so no stored record can stop a consumer.)
# Header names are UTF-8 (DESIGN §3) and at most header_count_max a record. A
# timestamp is one Python's datetime can hold, UTC years 1 to 9999: Python readers turn
# stored timestamps into datetimes (Delivery.timestamp, Arrow's to_pylist), and one
# outside that range fails them all.
timestamp_micros_min = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
timestamp_micros_max = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z

# -- The append stream (DoExchange {"kind": "append"}): one per remote client -------------
# (protocols/flight/append_stream.py, client/append_stream.py; docs/decisions/0009.)
# Single appends of one client in flight on its stream at once: the server stops reading
# the stream while this many wait for their fsync, and the client stops sending. Four
# times the async client's thread pool (client/aio.py, 64 threads), so a full pool never
# waits on it; each append in flight also holds its bytes in the in-flight budget
# (inflight_bytes_max_default), which bounds the memory they take.
append_stream_window_default = 256
# What a client may ask for: a thousand single-record appends in flight are well over
# what one fsync of the group commit covers on the dev machine (~0.15 ms each).
append_stream_window_max = 1024
# A client closes its append stream once it has been idle this long: a server that drains
# for a shutdown waits for the streams that are open, and a restarted server must not
# meet stale ones (as for the DoPut streams kept between appends, client/remote.py).
append_stream_idle_seconds = 0.5

# -- Grouped appends on the append stream (docs/decisions/0009, "Second round") -----------
# A client writes the single appends its threads queued while its last message was being
# written as one message, and the server answers a grouping client with every result one
# fsync made durable in one message. At most this many requests (or answers) a message:
# four times the 16 appenders of the bench's concurrent workload; their JSON (~100 bytes
# each with a few keys) stays far below flight_command_bytes_max.
append_stream_requests_max = 64
# A request joins a group only while the group's records and options stay under this
# many bytes: grouping saves a message's fixed cost (~50-100 us of CPU on the dev
# machine), nothing next to copying a batch this large; larger appends go alone.
append_stream_group_bytes_max = 256 * 1024

# -- Schemas ----------------------------------------------------------------------------
# A schema is parsed on every topic open, and a value type nested deeper than this makes
# every vectorized pass recurse as deep.
schema_bytes_max = 1024 * 1024
schema_depth_max = 32
schema_fields_max = 10_000

# -- Schema Registry door ----------------------------------------------------------------
# A request body is a schema and a few fields. A schema is at most schema_bytes_max; as
# a JSON string inside the body its quotes and backslashes are escaped, which at worst
# doubles it, so 4 MiB leaves room for that and the envelope.
registry_request_body_bytes_max = 4 * 1024 * 1024
# Compiled value types of stored versions kept for compatibility checks; a registry
# holds few distinct schemas, and past this many the cache starts over.
registry_compiled_cache_entries_max = 1024
# A request forwarded to the agent serving another cell (decision 0034): how long its
# answer may take (a registration is one engine call there), and how large the answer
# may be (a subject listing or a schema; beyond this the forward fails with 502).
registry_forward_seconds = 10.0
registry_forward_response_bytes_max = 32 * 1024 * 1024

# -- HTTP/JSON API (protocols/http_api, on the registry's listener; docs/http-api.md) ------
# A request body: JSON records are about 1.4 times their bytes (base64 values 1.33, plus
# field names), so 16 MiB carries a produce of ~10 MiB of values, well under the append
# limit (append_bytes_max_default); a larger load belongs on the Flight door.
http_request_body_bytes_max = 16 * 1024 * 1024
# Records one produce request may carry: each is a JSON object decoded in Python
# (~2 us each on the dev machine), so 10,000 cost ~20 ms of one thread.
http_produce_records_max = 10_000
# Records one read (or one key's read) answers with at most: the JSON of 10,000 records
# of ~100 B is ~2 MB, encoded in ~30 ms; ask again from next_offset for more.
http_read_records_max = 10_000
# A poll of a group member waits at most this long (a thread of the listener waits with
# it); 30 s is far under the connection's idle timeout plus the request deadline.
http_poll_seconds_max = 30.0
# SSE tails held open at once: each holds one listener thread (and connection slot of
# the registry listener, registry_connections_max_default 256), so half of them stay
# free for requests; per principal (per peer address when unauthenticated) 32, so that
# one user cannot take them all.
http_sse_streams_max = 128
http_sse_streams_per_principal_max = 32
# An SSE tail with nothing new sends a comment this often, so that proxies and clients
# (browsers' EventSource) keep the connection and a vanished client is noticed (its
# write fails). Below the common 60 s proxy read timeouts.
http_sse_heartbeat_seconds = 15.0
# A client that does not read its stream: a write blocked this long drops the stream
# (its thread and slot come back), as a request's read deadline does.
http_sse_write_seconds_max = 30.0
# On a stop the listener tells its tails to end (an `end` event) and waits at most this
# long for them before closing their connections: a tail wakes within a second.
http_sse_drain_seconds_max = 5.0

# -- the web console (odradek/console, served at /ui on the registry's listener) ---------
# Topics one console listing describes (sizes and rates): describing a topic costs
# ~20 us, so 2,000 are ~40 ms a refresh, every 2 s; past it the listing says so and the
# console asks for a narrower pattern.
console_topics_max = 2_000
# Samples of topic sizes kept for rates: one a second at most, the last 10 s of them,
# so a rate is the records and bytes of the last ~10 s over their span.
console_rate_samples_max = 10
console_rate_sample_seconds_min = 1.0
# Topics one pattern tail follows at once (each a fetch a round): a wildcard matching
# more is refused with the count, asking for a narrower pattern.
console_tail_topics_max = 200
# A tail from `recent` starts this many offsets before each topic's end: a screen of
# records to look at (the console keeps 500), not a replay of the topic.
console_tail_recent_records = 100
# Records one pattern tail sends per topic per round: one fetch of the HTTP API's size.
console_tail_records_per_round_max = 1_000
# A tail of a pattern over cells (console/cells_tail.py): events of every cell's tail
# waiting for a slow browser at most (then the cells' tails wait), and the bytes of one
# event a cell's tail may send (a record's JSON; a batch is at most
# produce_batch_bytes_max, a record's event base64 at most 4/3 of it).
console_tail_cells_events_max = 256
console_tail_event_bytes_max = 24 * 1024 * 1024
# A file of the console's built assets served at /ui: the whole build is ~30 KiB; a
# file past 4 MiB is not one of ours and is not read into memory.
console_static_file_bytes_max = 4 * 1024 * 1024

# -- Command line ------------------------------------------------------------------------
# `odradek produce` reads stdin in blocks of this size (lines are split out of each block
# by Arrow), and one append carries at most this many bytes of values, well under the
# append limit.
produce_stdin_block_bytes = 4 * 1024 * 1024
produce_batch_bytes_max = 16 * 1024 * 1024

# -- Consumer groups of both kinds (groups/directory.py, decision 0008) -------------------
# A question about the Kafka door's groups from another thread (odradek group list,
# /metrics) is answered by its event loop, which answers within milliseconds unless it
# is stuck; past this the question fails with Unavailable instead of hanging its caller.
# Ten seconds is Prometheus's default scrape timeout.
kafka_group_answer_seconds_max = 10.0

# -- Kafka door: groups of the consumer protocol (KIP-848, protocols/kafka/consumer_groups.py)
# The heartbeat interval the coordinator gives members: a change of assignment reaches a
# member on its next heartbeat and a handover takes about two, so this sets how fast a
# group converges. Kafka's default (group.consumer.heartbeat.interval.ms) is 5 s; we take
# its minimum, 1 s: one node serves few members, and a member's heartbeat is cheap.
kafka_consumer_heartbeat_interval_ms = 1_000
# A member silent this long is removed (Kafka's group.consumer.session.timeout.ms
# default; unlike the classic protocol the client does not choose it).
kafka_consumer_session_timeout_ms = 45_000
# A heartbeat resolves the group's topics before the state machine sees it; other
# heartbeats may add names meanwhile, so it looks again, at most this many rounds.
kafka_consumer_topic_rounds_max = 4

# -- Object-store agents (decision record 0011) -------------------------------------------
# A journal flush is cut this long after its first change (or once it holds this many
# bytes): an fsync waits for its flush, so this window plus one PUT is an append's
# latency. 20 ms keeps produce p99 within a PUT + 30 ms; WarpStream and Inkless batch
# 250 ms / 8 MiB for cost (a PUT per 250 ms), S3 Express answers in 5-10 ms. At 20 ms an
# agent makes at most 50 journal PUTs a second (`odradek serve --store-flush-ms`).
store_flush_seconds_default = 0.02
store_flush_bytes_default = 8 * 1024 * 1024
# Flushes uploading at once: at 60 ms a PUT, 32 in flight carry 500k records/s of 100 B
# in 20 ms windows with room to spare. Also the width of the window a new agent fences.
store_flushes_in_flight_max = 32
# A new agent fences up to 3 x store_flushes_in_flight_max empty slots at start, this
# many at once.
store_fence_threads = 16
# Journal bytes not yet in the store (written to the cache, waiting for their flush):
# past this, writes are refused until the store takes them.
store_journal_bytes_max = 256 * 1024 * 1024
# How long an fsync waits for the store before it fails with StoreUnavailable (the write
# may still become durable: an unknown outcome, as a timeout).
store_sync_timeout_seconds = 30.0

# -- Object-store checkpoints and the cache of remote files (storage/checkpoint.py) -----
# A checkpoint every minute, or sooner once 128 MiB of journal were uploaded since the
# last one: recovery then replays at most about that much journal (a second or two of
# GETs at S3's 100+ MiB/s per connection), and an agent with a thousand idle-but-
# written topics makes a thousand extent PUTs a minute ($0.005 at S3 Standard's price),
# not one per journal flush.
store_checkpoint_seconds_default = 60.0
store_checkpoint_bytes_default = 128 * 1024 * 1024
# Uploads, downloads and deletes of one checkpoint or recovery at once: half the client's
# requests in flight (object_requests_in_flight_max), the journal keeps the rest.
store_checkpoint_threads = 16
# Recovery reads the journal objects after the manifest whole in one pass (one GET each,
# not a header then the object) while together they are at most this many bytes; past
# it, headers first, then the objects to replay a pool's width at a time. Half the
# checkpoint trigger (store_checkpoint_bytes_default): a checkpoint every couple of
# seconds (cluster agents) leaves a few MiB, far below it.
store_recovery_read_whole_bytes = 64 * 1024 * 1024
# Pieces (base object and extents) of one file in a manifest, at most: a checkpoint
# merges a file's last pieces into its new extent past this (and whenever the last piece
# is no longer than the extent: storage/checkpoint.py, _merged_start), so a new owner
# downloads an active segment in a few GETs, not one per checkpoint since it was made.
store_record_pieces_max = 32
# File bytes read and not yet uploaded by a checkpoint: a few default segments' worth
# (segment_bytes_default), whatever the number of threads.
store_checkpoint_bytes_in_flight_max = 512 * 1024 * 1024
# Copies of remote (sealed) segments in <data dir>/cache/: 16 default segments (4 GiB),
# so catch-up readers of a few topics stay in the cache while the disk holds little.
store_cache_bytes_default = 4 * 1024 * 1024 * 1024
# Reads from the store by an agent that does not own a cell (engine/replica.py,
# decision 0042): the sealed segments it fetched are cached on its local disk up to
# this many bytes per cell (least recently used first out).
replica_cache_bytes_default = 1024 * 1024 * 1024
# It reads the cell's newest manifest at most this often, and only when a fetch comes:
# a cluster agent checkpoints every cluster_checkpoint_seconds, so a sealed segment is
# readable from the store about two seconds after its owner rolled it.
replica_refresh_seconds = 1.0
# Topics and sealed segments whose descriptions (metadata, frames) a replica keeps in
# memory; past these the oldest are described again when next read.
replica_topics_max = 4096
replica_segments_max = 4096
# A wildcard read's part of another cell reads at most this many of its topics from the
# store before asking the cell's agent for the rest, naming where each of them goes on
# (ReadRequest.starts): a topic name is at most 249 characters, so the request stays far
# below flight_command_bytes_max. The topics past these are read whole by that agent.
read_starts_max = 1024

# -- Object-store agents: outages and shutdown (engine/attachment.py) --------------------
# While the store takes no journal, the thread that waits to reopen topics whose fsync
# failed tries again this often: a wait fails at once while the store is stuck
# (storage/walwriter.py): a second between tries costs nothing beside an outage, lets a
# store that came back be noticed within about a second, and keeps the thread from
# spinning (and its log from repeating) on waits that fail in microseconds.
store_settle_retry_seconds = 1.0

# -- `odradek serve --store`: the journal settings a user may give (cli/serve.py) -------
# --store-flush-ms: at least 1 ms (below it a flush holds a change or two: a PUT per
# change), at most 10 s (an fsync waits out the window; 10 s is past every client's
# patience and still a third of store_sync_timeout_seconds, so a flush can be cut and
# PUT before its waiters give up).
store_flush_seconds_min = 0.001
store_flush_seconds_max = 10.0
# --store-flush-bytes: at least 4 KiB (a journal object's header and a few entries), at
# most the journal backlog bound (store_journal_bytes_max): a flush bigger than the
# backlog could never fill.
store_flush_bytes_min = 4 * 1024
store_flush_bytes_max = store_journal_bytes_max

# -- Object-store client (storage/objects.py) --------------------------------------------
# Attempts of one request before its error is raised: five retries after the first try.
# With the backoff below they wait at most 0.1 + 0.2 + 0.4 + 0.8 + 1.6 = 3.1 s in all, so
# a store that blinks for a few seconds (an S3 503 SlowDown burst, a restarting gateway)
# is ridden through while an append never waits much longer than that for its answer.
object_request_attempts = 6
# Exponential backoff with full jitter (a uniform draw below base x 2^retry, capped):
# 100 ms and 15 s are obstore's own defaults for its retries, which Odradek turns off to
# count and decide retries itself. Odradek caps at 5 s: past that, an append's caller is
# better told than kept waiting.
object_backoff_base_seconds = 0.1
object_backoff_max_seconds = 5.0
# One request (connect, send, answer) must finish within this, obstore's default
# (reqwest's whole-request timeout). A single PUT of a 4 GiB segment (segment_bytes_max)
# needs more: open the store that uploads them with a longer timeout.
object_request_timeout_seconds = 30.0
# Requests of one store in flight at once (a semaphore; retries wait outside it). A
# journal keeps store_flushes_in_flight_max (32) PUTs in flight; twice that leaves room
# for reads, listings and deletions running beside it.
object_requests_in_flight_max = 64
# An object key (prefix included) is at most 1,024 bytes of UTF-8: S3's limit, the
# smallest of S3, GCS (1,024) and Azure (1,024 characters).
object_key_bytes_max = 1024
# A single PUT carries at most 5 GiB: S3's limit for one PutObject (larger objects need
# a multipart upload, which Odradek does not use: one request, one outcome).
object_put_bytes_max = 5 * 1024 * 1024 * 1024
# A listing without an explicit limit returns at most this many keys, else it is refused
# (page with `after=`); a listed key costs ~200 bytes of Python objects, so 100,000 keys
# are ~20 MiB and 100 LIST requests of S3's 1,000-key pages.
object_list_keys_max = 100_000
# A LIST request returns at most this many keys: S3's page size (ListObjectsV2 MaxKeys),
# used to count LIST requests the same way for every backend.
object_list_page_keys = 1000

# --- Cluster mode: etcd (src/odradek/cluster/, docs/cluster.md) ---------------------------
# A cluster's name is one segment of letters, digits, '_' and '-' under /odradek/ in etcd;
# 63 characters, a DNS label's limit, so that it can name a Kubernetes release too.
cluster_name_length_max = 63
# An agent's id (a hostname, a pod name, a UUID): 253 characters, a DNS name's limit.
cluster_agent_id_length_max = 253
# An agent's advertised address, host:port: a DNS name (253) and a port.
cluster_address_length_max = 260
# An etcd key Odradek writes: the longest is /odradek/<cluster>/catalog/topics/<topic>,
# 9 + 63 + 16 + 249 = 337 bytes; 512 leaves room and keeps keys small (etcd keeps every
# key of its history in memory in its index).
cluster_key_bytes_max = 512
# A value Odradek writes to etcd (an agent's record, an owner, a topic's catalog entry).
# etcd refuses requests over 1.5 MiB (--max-request-bytes) and advises small values; a
# topic's config is a few hundred bytes, and record data never goes to etcd.
cluster_value_bytes_max = 64 * 1024
# Lease TTLs an agent may ask for. etcd raises a TTL below its minimum (1.5 election
# timeouts, 2 s with its defaults) and answers with the TTL granted; a minute is where a
# dead owner's topics would stay unavailable longer than anyone waits.
cluster_lease_ttl_seconds_min = 1
cluster_lease_ttl_seconds_max = 60
# The target: failover within 5 s with a 3 s lease.
cluster_lease_ttl_seconds_default = 3
# An agent renews its lease every TTL / 3, as etcd's own Go client does: two renewals
# may be lost before the safety margin is reached.
cluster_keepalive_per_ttl = 3
# An agent stops acting as an owner once the lease's remaining time (counted from when
# the last renewal was *sent*) falls below TTL x this ratio, i.e. a third of the TTL
# before etcd can expire it (Bufstream and Kafka's KRaft brokers fence themselves the
# same way); the margin covers scheduling delays of the agent's own event loop.
cluster_lease_margin_ratio = 1 / 3
# One etcd request (connect, send, answer) must finish within this, then the next
# member is tried; etcd's own client waits 5 s for a dial.
cluster_request_timeout_seconds = 5.0
# A request is retried on other members for at most this long: a leader election takes
# about one election timeout (1 s by default) plus a few heartbeats.
cluster_retry_seconds_max = 15.0
# etcd endpoints given to one client (--etcd URL,URL,...): a cluster has 3, 5 or 7.
cluster_endpoints_max = 16
# A cluster agent's engine writes a checkpoint this often (instead of
# store_checkpoint_seconds_default, 60 s): a new owner replays the journal written since
# the last checkpoint, one object per flush (up to a few hundred a second under single
# appends: a lone waiter cuts its flush at once), and failover is the lease TTL plus that
# replay. A checkpoint uploads what changed since the last one: a few PUTs (active
# segments' extents, derived files, the manifest), 86,400 a day at 1 s, against the
# journal's up to 50 a second; 1 s keeps a takeover's replay under a second on the
# development machine's S3 server (BENCHMARKS.md, cluster mode).
cluster_checkpoint_seconds = 1.0
# A handover (odradek cluster handover) names its target agent in etcd for this long: the
# target must take over within it (a checkpoint and an attach: about a second), after
# which any agent may.
cluster_handover_seconds = 10
# Agents a client may be given (odradek.connect("grpc://a1,a2,...")) and learn from redirects.
cluster_client_urls_max = 64
# Keys returned by one listing of agents, owners or topics; a listing past this is
# refused rather than loading an unbounded answer into memory.
cluster_list_keys_max = 100_000
# Cells of one cluster: the home cell `_cell` (the store prefix's root) and `_cell.1` ..
# `_cell.63` (`cells/1/` .. `cells/63/` under it). A cell is one engine (a journal, a
# manifest) owned by one agent at a time, several per agent possible; 64 is more agents
# than one etcd cluster's leases and watches are meant for, and keeps the placement
# counts every agent keeps a short table.
cluster_cells_max = 64
# A group member subscribing to a pattern over several cells (decision 0038) waits for
# records in every cell at once, each cell's part for at most this long at a time, and
# answers once a part brings some: a record arriving while the member waits reaches it
# within this, and a member waiting with nothing to read costs each other cell's agent
# one poll per this interval.
cluster_group_poll_slice_seconds = 0.2
# A cluster client remembers which agent served each topic it used (a cluster whose
# topics are spread over cells) for at most this many topics, the oldest forgotten first.
cluster_client_routes_max = 10_000
# The placement catalog (catalog/cells/<topic>: which cell holds each topic) is listed
# in pages of this many keys, all read at the first page's revision: a page of 1,000
# placements is ~100 KiB, far below gRPC's 4 MiB answer limit (which one answer of some
# 40,000 placements would pass).
cluster_placement_page_keys = 1000
# Placements one listing loads in all (every agent keeps them all in memory, ~200 bytes
# each in its view): a cluster with more topics than this is refused with a clear error
# rather than loaded without bound.
cluster_placements_max = 1_000_000
# Keys one etcd transaction writes (a bulk placement is cut into transactions of this
# many): etcd's --max-txn-ops default, which a server refuses requests over.
cluster_txn_ops_max = 128

# --- Cluster status (`odradek cluster status`, src/odradek/cluster/status.py) -------------
# Each etcd endpoint's health probe (status, alarms, member list) must answer within this;
# the probes run side by side, so a silent member costs the whole check this much once.
# etcdctl's own --dial-timeout is 2 s.
cluster_status_endpoint_seconds = 2.0
# Agents and owner keys shown: a screen's worth and more; each agent shown costs one
# lease time-to-live request. The totals are shown whatever the cap.
cluster_status_agents_max = 1000
cluster_status_owners_max = 1000
# Lease time-to-live requests in flight at once: 1,000 agents at 1 ms per request over a
# LAN are read in ~30 ms; all of them share one endpoint timeout.
cluster_status_lease_requests_concurrent_max = 32

# --- etcd over TLS and with a user (src/odradek/cluster/etcd_client.py) ------------------
# A CA bundle, certificate or key file (--etcd-ca, --etcd-cert, --etcd-key) is read whole
# at start. The largest real one is a CA bundle (Mozilla's, about 220 KiB); 1 MiB leaves
# room and refuses a wrong file before it is loaded.
etcd_tls_file_bytes_max = 1024 * 1024
# --etcd-password-file holds one line. etcd hashes passwords with bcrypt, which reads at
# most 72 bytes; 4 KiB refuses a wrong file.
etcd_password_file_bytes_max = 4096
# A request etcd refuses for its token (expired, unknown after a member restart) is
# retried after this many new Authenticates: once, as etcd's own Go client does.
etcd_token_renewals_per_request_max = 1

# --- Chaos run's Kafka-door worker (src/odradek/chaos/kafka_workload.py) -----------------
# Produces of one worker awaiting their delivery report: each holds a record of a few
# bytes in the client and a row in the history. librdkafka queues up to 100,000 by
# default; a worker keeps far fewer so that a fault leaves a bounded number unknown.
chaos_kafka_produces_in_flight_max = 1024
# librdkafka's message.timeout.ms (default 300 s): a produce not acknowledged within this
# is reported failed (outcome unknown). A failover takes ~10 s (a paused owner ~17 s at
# most) in the measured chaos runs (docs/cluster.md); a minute covers several in a row.
chaos_kafka_message_timeout_ms = 60_000
# At the end of a run a worker's producer gets this long to have its in-flight produces
# acknowledged before they are purged (outcome unknown); under the harness's 60 s wait
# for its workers to stop, and more than a failover in case one is still going on.
chaos_kafka_close_seconds = 20.0
# Creating the Kafka topic of the chaos run through the Kafka door's admin API.
chaos_kafka_admin_seconds = 30.0

# --- Kafka door: the partition kept with each record (docs/decisions/0014) --------------
# The partition index summarizes a topic's log in blocks of about this many frame bytes:
# per block and partition the first and last offset, the record count and the largest
# timestamp. A read of one partition decodes at most the frames of one block that hold it
# beside others'; 1 MiB is what a consumer fetches per partition by default
# (max.partition.fetch.bytes), so one block answers about one fetch.
kafka_partition_index_block_bytes = 1024 * 1024
# Entries (block by partition present, 48 bytes each) one topic's index keeps at most:
# 12 MiB. Past it, neighbouring blocks merge in pairs (the index gets coarser, never
# larger): with 8 partitions that is 32,768 blocks, 32 GiB of log at 1 MiB a block.
kafka_partition_index_entries_max = 262_144
# Log bytes one Fetch plans to decode beyond the records it returns (a partition whose
# records are sparse among others'): 64 times a partition's default fetch size. Without it
# a fetch of a partition with one record a block could decode the whole log.
kafka_fetch_scan_bytes_max = 64 * 1024 * 1024

# --- TLS on the doors of `odradek serve` (src/odradek/protocols/tls.py) ------------------
# A certificate chain, key or CA bundle (--tls-cert, --tls-key, --tls-ca, and a client's
# tls_ca/tls_cert/tls_key) is read whole, at start and on each reload. The largest real
# one is a CA bundle (Mozilla's, about 220 KiB), as for etcd's files; 1 MiB leaves room
# and refuses a wrong file before it is loaded.
tls_file_bytes_max = 1024 * 1024
# A TLS handshake on the Kafka and HTTP doors must end within this, or the connection is
# closed: a peer that opens a socket and sends nothing holds no thread or task longer.
# asyncio's default is 60 s; a handshake over a WAN takes a few round trips (< 1 s), so
# 10 s leaves room for a loaded peer and frees a slow-loris handshake six times sooner.
tls_handshake_seconds_max = 10.0

# --- compacted topics (engine/compaction.py, docs/decisions/0015) -----------------------
# How often the engine looks for compacted topics worth a round (Kafka's log cleaner
# backs off 15 s when it finds nothing to clean: log.cleaner.backoff.ms).
compaction_check_seconds = 15.0
# A compaction round's reads and writes together: 64 MiB/s, a quarter of what one SSD
# sustains in the dev machine's measurements, so appends keep the disk's larger share
# (Kafka's log.cleaner.io.max.bytes.per.second has no bound by default).
compaction_bytes_per_second = 64 * 1024 * 1024
# Records of the dirty part one round maps to their key's latest offset. Kafka's cleaner
# dedupe buffer is 128 MiB at 24 bytes an entry, about 5.6M keys; ours holds the key
# bytes too (an Arrow group_by), so 4M records of 16-byte keys take about 100 MiB.
compaction_map_records_max = 4_000_000
# Compacted topics `odradek cluster status` lists one by one, the worst dirty ratio
# first: a screen's worth; its totals cover every compacted topic whatever the cap.
compaction_lag_topics_max = 20
# A round due (the dirty ratio at its trigger) for this long without one finishing is a
# warning of `odradek cluster status`: 20 checks (compaction_check_seconds). A round
# starts within a check and then runs at compaction_bytes_per_second, which reads and
# writes about 19 GiB in 5 min: longer says its rounds fail or cannot keep up.
compaction_lag_warning_seconds = 20 * compaction_check_seconds

# --- key snapshots (engine/snapshots.py, docs/decisions/0018) ---------------------------
# The state of one snapshot. It travels whole in one Flight action whose body is at most
# flight_command_bytes_max (1 MiB) and carries it as base64 (4/3 of its size): 512 KiB
# leaves room for the rest of the body. Kafka's default max.message.bytes is 1 MiB too.
snapshot_state_bytes_max = 512 * 1024
# Snapshot rows one cleanup="snapshot" round reads from the snapshot log to learn which
# versions each key's latest snapshot covers: like compaction_map_records_max (4M
# records of 16-byte keys take about 100 MiB as Arrow columns). A larger log is read in
# part; the keys left out keep their events until a later round.
snapshot_cleanup_keys_max = 4_000_000
# A topic's reducer (engine/reducers.py) snapshots a key every snapshot_every events, at
# most every snapshot_every_max: a billion, past any key's history that a replay could
# read (a larger value would mean "never", which is no reducer).
snapshot_every_max = 1_000_000_000
# How often the reducer thread looks for keys to snapshot: a second, so a replay from
# the snapshot is at most a second's events longer than snapshot_every.
reducer_check_seconds = 1.0
# Records a reducer round reads per topic (their keys and versions, then the due keys'
# events): 100,000 records, a read's default batch (read_records_max_default), so a round
# of one topic takes about a second of the thread and a busy topic waits for the next.
reducer_records_per_round_max = 100_000
# The import path or entry-point name of a reducer: Python's longest dotted paths are a
# few hundred characters; 1,000 refuses garbage before it is imported.
reducer_name_chars_max = 1000
# How long closing the engine waits for a reducer round to stop (it stops before its next
# key): a reducer is user code that may hang, and a close must end; 30 s is a thousand
# slow folds. A round still running then is left on its daemon thread.
reducer_close_seconds_max = 30.0

# -- authentication (security/, docs/security.md) -----------------------------------------
# SCRAM iterations of a new credential: Kafka's own minimum and librdkafka's default
# (RFC 7677 recommends at least 4096); a PLAIN check costs one PBKDF2 of this many rounds.
scram_iterations_default = 4096
# Users and API tokens a credential store holds at most: the store is one JSON document
# read whole at start (a few hundred bytes per entry: ~10 MiB at the cap).
security_users_max = 10_000
security_tokens_max = 20_000
# A user name or a token name: a Kafka principal name stays short; this bounds the store
# and every log line naming one.
security_name_chars_max = 256
# Tenants (decision 0028): a tenant name is one topic-name segment; its prefix
# "_t.<tenant>." takes that many characters of every one of its topic names.
tenant_name_length_max = 64
tenants_max = 10_000
# A password: long passphrases fit; PBKDF2 over more is only work for an attacker to ask.
security_password_bytes_max = 1024
# A credential the doors read (an HTTP Authorization header, a Flight header, a Kafka
# SaslAuthenticate message): a JWT with many claims fits in 16 KiB (Kafka's own default
# for sasl.oauthbearer tokens is far below it).
security_credential_bytes_max = 16 * 1024
# Verified password checks remembered (per process) so that a Flight or HTTP client
# sending Basic credentials on every call costs one PBKDF2 per this period, not per call.
security_password_cache_entries_max = 4096
security_password_cache_seconds = 60.0
# A JWKS file or URL: read whole, at most this size, within this time; a URL is fetched
# again at most this often (a key id not in the set fetches it at once, at most once per
# the refresh period), so rotated keys are picked up.
jwks_bytes_max = 1024 * 1024
jwks_fetch_seconds_max = 10.0
jwks_refresh_seconds = 300.0
# Clock skew allowed on a JWT's exp/nbf/iat (PyJWT's leeway): NTP keeps hosts within this.
jwt_leeway_seconds = 30.0
# A Kafka connection must finish SASL within this many requests before it authenticated
# (a handshake and a SCRAM exchange take three); more is a confused or hostile client.
kafka_sasl_requests_max = 8
# Agents sharing a credential store (an object store) read it again this often, so that a
# revoked token or a removed user is refused everywhere within seconds, and at most this
# often when a credential is not found (a user added on another agent), one HEAD request.
security_refresh_seconds = 5.0
security_refresh_seconds_min = 1.0
# A cluster keeps each security document (the credential store, the bindings, the quotas)
# as one etcd key (decision 0029). etcd refuses a request over its --max-request-bytes
# (1.5 MiB by default) and a put carries the key and framing beside the value: a document
# is at most 1 MiB, and a change that would make it larger is refused. (A user with both
# SCRAM mechanisms is about 590 bytes of JSON and a token 160: some 1,400 users with a
# token each fit, fewer than security_users_max; a data directory or an object store
# holds the larger stores.)
security_document_bytes_max = 1024 * 1024
# A long-lived stream (a Flight read, subscription or append stream, an SSE tail, a Kafka
# connection) checks its principal again (its token or user still there, its rights over
# what it reads or writes) as soon as the credentials or the bindings change, at its next
# batch or request, and at least this often while it is idle or unchanged (an expiring
# token; a change another agent made, read within security_refresh_seconds).
security_stream_recheck_seconds = 2.0

# -- access control lists (security/acl.py, decision 0020) ---------------------------------
# Bindings a server holds at most: the store is one JSON document read whole (about 200 B
# a binding: 2 MiB at the cap) and a decision scans a principal's bindings of one resource
# type once; Kafka deployments with thousands of ACLs exist, tens of thousands are rare.
acl_bindings_max = 10_000
# A binding's pattern: a topic name is at most 249 characters (names.py); a subject or a
# group id gets four times that before it is refused as garbage.
acl_pattern_chars_max = 1000
# Decisions remembered per authorizer, (principal, operation, resource) -> allowed: a
# thousand principals each touching fifty resources; the cache is emptied when full.
acl_decisions_cached_max = 50_000

# --- quotas and metering (src/odradek/security/quotas.py, decision 0021) ----------------
# Rates are measured over sample windows as Kafka does: quota.window.num (11) samples of
# quota.window.size.seconds (1 s); a rate is the sum of the samples over the time they span.
quota_window_count = 11
quota_window_seconds = 1.0
# A throttle is at most the span the rate is measured over (11 windows of 1 s): past it
# the samples that made the rate are forgotten anyway. Kafka bounds its request quota's
# throttle to one window and lets a byte-rate throttle grow with the request.
quota_throttle_seconds_max = quota_window_count * quota_window_seconds
# Quota entities (user, client-id, user+client-id, their <default>s) the settings hold:
# one JSON document read whole at start, as the credential store (security_users_max).
quota_entities_max = 10_000
# Rate sensors kept in memory, each 3 * 11 floats: at most this many in total (the least
# recently used goes first), and at most this many per user, so that one principal
# cycling client ids evicts only its own (a sensor forgotten restarts its rate at 0).
quota_sensors_max = 10_000
quota_sensors_per_user_max = 64
# A sensor unused this long is dropped (Kafka expires idle quota sensors after an hour).
quota_sensor_idle_seconds = 3600.0
# Principals /metrics names with a label of their own; the rest add up under "other", so a
# server with many users keeps a bounded series count (Prometheus' advice: labels of
# bounded cardinality, a few hundred series per metric at most).
metering_principals_max = 100
# Tenants metered under a label of their own on /metrics (decision 0028), the rest under
# "other".
metering_tenants_max = 100
# A tenant's stored bytes against its storage_bytes quota (engine/tenant_storage.py): the
# running total (each append adds its batch's bytes) is summed again from the topics'
# segment sizes, held in memory, at most this often (one pass over the open topics), and
# at the next append after a topic or records are deleted or retention or compaction ran.
tenant_storage_refresh_seconds = 1.0

# --- materialized key views and synchronous commit (src/odradek/views/, decision 0019) --
# Views one node keeps at most: each has an applier thread of its own, so a slow reducer
# holds back only its view; 64 threads stay well within a process's means.
views_max = 64
# The bytes of one view's table (keys and states) kept in memory at most: 256 MiB, a
# quarter of the 1 GiB the dev machine gives a server; a view past it stops applying
# with a clear error in describe_view instead of growing until the process dies.
view_bytes_max = 256 * 1024 * 1024
# Records an applier reads in one fetch: the size of a consumer poll's window, so one
# batch of dicts for the reducer stays a few MiB.
view_apply_records_max = 10_000
# Bytes an applier reads in one fetch, roughly (a fetch's default bytes / 4).
view_apply_bytes_max = 4 * 1024 * 1024
# A view's table and offsets are checkpointed at most this often while it applies (and
# when the node closes): a crash re-applies at most about this many seconds of records.
view_checkpoint_seconds = 1.0
# A view of the home cell over a cluster whose topics are spread over cells looks for
# new records of the other cells' topics this often (their arrivals wake no view;
# decision 0041): the delay a record of another cell takes to reach the view, at most.
view_cells_poll_seconds = 0.5
# Changed keys held beside the sorted table before they are merged into it: a merge is
# one Arrow sort of the table, so 65,536 changes cost one sort per that many updates.
view_delta_entries_max = 65_536
# Rows one view_scan returns at most: as a read batch (defaults.fetch_records_max).
view_scan_rows_max = 100_000
# A reducer or key function's import path ("package.module:function") in characters:
# Python's own names are far shorter; the bound refuses garbage before an import.
view_import_path_chars_max = 512
# Waiters one append may name in wait_for: a handful of groups and views is the use.
wait_for_waiters_max = 16
# Seconds an append may wait for its waiters: as long as a read may wait (wait_seconds_max).
wait_for_timeout_seconds_max = 300.0
# A waiting append looks again at least this often even if no apply or ack woke it
# (a view deleted meanwhile, a group closed): never a tight loop.
wait_for_recheck_seconds = 1.0
# How long deleting a view or closing the node waits for its applier to finish the batch
# under way: a reducer is user code that may hang, and a close must end; 30 s is a
# thousand slow reducer calls. A reducer still running then is left on its daemon thread.
view_stop_seconds_max = 30.0
# A checkpoint rewrites the whole table: a large one is checkpointed less often than
# view_checkpoint_seconds, so that checkpoints write at most this many bytes a second
# (as compaction_bytes_per_second: a quarter of the SSD). Encoding 114 MiB of table
# (1M keys) took 0.4 s on the dev machine, so a 256 MiB view checkpoints every 4 s.
view_checkpoint_bytes_per_second = 64 * 1024 * 1024

# -- Kafka transactions (protocols/kafka/transactions.py, decision 0016) ------------------
# Transactional ids the coordinator keeps state for (a small document each, loaded at
# start): Kafka keeps every id until transactional.id.expiration.ms (7 days); a bound
# keeps the start-up load and the directory small. An id beyond it is refused.
kafka_transactional_ids_max = 10_000
# A transactional.id's length: Kafka bounds none; it is kept in a document and named in
# log lines (the file is named by its hash).
kafka_transactional_id_chars_max = 1024
# Transactions open at once (each holds a staging file open): Kafka bounds none; a
# thousand concurrent exactly-once producers is far beyond a one-node server's use.
kafka_open_transactions_max = 1_000
# Records one transaction stages before its commit (Kafka has no such bound; its
# producers' batches are at most message.max.bytes each): one topic-partition's share is
# applied as appends of at most append_bytes_max_default, and the whole staging area
# (kafka_open_transactions_max of these) lives in files, not memory.
kafka_transaction_staged_bytes_max = 256 * 1024 * 1024
# transaction.timeout.ms a producer may ask for: Kafka's transaction.max.timeout.ms
# default (15 minutes). Kafka's clients ask for 60 s by default.
kafka_transaction_timeout_ms_max = 900_000
# How often open transactions are checked for their timeout (an expired one is aborted
# and its producer fenced): Kafka's transaction.abort.timed.out.transaction.cleanup.interval.ms
# is 10 s; a second keeps a timed-out producer's fencing prompt.
kafka_transaction_check_seconds = 1.0
# How often a cell's Kafka door compares its topics with the shapes it published in etcd
# (decision 0033): topics created or deleted through other doors show in other cells'
# Metadata within this. Only changes are written, so a steady cell asks etcd nothing.
kafka_shapes_seconds = 2.0
# How long a door's reading of the other cells' shapes answers Metadata before etcd is
# asked again (a topic created in another cell shows within this plus the above).
kafka_shapes_cache_seconds = 1.0
# Staged batches remembered per topic-partition of an open transaction, so that a retry
# is answered without staging twice: as kafka_producer_batches_remembered.
kafka_transaction_batches_remembered = 5
# Staged records all open transactions together also keep in memory, so that a commit
# appends them without reading its staging file back: a small share of a server's memory
# (a thousand transactions of 1,000 records of 100 B take 100 MiB); beyond it, commits
# read their records back from the staging files.
kafka_transaction_memory_bytes_max = 256 * 1024 * 1024

# -- Kafka commits applied in the background (protocols/kafka/transactions.py, 0016) ------
# EndTxn is answered once a commit's decision is durable; its records are appended after.
# A Fetch or ListOffsets of a topic waits at most this long for the commits answered
# before it: an apply takes milliseconds, one that fails is retried by the checker (every
# kafka_transaction_check_seconds) and the reader goes on without it meanwhile.
kafka_transaction_apply_wait_seconds_max = 5.0
# A transaction writing topics of other cells (txn_cells.py, decision 0037) enlists a
# cell again for the id's next transaction once the cell acknowledged the previous one
# (a watch, a local decision and an etcd write: milliseconds). AddPartitionsToTxn waits
# this long for it, then answers CONCURRENT_TRANSACTIONS, which clients retry.
kafka_transaction_enlist_wait_seconds = 1.0

# -- the command line (odradek/cli) --------------------------------------------------------
# `odradek consume --last-per-key` holds the latest record of each key it has read, to
# print them once caught up: a million keys of ~1 KiB records is about 1 GiB, what a
# workstation running a CLI can spare; beyond that a compacted topic or a view is the tool.
consume_last_per_key_keys_max = 1_000_000

# -- resetting a consumer group's offsets (groups/reset.py, odradek group reset-offsets) ---
# Rows of one reset plan (a topic, or a Kafka group's virtual partition of one): 100
# topics of kafka_partitions_max partitions, about 10 MB of JSON in the Flight action's
# answer at ~100 bytes a row, well inside flight_message_bytes_max; a wider reset is
# refused and asks for a narrower pattern.
group_reset_rows_max = 102_400

# -- Kafka fetch sessions (protocols/kafka/fetch_sessions.py, decision 0023) ---------------
# Fetch sessions the door keeps at once: Kafka's max.incremental.fetch.session.cache.slots
# default. A full fetch beyond it evicts a stale or a smaller session, or is served
# without a session (the client goes on with full fetches).
kafka_fetch_session_cache_slots = 1_000
# Partitions all kept sessions hold together (a few hundred bytes each): Kafka bounds
# none; 100,000 (a thousand consumers of a hundred partitions) keeps the cache to tens
# of MiB. A session that would pass it is not kept (full fetches go on without one).
kafka_fetch_session_cache_partitions_max = 100_000
# A session unused this long may be evicted for a new one: Kafka's
# min.incremental.fetch.session.eviction.ms default (2 minutes).
kafka_fetch_session_eviction_ms = 120_000
# Frames one `kafka_partitions` map covers (protocols/kafka/partition_map.py): an entry
# per frame at most, ~30 bytes of JSON, so about 3 MB an answer; a reader asks again for
# the rest. A frame is one append, so this many frames hold at least this many records.
kafka_partition_map_frames_max = 100_000

# -- Kafka share groups (KIP-932, protocols/kafka/share_groups.py) -------------------------
# Share sessions the door keeps (one per share consumer): as many as fetch sessions
# (Kafka's max.incremental.fetch.session.cache.slots, 1,000); a new session beyond it
# evicts the least recently used one, whose consumer gets SHARE_SESSION_NOT_FOUND and
# opens a new one.
kafka_share_sessions_max = 1_000
# Acquisition lock of a share group created through the door (the native group's
# ack_timeout): Kafka's group.share.record.lock.duration.ms default, 30 s.
kafka_share_record_lock_ms = 30_000
# Deliveries of a record before it is archived (the native group's max_deliveries):
# Kafka's group.share.delivery.count.limit default, 5.
kafka_share_delivery_count_limit = 5
# Records one ShareFetch acquires at most, whatever its MaxRecords: ten times the
# consumer's max.poll.records default (500).
kafka_share_fetch_records_max = 5_000
# Bytes of records one ShareFetch returns at most, whatever its MaxBytes: Kafka's broker
# fetch.max.bytes default (55 MiB), which caps a Fetch's MaxBytes the same way. Only the
# first record may exceed the request's MaxBytes (so that a consumer always progresses).
kafka_share_fetch_bytes_max = 55 * 1024 * 1024
# Heartbeat interval told to share consumers and how long a silent one stays a member:
# Kafka's group.share.heartbeat.interval.ms (5 s) and group.share.session.timeout.ms
# (45 s) defaults.
kafka_share_heartbeat_interval_ms = 5_000
kafka_share_session_timeout_ms = 45_000
# Share members of one share group: Kafka's group.share.max.size default, 200.
kafka_share_group_members_max = 200
# How often a waiting ShareFetch looks again for records released or whose lock ran out
# (they come back without an arrival to wake it): a tenth of a second, well inside the
# consumer's default max.wait.ms (500 ms).
kafka_share_fetch_recheck_ms = 100
# How long a share member that left still settles what it holds with its session's
# closing request (clients send it beside the leave heartbeat, on another connection):
# one heartbeat interval; then its records go back to the group.
kafka_share_leave_grace_ms = 5_000

# -- observability (protocols/observe.py, docs/observability.md) --------------------------
# Buckets of a door's request latency, seconds: dense from 0.5 ms to 25 ms around the
# append target (p50 <= 2 ms, p99 <= 10 ms, DESIGN §5), up to 30 s for long-polling
# fetches and reads that wait for records (a Kafka fetch waits at most its max.wait.ms).
door_request_seconds_buckets = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
# Buckets of one fsync, seconds: an NVMe flush takes ~0.1-1 ms, a SATA SSD a few ms, a
# network disk or an object store's journal flush tens to hundreds of ms.
fsync_seconds_buckets = (
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
# Buckets of a group commit's size (appends, or records, one fsync made durable): powers
# of four from a lone append up to the ~64k records of a large batch.
group_commit_size_buckets = (1, 2, 4, 16, 64, 256, 1024, 4096, 16384, 65536)
# A `tracestate` header taken from an HTTP request into its records: W3C Trace Context
# (level 1, §3.3.1) has at most 32 list members, and asks vendors to propagate at least
# 512 characters of it; a longer one is refused.
tracestate_members_max = 32
tracestate_chars_max = 512
# A client's X-Request-Id taken into the logs (protocols/request_ids.py): 128 characters
# hold a UUID, a W3C trace id with a span id, or a load balancer's id (AWS's X-Amzn-Trace-Id
# is ~40); a longer one (or one with other characters) gets an id of the server's.
request_id_chars_max = 128
