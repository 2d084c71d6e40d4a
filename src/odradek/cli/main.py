"""``odradek``: the command line (see docs/cli.md).

Exit codes: 0 success, 1 the request was refused (the error says why), 2 bad usage,
3 the server cannot be reached, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence

from odradek import defaults, limits
from odradek.cli import cluster as cluster_cli
from odradek.cli import lazy, terminal
from odradek.cli import views as views_cli
from odradek.errors import OdradekError, Unavailable

# The command functions, imported only when a command runs (cli/lazy.py): the parser,
# --help and usage errors load no Arrow, NumPy or Flight client.
commands = lazy.Handlers("odradek.cli.commands")
produce_cli = lazy.Handlers("odradek.cli.produce")
consume_cli = lazy.Handlers("odradek.cli.consume")
topics_cli = lazy.Handlers("odradek.cli.topics")
completion_cli = lazy.Handlers("odradek.cli.completion")
groups_cli = lazy.Handlers("odradek.cli.groups")

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

_DESCRIPTION = """\
Odradek: a durable event log with per-key versions, hierarchical topics and
optimistic concurrency.

  odradek serve                                  # a server on 127.0.0.1:8815, data in ./odradek-data
  odradek topic create orders.eu.created
  seq 1 1000000 | odradek produce orders.eu.created
  odradek consume 'orders.>' --from-beginning --max 10 --format jsonl
  printf 'order-1\\t{"total": 12}\\n' | odradek produce orders.eu.created --keyed
  odradek key orders.eu.created order-1 --format jsonl
  odradek consume 'orders.>' --group billing --max 100
  odradek group describe billing
  odradek schema set payments payment.avsc
  odradek asyncapi 'orders.>'

""" + (
    f"Client commands talk to --server (default: ${defaults.url_variable}, else {defaults.url}).\n"
    "Run `odradek COMMAND --help` for the options and examples of a command."
)

_SERVE_EPILOG = """\
settings, lowest precedence first: defaults, the TOML file of --config (top level or a
[serve] table with the same names: data_dir, listen, kafka_listen, kafka_advertised,
registry_listen, metrics_listen, fsync, log_format, log_level, inflight_bytes,
connections_max, connections_per_peer_max, request_read_seconds, idle_seconds, store,
store_flush_ms, store_flush_bytes, etcd, cluster, agent_id, advertise, lease_ttl, cells, etcd_ca,
etcd_cert, etcd_key, etcd_user, etcd_password_file, tls_cert, tls_key, tls_ca, auth, authorize, jwks,
jwt_audience, jwt_issuer, insecure),
environment variables ODRADEK_DATA_DIR,
ODRADEK_LISTEN, ODRADEK_KAFKA_LISTEN, ODRADEK_KAFKA_ADVERTISED, ODRADEK_REGISTRY_LISTEN,
ODRADEK_METRICS_LISTEN, ODRADEK_FSYNC, ODRADEK_LOG_FORMAT, ODRADEK_LOG_LEVEL,
ODRADEK_INFLIGHT_BYTES, ODRADEK_CONNECTIONS_MAX, ODRADEK_CONNECTIONS_PER_PEER_MAX,
ODRADEK_REQUEST_READ_SECONDS, ODRADEK_IDLE_SECONDS, ODRADEK_STORE, ODRADEK_STORE_FLUSH_MS,
ODRADEK_STORE_FLUSH_BYTES, ODRADEK_ETCD, ODRADEK_CLUSTER, ODRADEK_AGENT_ID,
ODRADEK_ADVERTISE, ODRADEK_LEASE_TTL, ODRADEK_CELLS, ODRADEK_ETCD_CA, ODRADEK_ETCD_CERT, ODRADEK_ETCD_KEY,
ODRADEK_ETCD_USER, ODRADEK_ETCD_PASSWORD (environment only), ODRADEK_ETCD_PASSWORD_FILE,
ODRADEK_TLS_CERT, ODRADEK_TLS_KEY, ODRADEK_TLS_CA, ODRADEK_AUTH, ODRADEK_AUTHORIZE, ODRADEK_JWKS,
ODRADEK_JWT_AUDIENCE, ODRADEK_JWT_ISSUER, ODRADEK_INSECURE, ODRADEK_CONFIG, then the flags.

