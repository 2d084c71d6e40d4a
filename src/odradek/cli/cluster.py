"""``odradek cluster status``: an operator's view of a cluster, read from etcd.

A thin shell over ``odradek.cluster.status`` (which needs the ``cluster`` extra, so it
is imported only when the command runs): the report as text tables or as JSON, and an
exit code a script can act on: 0 etcd is healthy and an agent owns the cell, 1 etcd
answered but something is wrong (the report's problems), 2 bad usage, 3 no etcd
endpoint answered.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from odradek import limits
from odradek.cli import terminal
from odradek.errors import InvalidRequest, OdradekError

if TYPE_CHECKING:
    from odradek.cluster.status import AgentStatus, ClusterStatus, EndpointHealth, OwnerStatus

ETCD_VARIABLE = "ODRADEK_ETCD"  # the same variables as `odradek serve --etcd --cluster`
CLUSTER_VARIABLE = "ODRADEK_CLUSTER"
PASSWORD_VARIABLE = "ODRADEK_ETCD_PASSWORD"
# A secured etcd's settings: (flag, its dest, its variable), as `odradek serve` reads them.
ETCD_SECURITY = (
    ("--etcd-ca", "etcd_ca", "ODRADEK_ETCD_CA"),
    ("--etcd-cert", "etcd_cert", "ODRADEK_ETCD_CERT"),
    ("--etcd-key", "etcd_key", "ODRADEK_ETCD_KEY"),
    ("--etcd-user", "etcd_user", "ODRADEK_ETCD_USER"),
    ("--etcd-password-file", "etcd_password_file", "ODRADEK_ETCD_PASSWORD_FILE"),
)

_BOUNDS = textwrap.fill(
    f"Bounds: an endpoint silent for {limits.cluster_status_endpoint_seconds:g} s is reported "
    f"unreachable; at most {limits.cluster_status_agents_max:,} agents and "
    f"{limits.cluster_status_owners_max:,} owner keys are listed, and the "
    f"{limits.compaction_lag_topics_max:,} compacted topics with the highest dirty ratio; a "
    f"compacted topic whose round has been due for {limits.compaction_lag_warning_seconds:g} s "
    "is a warning.",
    width=88,
)
_CLUSTER_EPILOG = f"""\
Reads the cluster's state from etcd (no agent needs to be up): the agents with their
role (the owner of the cell or a standby), addresses, lease and its time to live; the
owner and its epoch; the catalog's topic count; each etcd endpoint's health (member,
leader, raft term and index, database size, version, alarms). The owner, asked through
its Flight door, says how far its checkpoints lag its journal and how far compaction
lags on its compacted topics (dirty bytes against the ratio that triggers a round).

--etcd defaults to ${ETCD_VARIABLE}, --cluster to ${CLUSTER_VARIABLE}, else 'default'. A secured
etcd: https:// endpoints with --etcd-ca (--etcd-cert and --etcd-key when etcd asks for a
client certificate) and --etcd-user with the password in ${PASSWORD_VARIABLE} or
--etcd-password-file; each defaults to its variable, as for `odradek serve`.

Exit codes: 0 etcd is healthy and an agent owns the cell; 1 etcd answered but something
is wrong (listed under "problems"); 2 bad usage; 3 no etcd endpoint answered.

{_BOUNDS}

examples:
  odradek cluster status --etcd http://10.0.0.1:2379,http://10.0.0.2:2379,http://10.0.0.3:2379
  odradek cluster status --etcd http://127.0.0.1:2379 --cluster shop --json
  ODRADEK_ETCD_PASSWORD=... odradek cluster status --etcd https://10.0.0.1:2379 \
      --etcd-ca ca.pem --etcd-cert agent.pem --etcd-key agent-key.pem --etcd-user odradek"""


class _NoPasswordFlag(argparse.Action):
    """``--etcd-password`` refused without echoing its value (and not taken, as an
    abbreviation, for ``--etcd-password-file``)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        parser.error(
            "there is no --etcd-password: a command line is visible to every user of the machine; "
            f"set ${PASSWORD_VARIABLE} or give --etcd-password-file FILE"
        )


def add_etcd_security_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of a secured etcd (``odradek serve`` and ``odradek cluster status``)."""
    parser.add_argument(
        "--etcd-ca",
        metavar="FILE",
        help="PEM CA certificate(s) that signed etcd's certificate, for https:// endpoints "
        "(default: the system's CAs)",
    )
    parser.add_argument(
        "--etcd-cert",
        metavar="FILE",
        help="PEM client certificate for an etcd that asks for one (--client-cert-auth); with --etcd-key",
    )
    parser.add_argument("--etcd-key", metavar="FILE", help="the unencrypted PEM key of --etcd-cert")
    parser.add_argument(
        "--etcd-user",
        metavar="NAME",
        help=f"etcd user to authenticate as; its password from ${PASSWORD_VARIABLE} or --etcd-password-file",
    )
    parser.add_argument(
        "--etcd-password-file",
        metavar="FILE",
        help="a file holding the --etcd-user's password (one line); there is no password flag",
    )
    parser.add_argument("--etcd-password", nargs="?", action=_NoPasswordFlag, help=argparse.SUPPRESS)


def add_offline_etcd_arguments(parser: argparse.ArgumentParser, *, cluster_flag: bool = True) -> None:
    """``--etcd URLS`` and the cluster's name (``--cluster NAME``, or ``--etcd-cluster
    NAME`` where ``--cluster`` means something else) with the flags of a secured etcd:
    the security documents of a cluster changed in its etcd directly (decision 0029)."""
    parser.add_argument(
        "--etcd",
        metavar="URLS",
        help="change the document of the cluster coordinated by this etcd directly "
        "(http://HOST:PORT,... or https://...), e.g. to make a cluster's first admin",
    )
    names = ("--cluster", "--etcd-cluster") if cluster_flag else ("--etcd-cluster",)
    parser.add_argument(
        *names,
        dest="etcd_cluster",
        metavar="NAME",
        help=f"with --etcd: the cluster's name in etcd (default ${CLUSTER_VARIABLE}, else 'default')",
    )
    add_etcd_security_arguments(parser)


def _etcd_security(args: argparse.Namespace, tls: Any, load_security: Any) -> Any:
    """The secured etcd's settings (CA, client certificate, user and password) from the
    flags or their variables, as ``odradek serve`` reads them; ``load_security`` is
    cluster/etcd_client.py's, imported by the caller (the cluster extra may be absent)."""
    settings = {
        dest: getattr(args, dest, None) or os.environ.get(variable) or None
        for _, dest, variable in ETCD_SECURITY
    }
    return load_security(
        tls,
        ca=settings["etcd_ca"],
        cert=settings["etcd_cert"],
        key=settings["etcd_key"],
        user=settings["etcd_user"],
        password=os.environ.get(PASSWORD_VARIABLE) or None,
        password_file=settings["etcd_password_file"],
    )