TLS (--tls-cert FILE --tls-key FILE, PEM): every door serves TLS: Flight at grpc+tls://,
the Kafka door as an SSL listener (security.protocol=SSL), the Schema Registry and
metrics over HTTPS. --tls-ca FILE requires client certificates signed by that CA on every
door (mTLS). SIGHUP reloads the files: new Kafka and HTTPS connections get the new
certificate, open ones keep theirs; the Flight door keeps its certificate until a restart
(pyarrow's gRPC server cannot change it). A file that fails to load keeps the old one.
See docs/security.md.

Authentication (--auth): every door asks for credentials: Kafka SASL (PLAIN,
SCRAM-SHA-256/512, OAUTHBEARER), Flight and HTTP Bearer tokens or Basic user and
password, from the server's credential store (odradek user add, odradek token create);
--jwks FILE|URL adds JWTs. Without authentication (nor --tls-ca) every door must listen
on loopback: another address is refused unless --insecure.

Bounds (each door: Kafka, Flight, Schema Registry, metrics): --inflight-bytes is shared by
all doors; --connections-max, --connections-per-peer-max and --idle-seconds apply to
each door (unset: each door's own default, see docs/cli.md).

The Kafka listener is on by default at 127.0.0.1:9092 and the Schema Registry listener at
127.0.0.1:8081; if such a default port is taken the server logs a warning and runs
without that listener (an address given explicitly must be free).

Object store (--store URL): the data lives in the store and the data directory is only
its cache (empty, or a cache already: a local server's directory is refused). At start
the server claims the store, fences any older server on the same prefix (which then
refuses writes) and rebuilds the cache from the store; an append is acknowledged once
its journal object is in the store (a flush every --store-flush-ms, or sooner once
--store-flush-bytes are waiting). S3 endpoint and credentials come from AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION (AWS_ALLOW_HTTP=true for an http://
endpoint); GCS from GOOGLE_APPLICATION_CREDENTIALS, Azure from AZURE_STORAGE_*; and
from --store-option KEY=VALUE (prefer the environment for secrets: a command line is
visible to every user of the machine). See docs/object-storage.md.

Cluster (--etcd URLS with --store): agents on one store form a cluster through etcd. One
agent owns the data and serves it; the others stand by, answer clients with the owner's
address (odradek.connect("grpc://a1,a2,a3") follows it) and take over within the lease
TTL when the owner dies. SIGTERM on the owner hands the data over before it exits. The
Kafka and Schema Registry doors listen on the owner only. A secured etcd: https://
endpoints (TLS; --etcd-ca, and --etcd-cert/--etcd-key for etcd's --client-cert-auth) and
--etcd-user with the password in ODRADEK_ETCD_PASSWORD or --etcd-password-file. See
docs/cluster.md.

examples:
  odradek serve
  odradek serve --data-dir /var/lib/odradek --listen 0.0.0.0:8815 --auth --metrics-listen 127.0.0.1:9464
  ODRADEK_DATA_DIR=/tmp/o odradek serve --no-fsync --log-format json
  odradek serve --store s3://my-bucket/odradek --data-dir /var/cache/odradek
  odradek serve --listen 0.0.0.0:8815 --auth --tls-cert server.crt --tls-key server.key [--tls-ca ca.crt]
  odradek serve --store s3://my-bucket/odradek --etcd http://10.0.0.1:2379,http://10.0.0.2:2379 \
      --listen 0.0.0.0:8815 --advertise 10.0.0.5:8815 --auth

Prints one line containing "ready" on stdout once it accepts connections; logs go to
stderr, one event per line. SIGTERM or Ctrl-C drains in-flight appends and exits 0."""

_PRODUCE_EPILOG = """\
Each line of stdin is one record (its value, or KEY SEP VALUE with -K SEP); lines are
sent in batches of --batch. A topic that does not exist is refused unless --create.

examples:
  seq 1 1000000 | odradek produce numbers --create
  echo '{"total": 12}' | odradek produce orders --create --key order-1 --expect-version 0
  printf 'order-2\\tcreated\\norder-3\\tcreated\\n' | odradek produce orders --keyed
  printf 'order-1:paid\\n' | odradek produce orders -K : -H source=shop -H trace=abc
  echo replayed | odradek produce orders --timestamp 2026-12-05T19:00:00Z
  odradek produce chat --create             # type lines; each is sent within 0.2 s"""

_CONSUME_EPILOG = """\
Without --max, --wait or --last-per-key, follows the pattern until interrupted (Ctrl-C).
Patterns: '*' matches one name segment, '>' (last) one or more; topics created later
that match are picked up. --format jsonl writes topic, offset, key, value, version,
timestamp, headers (bytes as UTF-8 where valid, else base64 under NAME_b64). A
--format template takes kcat's fields: %t topic, %o offset, %k key, %v value, %h
headers (name=value,...), %T timestamp (epoch ms), %V version, %K/%S key/value length,
%% a percent sign, and the escapes \\n \\t \\r \\0 \\\\; nothing is added after a record.

examples:
  odradek consume orders.eu.created --from-beginning
  odradek consume 'orders.*.created' --from-beginning --max 100 --format jsonl
  odradek consume 'orders.>' --wait 2            # new records until 2 s pass with none
  odradek consume numbers --offset 500 --max 10
  odradek consume orders --since 10m --format '%o %k=%v %h\\n' --max 100
  odradek consume orders --since 2026-12-05T19:00:00Z --wait 1
  odradek consume orders --last-per-key --format '%k %v\\n'   # each key's latest record
  odradek consume orders --from-beginning --partition 0 --format '%p %o %k=%v\\n' --max 10
  odradek consume 'orders.>' --group billing     # share the records with billing's other members"""

_GROUP_EPILOG = """\
Groups of both kinds: odradek groups (consume --group, subscribe) and Kafka consumer
groups joined through the Kafka door. A name belongs to one kind.

examples:
  odradek group list
  odradek group list --long                      # kind, state, members and lag of each
  odradek group describe billing                 # kind, members, committed offset and lag per topic
  odradek group describe billing --format json
  odradek group reset-offsets billing --to earliest          # print the plan, change nothing
  odradek group reset-offsets billing --topic 'orders.>' --to datetime 2026-12-05T19:00:00Z --execute
  odradek group delete billing"""

_RESET_EPILOG = """\
As Kafka's kafka-consumer-groups --reset-offsets: the group must have no members (stop
its consumers first). Without --execute the plan is printed (TOPIC PARTITION OLD NEW: a
row per topic, and per Kafka partition for a group of the Kafka door) and nothing
changes. --to: earliest (the first record), latest (the end: skip everything), datetime
WHEN (the first record at or after WHEN: 2026-12-05T19:00:00Z, 2h for two hours ago, or
epoch milliseconds), offset N (moved into the topic's range). Without --topic, every
topic the group reads (a Kafka group: those it committed offsets in).

examples:
  odradek group reset-offsets billing --to earliest --dry-run
  odradek group reset-offsets billing --topic 'orders.>' --to latest --execute
  odradek group reset-offsets billing --to datetime 2h --execute
  odradek group reset-offsets billing --topic orders.eu --to offset 1000 --execute
  odradek group reset-offsets billing --to latest --format json   # the plan for a script"""

_KEY_EPILOG = """\
examples:
  odradek key orders order-1
  odradek key orders order-1 --from-version 2 --format jsonl
  odradek key orders order-1 --last --format '%V %v\\n'
  odradek key accounts acct-7 --from-snapshot --format jsonl

A key without records (or none from --from-version on) is an error: exit 1."""

_TOPIC_EPILOG = """\
examples:
  odradek topic create orders.eu.created --retention 30d
  odradek topic create payments --schema payment.avsc
  odradek topic create orders.changelog --cleanup compact --delete-retention 1d
  odradek topic list 'orders.>'
  odradek topic describe orders.eu.created
  odradek topic alter orders.eu.created --retention 30d --segment-bytes 64MiB
  odradek topic alter orders.changelog --cleanup compact,delete --delete-retention 12h
  odradek topic delete orders.eu.created
  odradek topic verify orders.eu.created"""

_VERIFY_EPILOG = """\
A damaged record (a checksum that fails, a truncated or missing segment) is never
passed off as a torn tail: its offsets are reported and never handed out again, reads
skip them, and a topic whose key versions were rebuilt across them refuses appends
until an operator decides. verify exits 1 when it finds damage nobody accepted yet.

examples:
  odradek topic verify orders.eu.created
  odradek topic verify orders.eu.created --data-dir ./odradek-data     # server stopped
  odradek topic repair orders.eu.created --drop-range 1200-1249"""


_SCHEMA_EPILOG = """\
A schema file is JSON: .avsc files are Avro; other files (and - for stdin) are Avro if
the document is a record with 'fields', JSON Schema if it is an object with 'properties'.
Compatibility modes: backward (default), backward_transitive, forward,
forward_transitive, full, full_transitive, none.

examples:
  odradek schema set payments payment.avsc
  odradek schema set orders order.schema.json --compatibility full
  odradek schema check payments payment-v2.avsc      # exit 1 and one line per problem
  odradek schema get payments --version 1
  odradek schema versions payments"""

_ASYNCAPI_EPILOG = """\
Prints an AsyncAPI 3.0.0 document: one channel per topic matching PATTERN, with a
receive and a send operation, the topic's schema as the message payload (Avro and JSON
Schema as they are, Arrow schemas as the equivalent JSON Schema, opaque bytes for a
schemaless topic), and --server (and --kafka, if given) as the servers.

examples:
  odradek asyncapi 'orders.>' > orders.asyncapi.json
  odradek asyncapi '>' --kafka broker.internal:9092 --registry http://broker.internal:8081
  odradek asyncapi 'orders.>' --title Shop --api-version 2.0.0 --format yaml"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odradek", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument(
        "--server",
        default=argparse.SUPPRESS,
        metavar="URL",
        help=f"server to talk to (default: ${defaults.url_variable}, else {defaults.url})",
    )
    parser.add_argument("--server", metavar="URL", default=None, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _add_serve(sub)
    _add_topic(sub, server)
    _add_produce(sub, server)
    _add_consume(sub, server)
    _add_group(sub, server)
    _add_key(sub, server)
    _add_schema(sub, server)
    _add_asyncapi(sub, server)
    views_cli.add_parser(sub, server)
    cluster_cli.add_parser(sub)
    _add_completion(sub)
    from odradek.cli import security as security_cli

    security_cli.add_parsers(sub, server)
    from odradek.cli import acl as acl_cli

    acl_cli.add_parsers(sub, server)
    from odradek.cli import quota as quota_cli

    quota_cli.add_parser(sub, server)
    # `odradek bench` has its own parser (odradek.bench); main() hands it the arguments.
    _raw(sub, "bench", help="measure Odradek against its peers and the hardware (see bench --help)")
    return parser


def _raw(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, **kwargs: object
) -> argparse.ArgumentParser:
    return sub.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)  # type: ignore[arg-type]


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = _raw(
        sub, "serve", help="run a server", description="Run an Odradek server.", epilog=_SERVE_EPILOG
    )
    serve.add_argument("--data-dir", metavar="DIR", help="data directory (default ./odradek-data)")
    serve.add_argument(
        "--listen", metavar="HOST:PORT", help=f"Arrow Flight listener (default {defaults.listen})"
    )
    serve.add_argument(
        "--kafka-listen",
        metavar="HOST:PORT",
        help="Kafka protocol listener (default 127.0.0.1:9092; 'off' disables it)",
    )
    serve.add_argument(
        "--kafka-advertised",
        metavar="HOST:PORT",
        help="address Kafka clients are told to connect to (default: the listener's)",
    )
    serve.add_argument(
        "--kafka-auto-create",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="create the topics a Kafka Metadata request names (auto.create.topics.enable; default on)",
    )
    serve.add_argument(
        "--kafka-partitions",
        metavar="N",
        help="partitions of topics created through the Kafka door by default (num.partitions; default 1)",
    )
    serve.add_argument(
        "--registry-listen",
        metavar="HOST:PORT",
        help="Schema Registry (Confluent REST API) listener (default 127.0.0.1:8081; 'off' disables it)",
    )
    serve.add_argument(
        "--metrics-listen", metavar="HOST:PORT", help="Prometheus /metrics endpoint (default off)"
    )
    serve.add_argument("--config", metavar="FILE.toml", help="settings file")
    serve.add_argument(
        "--no-fsync", action="store_true", help="acknowledge before fsync (faster, loses data on a crash)"
    )
    serve.add_argument(
        "--log-format",
        choices=("kv", "text", "json"),
        help="log lines as key=value (default; 'text' is the same) or JSON",
    )
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="default info")
    serve.add_argument(
        "--topics-max",
        metavar="N",
        help=f"topics this server holds at most; more are refused (default {limits.topics_max_default:,})",
    )
    serve.add_argument(
        "--inflight-bytes",
        metavar="SIZE",
        help="bytes of requests all doors hold in memory at once (default 512MiB)",
    )
    serve.add_argument(
        "--connections-max",
        metavar="N",
        help="connections per door at once (Flight: calls); default per door, e.g. Kafka 1024",
    )
    serve.add_argument(
        "--connections-per-peer-max",
        metavar="N",
        help="connections per door from one peer address; default per door, e.g. Kafka 256",
    )
    serve.add_argument(
        "--request-read-seconds",
        metavar="S",
        help="a request must arrive whole within S seconds of its first byte (default 30)",
    )
    serve.add_argument(
        "--idle-seconds",
        metavar="S",
        help="close connections idle this long; default per door (Kafka 600, HTTP doors 30)",
    )
    serve.add_argument(
        "--store",
        metavar="URL",
        help="keep the data in an object store (s3://bucket/prefix, gs://..., az://..., "
        "file:///dir, memory://); the data directory becomes its cache (see below)",
    )
    serve.add_argument(
        "--store-flush-ms",
        metavar="MS",
        help=f"journal flush window with --store (default {limits.store_flush_seconds_default * 1000:g})",
    )
    serve.add_argument(
        "--store-flush-bytes",
        metavar="SIZE",
        help="journal flush size that cuts a flush early with --store (default 8MiB)",
    )
    serve.add_argument(
        "--store-option",
        metavar="KEY=VALUE",
        action="append",
        dest="store_option",
        help="a setting of the object store's client (obstore's keys: endpoint, region, "
        "access_key_id, allow_http, ...); repeat for several; they win over the environment",
    )
    serve.add_argument(
        "--etcd",
        metavar="URLS",
        help="run as an agent of a cluster coordinated by this etcd (http://HOST:PORT,...); "
        "needs --store (see below and docs/cluster.md)",
    )
    serve.add_argument("--cluster", metavar="NAME", help="the cluster's name in etcd (default 'default')")
    serve.add_argument(
        "--agent-id", metavar="ID", help="this agent's id in the cluster (default: HOST:PORT advertised)"
    )
    serve.add_argument(
        "--advertise",
        metavar="HOST:PORT",
        help="where other agents and clients reach this agent's Flight door (default: --listen)",
    )
    serve.add_argument(
        "--lease-ttl",
        metavar="S",
        help=f"seconds of this agent's etcd lease (default {limits.cluster_lease_ttl_seconds_default}): "
        "an owner that dies is replaced after about this long",
    )
    serve.add_argument(
        "--cells",
        metavar="N",
        help="spread the cluster's topics over N cells, each served by one agent at a time "
        "(default 1; the same N on every agent; each cell's Kafka door listens on the Kafka port "
        "plus the cell's index; no Schema Registry door: docs/cluster.md)",
    )
    cluster_cli.add_etcd_security_arguments(serve)
    serve.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve TLS on every door with this PEM certificate chain (needs --tls-key)",
    )
    serve.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert (unencrypted)")
    serve.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="require client certificates signed by this PEM CA on every door (mTLS; needs --tls-cert)",
    )
    serve.add_argument(
        "--auth",
        action="store_true",
        help="require authentication on every door: users (SCRAM, PLAIN, Basic) and API tokens "
        "of the data directory's credential store (docs/security.md)",
    )
    serve.add_argument(
        "--authorize",
        action="store_true",
        help="with --auth: check every request against the access control lists (odradek acl); "
        "what no binding allows is refused, admins may do everything (docs/security.md)",
    )
    serve.add_argument(
        "--jwks", metavar="FILE|URL", help="accept JWTs (OAUTHBEARER, Bearer) signed by these keys"
    )
    serve.add_argument("--jwt-audience", metavar="AUD", help="the aud a JWT must name (with --jwks)")
    serve.add_argument("--jwt-issuer", metavar="ISS", help="the iss a JWT must name (with --jwks)")
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow doors on non-loopback addresses without authentication (refused otherwise)",
    )
    serve.set_defaults(handler=_serve)


def _add_topic(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], server: argparse.ArgumentParser
) -> None:
    topic = _raw(sub, "topic", help="create, list, describe, delete topics", epilog=_TOPIC_EPILOG)
    actions = topic.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = _raw(actions, "create", parents=[server], help="create a topic", epilog=_TOPIC_EPILOG)
    create.add_argument("name", help="topic name: segments of letters, digits, '_', '-' joined by '.'")
    create.add_argument(
        "--retention",
        default=defaults.retention,
        help=f"keep records this long: 7d, 12h, forever (default {defaults.retention})",
    )
    create.add_argument(
        "--retention-bytes", default=None, help="keep at most this much: 10GiB (default no limit)"
    )
    create.add_argument("--segment-bytes", default=None, help="segment size: 256MiB (default)")
    create.add_argument(
        "--cleanup",
        default=defaults.cleanup,
        help="delete (retention removes old segments, the default), compact (keep the latest "
        "record of each key), compact,delete (both) or snapshot (drop the events a key "
        "snapshot covers)",
    )
    create.add_argument(
        "--delete-retention",
        default=defaults.delete_retention,
        help=f"a compacted topic keeps a tombstone this long: 1d, 0 (default {defaults.delete_retention})",
    )
    create.add_argument(
        "--min-compaction-lag",
        default=defaults.min_compaction_lag,
        help="records younger than this are never compacted away: 1h (default 0)",
    )
    create.add_argument(
        "--min-cleanable-dirty-ratio",
        type=float,
        default=defaults.min_cleanable_dirty_ratio,
        metavar="R",
        help="compact once this share (0 to 1) of the sealed bytes was never compacted "
        f"(default {defaults.min_cleanable_dirty_ratio})",
    )
    create.add_argument("--exist-ok", action="store_true", help="succeed if the topic already exists")
    create.add_argument(
        "--schema", metavar="FILE", help="enforce this schema on values: .avsc (Avro) or .json, - for stdin"
    )
    _add_schema_options(create)
    create.set_defaults(handler=commands.topic_create)
    listing = _raw(actions, "list", parents=[server], help="list topics", epilog=_TOPIC_EPILOG)
    listing.add_argument("pattern", nargs="?", help="only names matching this pattern, e.g. 'orders.>'")
    listing.set_defaults(handler=commands.topic_list)
    describe = _raw(
        actions, "describe", parents=[server], help="offsets, sizes, dates and config (a table, or JSON)"
    )
    describe.add_argument("name")
    _add_describe_format(describe)
    describe.set_defaults(handler=topics_cli.topic_describe)
    alter = _raw(
        actions,
        "alter",
        parents=[server],
        help="change a topic's retention, segment or cleanup settings",
        epilog=_TOPIC_EPILOG,
    )
    alter.add_argument("name", help="the topic")
    for dest, flag, metavar, help_text in ALTER_FLAGS:
        alter.add_argument(flag, dest=dest, metavar=metavar, default=None, help=help_text)
    alter.set_defaults(handler=topics_cli.topic_alter)
    move = _raw(
        actions,
        "move",
        parents=[server],
        help="move a topic to another cell of a cluster (--cells N): to an agent, or a cell",
        description="Move a topic of a cluster whose topics are spread over cells (odradek serve "
        "--etcd ... --cells N) into a cell served by AGENT (the least loaded of its cells), or into "
        "CELL: the agent serving its cell releases it to the store, the agent serving the target "
        "cell adopts it by reference (nothing is copied) and places it there. Appends and reads "
        "meanwhile wait and retry (about a second). Give --server every agent or any one.",
    )
    move.add_argument("name", help="the topic")
    move.add_argument("agent", nargs="?", help="the agent id to move it to (see odradek cluster status)")
    move.add_argument("--cell", metavar="CELL", help="the cell to move it to (_cell, _cell.1, ...)")
    move.set_defaults(handler=topics_cli.topic_move)
    delete = _raw(actions, "delete", parents=[server], help="delete a topic and all its records")
    delete.add_argument("name")
    delete.set_defaults(handler=commands.topic_delete)
    verify = _raw(
        actions,
        "verify",
        parents=[server],
        help="check every record and derived file of a topic against its checksums",
        epilog=_VERIFY_EPILOG,
    )
    verify.add_argument("name")
    verify.add_argument(
        "--data-dir",
        metavar="DIR",
        help="check a data directory directly (no server may be running on it), with progress",
    )
    verify.add_argument("--format", choices=["text", "json"], default="text")
    verify.set_defaults(handler=commands.topic_verify)
    repair = _raw(
        actions,
        "repair",
        parents=[server],
        help="accept the loss of damaged offsets, so that a topic takes appends again",
        epilog=_VERIFY_EPILOG,
    )
    repair.add_argument("name")
    repair.add_argument(
        "--drop-range",
        metavar="A-B",
        action="append",
        required=True,
        help="damaged offsets A to B (inclusive) whose loss is accepted; repeat for several ranges",
    )
    repair.add_argument("--data-dir", metavar="DIR", help="repair a data directory directly (no server)")
    repair.set_defaults(handler=commands.topic_repair)


def _add_produce(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], server: argparse.ArgumentParser
) -> None:
    produce = _raw(
        sub,
        "produce",
        parents=[server],
        help="append stdin's lines to a topic",
        epilog=_PRODUCE_EPILOG,
        description="Append the lines of stdin to TOPIC, one record per line.",
    )
    produce.add_argument("topic")
    produce.add_argument(
        "--create", action="store_true", help="create the topic (default settings) if it does not exist"
    )
    keys = produce.add_mutually_exclusive_group()
    keys.add_argument("--key", help="key of every record")
    keys.add_argument("--keyed", action="store_true", help="each line is KEY<TAB>VALUE (as -K '\\t')")
    keys.add_argument(
        "-K",
        "--key-separator",
        metavar="SEP",
        help="each line is KEY SEP VALUE, split at the first SEP (kcat's -K; escapes \\t \\0 \\\\)",
    )
    produce.add_argument(
        "-H",
        "--header",
        action="append",
        metavar="NAME=VALUE",
        help="a header on every record; repeat for several",
    )
    produce.add_argument(
        "--timestamp",
        metavar="WHEN",
        help="every record's timestamp: ISO-8601 (UTC unless an offset is given), epoch milliseconds, "
        "or a duration ago (10m); default: the server's clock at the append",
    )
    produce.add_argument(
        "--expect-version",
        type=int,
        metavar="N",
        help="with --key: refuse unless the key is at version N (0 = new)",
    )
    produce.add_argument(
        "--batch", type=int, default=10_000, metavar="N", help="records per append (default 10000)"
    )
    produce.set_defaults(handler=produce_cli.produce)


def _add_consume(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], server: argparse.ArgumentParser
) -> None:
    consume = _raw(
        sub,
        "consume",
        parents=[server],
        help="print the records of a topic or pattern",
        epilog=_CONSUME_EPILOG,
        description="Print the records of the topics matching PATTERN.",
    )
    consume.add_argument("pattern", help="topic name or pattern ('orders.*.created', 'orders.>')")
    consume.add_argument(
        "--from-beginning", action="store_true", help="start at the earliest record, not new ones"
    )
    consume.add_argument("--offset", type=int, metavar="N", help="start at offset N (one topic)")
    consume.add_argument(
        "--since",
        metavar="WHEN",
        help="start at the first record at or after WHEN: a duration ago (10m, 2h, 1d), an ISO-8601 "
        "date or time (UTC unless an offset is given) or epoch milliseconds",
    )
    consume.add_argument(
        "--last-per-key",
        action="store_true",
        help="read up to the end (from the beginning unless --offset/--since) and print each key's "
        "latest record, in log order; keyless records are left out",
    )
    consume.add_argument(
        "-p",
        "--partition",
        type=int,
        metavar="N",
        help="only the records of Kafka partition N (as the Kafka door serves the topic)",
    )
    consume.add_argument("--max", type=int, metavar="N", help="stop after N records")
    consume.add_argument(
        "--wait", type=float, metavar="SECONDS", help="stop once caught up and SECONDS pass with nothing new"
    )
    consume.add_argument(
        "-f",
        "--format",
        default="text",
        metavar="text|jsonl|TEMPLATE",
        help="values (default), JSON lines, or a kcat-style template such as '%%t %%o %%k=%%v\\n'",
    )
    consume.add_argument(
        "--group",
        metavar="G",
        help="consume as a member of consumer group G: records are shared with its other members "
        "and acknowledged once printed; the group continues where it left off",
    )
    consume.set_defaults(handler=consume_cli.consume)


def _add_group(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], server: argparse.ArgumentParser
) -> None:
    group = _raw(
        sub, "group", help="list, describe, reset offsets of, delete consumer groups", epilog=_GROUP_EPILOG
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = _raw(actions, "list", parents=[server], help="list consumer groups", epilog=_GROUP_EPILOG)
    listing.add_argument(
        "-l", "--long", action="store_true", help="a line per group: name, kind, state, members, lag"
    )
    listing.set_defaults(handler=commands.group_list)
    describe = _raw(
        actions,
        "describe",
        parents=[server],
        help="kind, members, progress and lag per topic (a Kafka group's per partition), counters as JSON",
    )
    describe.add_argument("group")
    _add_describe_format(describe)
    describe.set_defaults(handler=topics_cli.group_describe)
    reset = _raw(
        actions,
        "reset-offsets",
        parents=[server],
        help="move a group's committed offsets (it must have no members); a dry run without --execute",
        epilog=_RESET_EPILOG,
    )
    reset.add_argument("group")
    reset.add_argument(
        "--topic", metavar="PATTERN", help="the topics to reset (default: every topic the group reads)"
    )
    reset.add_argument(
        "--to",
        nargs="+",
        required=True,
        metavar="TARGET",
        help="earliest | latest | datetime WHEN | offset N",
    )
    mode = reset.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run", action="store_true", help="print the plan and change nothing (the default)"
    )
    mode.add_argument("--execute", action="store_true", help="apply the plan")
    reset.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="the plan as a table (default) or as JSON: [{topic, partition, old, new}]",
    )
    reset.set_defaults(handler=groups_cli.group_reset_offsets)
    delete = _raw(actions, "delete", parents=[server], help="forget a group (it must have no members)")
    delete.add_argument("group")
    delete.set_defaults(handler=commands.group_delete)


# `topic alter`'s flags, by the name alter_topic takes (config.ALTERABLE_SETTINGS);
# cli/topics.py reads them back by the same table.
ALTER_FLAGS = (
    ("retention", "--retention", "D", "keep records this long: 30d, 12h, forever"),
    ("retention_bytes", "--retention-bytes", "SIZE", "keep at most this much: 10GiB, none"),
    ("segment_bytes", "--segment-bytes", "SIZE", "roll segments at this size: 256MiB"),
    ("segment_age", "--segment-age", "D", "roll the active segment at this age: 7d"),
    ("cleanup", "--cleanup", "POLICY", "delete, compact, compact,delete or snapshot"),
    ("delete_retention", "--delete-retention", "D", "a compacted topic keeps a tombstone this long"),
    ("min_compaction_lag", "--min-compaction-lag", "D", "records younger than this are never compacted"),
    ("min_cleanable_dirty_ratio", "--min-cleanable-dirty-ratio", "R", "compact once this share is dirty"),
)


def _add_describe_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default=None,
        help="a table (the default on a terminal) or JSON (the default otherwise)",
    )


def _add_key(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], server: argparse.ArgumentParser
) -> None:
    key = _raw(
        sub,
        "key",
        parents=[server],
        help="print the records of one key, in version order",
        epilog=_KEY_EPILOG,
        description="Print the records of KEY in TOPIC, oldest version first.",
    )
    key.add_argument("topic")
    key.add_argument("key")
    key.add_argument(
        "--from-version", type=int, default=1, metavar="N", help="first version to print (default 1)"
    )
    key.add_argument(
        "--from-snapshot",
        action="store_true",
        help="start at the key's latest snapshot: print it first (flagged in jsonl), then the "
        "events after it",
    )
    key.add_argument(
        "-f",
        "--format",
        default="text",
        metavar="text|jsonl|TEMPLATE",
        help="values (default), JSON lines, or a template as consume's ('%%V %%v\\n')",
    )
    key.add_argument("--last", action="store_true", help="only the key's latest record")
    key.set_defaults(handler=commands.key)


def _add_schema_options(parser: argparse.ArgumentParser, *, sets_mode: bool = True) -> None:
    purpose = (
        "what each new version must stay compatible with, and the topic's mode from then on"
        if sets_mode
        else "check in this mode instead of the topic's"
    )
    parser.add_argument(
        "--compatibility",
        metavar="MODE",
        help=f"{purpose}: backward (a new topic's default), backward_transitive, forward, "
        "forward_transitive, full, full_transitive, none",
    )
    parser.add_argument("--kind", choices=("avro", "json"), help="the schema's language (default: detected)")


def _add_schema(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], server: argparse.ArgumentParser
) -> None:
    schema = _raw(sub, "schema", help="get, set, check topic schemas", epilog=_SCHEMA_EPILOG)
    actions = schema.add_subparsers(dest="action", metavar="ACTION", required=True)
    get = _raw(
        actions,
        "get",
        parents=[server],
        help="a schema version as JSON (default the latest)",
        epilog=_SCHEMA_EPILOG,
    )
    get.add_argument("topic")
    get.add_argument("--version", type=int, metavar="N", help="this version instead of the latest")
    get.set_defaults(handler=commands.schema_get)
    put = _raw(actions, "set", parents=[server], help="register a new schema version", epilog=_SCHEMA_EPILOG)
    put.add_argument("topic")
    put.add_argument("file", metavar="FILE", help="the schema: .avsc, .json, or - for stdin")
    _add_schema_options(put)
    put.set_defaults(handler=commands.schema_set)
    versions = _raw(actions, "versions", parents=[server], help="every version of a topic's schema as JSON")
    versions.add_argument("topic")
    versions.set_defaults(handler=commands.schema_versions)
    check = _raw(
        actions,
        "check",
        parents=[server],
        help="would this schema be accepted? prints every problem",
        epilog=_SCHEMA_EPILOG,
    )
    check.add_argument("topic")
    check.add_argument("file", metavar="FILE", help="the schema: .avsc, .json, or - for stdin")
    _add_schema_options(check, sets_mode=False)
    check.set_defaults(handler=commands.schema_check)


def _add_asyncapi(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], server: argparse.ArgumentParser
) -> None:
    document = _raw(
        sub,
        "asyncapi",
        parents=[server],
        help="an AsyncAPI 3.0.0 document for the topics matching a pattern",
        epilog=_ASYNCAPI_EPILOG,
        description="Print an AsyncAPI 3.0.0 document describing the topics matching PATTERN.",
    )
    document.add_argument("pattern", help="topic name or pattern ('orders.>')")
    formats = ("json", "yaml") if importlib.util.find_spec("yaml") is not None else ("json",)
    document.add_argument("--format", choices=formats, default="json", help="default json")
    document.add_argument(
        "--kafka", metavar="HOST:PORT", help="also list the Kafka door at this address as a server"
    )
    document.add_argument(
        "--registry",
        metavar="URL",
        help="with --kafka: the Schema Registry door its serializers use (http://HOST:8081)",
    )
    document.add_argument("--title", default="Odradek topics", help="the document's title")
    document.add_argument(
        "--api-version",
        default="1.0.0",
        metavar="VERSION",
        help="the document's info.version (default 1.0.0)",
    )
    document.set_defaults(handler=commands.asyncapi_document)


def _add_completion(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    completion = _raw(
        sub,
        "completion",
        help="print a shell completion script (bash, zsh, fish)",
        description="Print a completion script for SHELL: commands, actions and flags complete on TAB.",
        epilog="""examples:
  odradek completion bash > ~/.local/share/bash-completion/completions/odradek
  odradek completion zsh > "${fpath[1]}/_odradek"
  odradek completion fish > ~/.config/fish/completions/odradek.fish
  source <(odradek completion bash)              # this shell only""",
    )
    completion.add_argument("shell", choices=("bash", "zsh", "fish"))
    completion.set_defaults(handler=completion_cli.completion)


def _serve(args: argparse.Namespace) -> int:
    from odradek.cli import serve

    return serve.run(serve.settings_from(args, dict(os.environ)))


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["bench"]:
        from odradek.bench import main as bench_main

        return bench_main(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    if getattr(args, "server", None) is None:
        args.server = os.environ.get(defaults.url_variable) or defaults.url  # remote.configured_url
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except Unavailable as exc:
        if getattr(args, "etcd", None):  # serve --etcd, or user/token/tenant/acl/quota --etcd
            _error(f"{_first_line(exc)} (is etcd running at {args.etcd}?)")
        else:
            _error(f"{_first_line(exc)} (is `odradek serve` running at {args.server}?)")
        return EXIT_UNAVAILABLE
    except OdradekError as exc:
        _error(exc.message)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except OSError as exc:
        if terminal.stdout_is_closed_error(exc):
            terminal.silence_stdout()
            return 0
        _error(str(exc))
        return EXIT_REFUSED


def _first_line(exc: OdradekError) -> str:
    return exc.message.split(". Detail:")[0].splitlines()[0] if exc.message else type(exc).__name__


def _error(message: str) -> None:
    sys.stderr.write(f"odradek: error: {message}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