def etcd_documents(args: argparse.Namespace) -> Any:
    """The security documents in the etcd of ``args.etcd`` (cluster/documents.py), with
    the secured etcd's settings from the flags or their variables, as ``odradek serve``
    reads them."""
    try:
        from odradek.cluster.documents import EtcdDocuments
        from odradek.cluster.etcd import endpoints_tls
        from odradek.cluster.etcd_client import load_security
    except ImportError as exc:
        raise InvalidRequest(
            f"--etcd needs the cluster extra: pip install 'odradek[cluster]' ({exc})"
        ) from exc
    security = _etcd_security(args, endpoints_tls(args.etcd), load_security)
    cluster = getattr(args, "etcd_cluster", None) or os.environ.get(CLUSTER_VARIABLE) or "default"
    return EtcdDocuments(args.etcd, cluster, security=security)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser(
        "cluster",
        help="a cluster's agents, owner and etcd health",
        epilog=_CLUSTER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    status = actions.add_parser(
        "status",
        help="agents, owner and epoch, catalog size, etcd health, read from etcd",
        description="Show a cluster's agents, owner and etcd health, read from etcd.",
        epilog=_CLUSTER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument(
        "--etcd",
        metavar="URLS",
        help=f"etcd endpoints, http://HOST:PORT,... or https://... (default ${ETCD_VARIABLE})",
    )
    status.add_argument(
        "--cluster",
        metavar="NAME",
        help=f"the cluster's name in etcd (default ${CLUSTER_VARIABLE}, else 'default')",
    )
    add_etcd_security_arguments(status)
    status.add_argument("--format", choices=("text", "json"), default="text", help="default text")
    status.add_argument(
        "--json", dest="format", action="store_const", const="json", help="the same as --format json"
    )
    status.set_defaults(handler=status_command)
    handover = actions.add_parser(
        "handover",
        help="hand the data over to another agent (the owner stays, as a standby)",
        description="Ask the owner of a cluster's data to hand it over to another agent, as "
        "SIGTERM does but without stopping: it commits its journal, writes a checkpoint and "
        "releases the data to AGENT (another live agent without --to), then stands by. Give "
        "--server every agent (grpc://a1:8815,a2:8815,...) or any one: a standby redirects.",
    )
    handover.add_argument(
        "--server",
        metavar="URLS",
        default=argparse.SUPPRESS,
        help="the agents (default $ODRADEK_URL)",
    )
    handover.add_argument("--to", metavar="AGENT", help="agent id to hand over to (default: another)")
    handover.add_argument(
        "--wait",
        metavar="S",
        type=float,
        default=30.0,
        help="wait at most S seconds for the new owner to serve (0: do not wait; default 30)",
    )
    handover.set_defaults(handler=handover_command)


def handover_command(args: argparse.Namespace) -> int:
    """Ask for the handover, then wait until an agent other than the old owner serves."""
    import time

    import odradek
    from odradek.cli.main import EXIT_UNAVAILABLE

    with odradek.connect(args.server) as client:
        asked = client._hand_over(args.to)
        print(f"agent {asked['from']} hands the data over to agent {asked['to']}", flush=True)
        deadline = time.monotonic() + max(0.0, args.wait)
        while args.wait > 0:
            try:
                status = client._cluster_status()
            except OdradekError:
                status = {}
            if status.get("owner") == asked["to"] and status.get("role") == "owner":
                print(f"agent {asked['to']} serves the data (epoch {status.get('epoch')})")
                return 0
            if time.monotonic() > deadline:
                _error(f"agent {asked['to']} did not serve the data within {args.wait:g} s")
                return EXIT_UNAVAILABLE
            time.sleep(0.1)
    return 0


def status_command(args: argparse.Namespace) -> int:
    import asyncio

    from odradek.cli.main import EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE

    endpoints = args.etcd or os.environ.get(ETCD_VARIABLE)
    if not endpoints:
        _error(f"cluster status needs --etcd http://HOST:PORT[,...] (or ${ETCD_VARIABLE})")
        return EXIT_USAGE
    cluster = args.cluster or os.environ.get(CLUSTER_VARIABLE) or "default"
    try:
        from odradek.cluster.etcd import endpoints_tls
        from odradek.cluster.etcd_client import load_security
        from odradek.cluster.status import cluster_status
    except ImportError as exc:
        raise InvalidRequest(
            f"cluster status needs the cluster extra: pip install 'odradek[cluster]' ({exc})"
        ) from exc
    tls = endpoints_tls(endpoints)  # (a bad endpoint is refused as before, exit 1)
    try:
        security = _etcd_security(args, tls, load_security)
    except InvalidRequest as exc:
        _error(exc.message)
        return EXIT_USAGE
    report = asyncio.run(cluster_status(endpoints, cluster, security=security))
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(render(report))
    if not report.reachable:
        tried = ", ".join(endpoint.endpoint for endpoint in report.endpoints)
        _error(f"etcd cannot be reached at {tried} (is etcd running there?)")
        return EXIT_UNAVAILABLE
    if report.problems:
        _error(f"cluster {report.cluster}: {_count(len(report.problems), 'problem')}, see above")
        return EXIT_REFUSED
    return 0


# --- text ------------------------------------------------------------------------------


def render(report: ClusterStatus) -> str:
    """The report as people read it: a summary line, then agents, owners, etcd tables."""
    owner = report.owner
    state = "healthy" if report.healthy else _count(len(report.problems), "problem")
    summary = [f"cluster {report.cluster}: {state}"]
    if owner is not None:
        summary.append(f"owner {owner.record.agent_id} (epoch {owner.record.epoch})")
    elif report.owners_total is not None:
        summary.append("no owner")
    if report.agents_total is not None:
        summary.append(_count(report.agents_total, "agent"))
    if report.cells > 1:
        summary.append(f"{report.cells} cells")
    if report.catalog_topics is not None:
        summary.append(f"{_count(report.catalog_topics, 'topic')} in the catalog")
    lines = [", ".join(summary)]
    if report.agents:
        lines += ["", *_table(_agent_rows(report.agents, report.checked_at))]
    if report.owners:
        lines += ["", *_table(_owner_rows(report.owners, report.agents if report.cells > 1 else ()))]
    if report.store is not None:
        lines += ["", _store_line(report.store)]
    if report.compaction is not None:
        lines += ["", *_compaction_lines(report.compaction, report.checked_at)]
    lines += ["", *_table(_endpoint_rows(report.endpoints))]
    for title, items in (("problems", report.problems), ("warnings", report.warnings)):
        if items:
            lines += ["", f"{title}:", *(f"  - {item}" for item in items)]
    return "\n".join(lines)


def _store_line(store: dict[str, Any]) -> str:
    """How far the owner's checkpoints lag its journal, in one line."""
    failures = int(store.get("failures", 0))
    return (
        f"checkpoints: the latest began {float(store.get('seconds', 0)):.1f} s ago "
        f"(one every {float(store.get('interval_seconds', 0)):g} s); "
        f"{int(store.get('journal_objects', 0)):,} journal objects "
        f"({terminal.human_bytes(int(store.get('journal_bytes', 0)))}) since, what a new owner would replay; "
        f"{int(store.get('checkpoints', 0)):,} taken" + (f", {failures:,} failed" if failures else "")
    )


def _compaction_lines(compaction: dict[str, Any], now: float) -> list[str]:
    """How far compaction lags on the owner's compacted topics: a line of totals, then
    the worst topics by dirty ratio (at most ``compaction_lag_topics_max``)."""
    topics = int(compaction.get("topics", 0))
    if not topics:
        return ["compaction: no compacted topic"]
    last = compaction.get("last_round_at")
    rounds = int(compaction.get("rounds", 0))
    finished = f"the latest {_duration(now - float(last))} ago" if last is not None else "none yet"
    line = (
        f"compaction: {_count(topics, 'compacted topic')}, "
        f"{terminal.human_bytes(int(compaction.get('dirty_bytes', 0)))} dirty of "
        f"{terminal.human_bytes(int(compaction.get('sealed_bytes', 0)))} sealed "
        f"({float(compaction.get('dirty_ratio', 0)):.0%}); "
        f"{int(compaction.get('topics_over_trigger', 0)):,} at their trigger, "
        f"{int(compaction.get('topics_behind', 0)):,} behind; "
        f"{_count(rounds, 'round')}, {finished}"
    )
    worst = [row for row in compaction.get("worst", ()) if isinstance(row, dict)]
    if not worst:
        return [line]
    rows: list[tuple[str, ...]] = [
        ("TOPIC", "CLEANUP", "DIRTY", "SEALED", "RATIO", "TRIGGER", "ROUNDS", "LAST ROUND", "DUE FOR")
    ]
    for row in worst:
        last_round = row.get("last_round_at")
        behind = float(row.get("behind_seconds", 0))
        rows.append(
            (
                str(row.get("topic")),
                str(row.get("cleanup")),
                terminal.human_bytes(int(row.get("dirty_bytes", 0))),
                terminal.human_bytes(int(row.get("sealed_bytes", 0))),
                f"{float(row.get('dirty_ratio', 0)):.0%}",
                f"{float(row.get('trigger_ratio', 0)):.0%}",
                f"{int(row.get('rounds', 0)):,}",
                "-" if last_round is None else f"{_duration(now - float(last_round))} ago",
                _duration(behind) if behind else "-",
            )
        )
    shown = f"the {len(worst)} worst by dirty ratio" if len(worst) < topics else "by dirty ratio"
    return [line, f"compacted topics, {shown}:", *_table(rows)]


def _agent_rows(agents: Sequence[AgentStatus], now: float) -> list[tuple[str, ...]]:
    header = ("AGENT", "ROLE", "ADDRESS", "DOORS", "LEASE", "TTL", "STARTED")
    return [header, *(_agent_row(agent, now) for agent in agents)]


def _owner_rows(owners: Sequence[OwnerStatus], agents: Sequence[AgentStatus] = ()) -> list[tuple[str, ...]]:
    """The owner keys; with ``agents`` (a cluster of several cells) also where each
    cell's Kafka door is: broker ``index + 1`` on its agent's Kafka port plus the index."""
    kafka = {agent.record.agent_id: agent.record.doors.get("kafka") for agent in agents}
    rows: list[tuple[str, ...]] = [("OWNS", "AGENT", "EPOCH", "LEASE", *(("KAFKA",) if agents else ()))]
    for owner in owners:
        record = owner.record
        agent = record.agent_id + ("" if owner.registered else " (not registered)")
        row: tuple[str, ...] = (record.topic, agent, str(record.epoch), f"{record.lease:x}")
        if agents:
            row += (_cell_broker(record.topic, kafka.get(record.agent_id)),)
        rows.append(row)
    return rows


def _cell_broker(cell: str, kafka: str | None) -> str:
    """``broker N host:port`` of a cell's Kafka door (decision 0033), or ``-``."""
    from odradek.protocols.kafka.cells import node_of_cell

    try:
        node = node_of_cell(cell)
    except InvalidRequest:
        return "-"
    if not kafka:
        return "-"
    host, _, port = kafka.rpartition(":")
    return f"broker {node} {host}:{int(port) + node - 1}"


def _endpoint_rows(endpoints: Sequence[EndpointHealth]) -> list[tuple[str, ...]]:
    header = ("ETCD", "NAME", "MEMBER", "HEALTH", "ROLE", "TERM", "INDEX", "REVISION", "DB", "VERSION")
    return [header, *(_endpoint_row(endpoint) for endpoint in endpoints)]


def _agent_row(agent: AgentStatus, now: float) -> tuple[str, ...]:
    record = agent.record
    doors = ", ".join(f"{door} {address}" for door, address in sorted(record.doors.items())) or "-"
    if agent.lease_ttl_seconds is None:
        ttl = "?"
    else:
        ttl = f"{agent.lease_ttl_seconds}/{agent.lease_granted_seconds} s"
    started = datetime.datetime.fromtimestamp(record.started_at, datetime.UTC)
    up = _duration(now - record.started_at)
    return (
        record.agent_id,
        agent.role,
        record.address,
        doors,
        f"{record.lease:x}",
        ttl,
        f"{started:%Y-%m-%d %H:%M:%S}Z (up {up})",
    )


def _endpoint_row(endpoint: EndpointHealth) -> tuple[str, ...]:
    if not endpoint.reachable:
        health = "unreachable"
    elif endpoint.alarms:
        health = "alarm " + ",".join(endpoint.alarms)
    elif not endpoint.leader_id:
        health = "no leader"
    elif endpoint.errors:
        health = "errors"
    else:
        health = "ok"
    role = "-" if not endpoint.reachable else "leader" if endpoint.leader else "follower"
    if endpoint.learner:
        role = "learner"

    def number(value: int | None) -> str:
        return "-" if value is None else str(value)

    size = "-" if endpoint.db_size_bytes is None else terminal.human_bytes(endpoint.db_size_bytes)
    return (
        endpoint.endpoint,
        endpoint.name or "-",
        "-" if endpoint.member_id is None else f"{endpoint.member_id:x}",
        health,
        role,
        number(endpoint.raft_term),
        number(endpoint.raft_index),
        number(endpoint.revision),
        size,
        endpoint.version or "-",
    )


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


def _count(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _error(message: str) -> None:
    sys.stderr.write(f"odradek: error: {message}\n")
    sys.stderr.flush()
