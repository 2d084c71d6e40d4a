"""``odradek acl add|list|remove``: access control lists (docs/security.md, decision 0020).

Like ``odradek user``, they work against a running server through the native door (the
caller's credentials must name an admin principal), or, with ``--data-dir DIR``, on the
data directory's bindings directly while the server is stopped, or, with ``--etcd URLS
[--etcd-cluster NAME]``, on a cluster's bindings in its etcd (``--cluster`` names the
cluster resource here). A resource is named by
one of ``--topic``, ``--group``, ``--subject``, ``--transactional-id`` or ``--cluster``;
its pattern type is ``--pattern-type`` (default: ``match`` for a name with a ``*`` or
``>`` segment, ``literal`` otherwise).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from odradek.cli.security import admin_call
from odradek.errors import InvalidRequest
from odradek.security.acl import CLUSTER, OPERATIONS, PATTERN_TYPES, WILDCARD, check_match_pattern

if TYPE_CHECKING:  # the admin module brings the storage seam: not for argument parsing
    from odradek.security.actions import Call

_RESOURCES = ("topic", "group", "subject", "transactional_id")


def _call(args: argparse.Namespace) -> Call:
    def local(data_dir: str) -> Call:
        from odradek.security.acl_admin import local_call
        from odradek.security.acl_store import AclStore

        return local_call(AclStore.open(data_dir))

    def in_etcd(documents: Any) -> Call:
        from odradek.security.acl_admin import local_call
        from odradek.security.acl_store import DOCUMENT, AclStore

        return local_call(AclStore(documents.persistence(DOCUMENT)))

    return admin_call(args, local, in_etcd)


def _resource(args: argparse.Namespace, *, required: bool) -> dict[str, str]:
    """The resource type, pattern and pattern type the flags name ({} for none)."""
    named = [(kind, getattr(args, kind)) for kind in _RESOURCES if getattr(args, kind) is not None]
    if args.cluster:
        named.append(("cluster", CLUSTER))
    if len(named) > 1:
        raise InvalidRequest(
            "name one resource: --topic, --group, --subject, --transactional-id or --cluster"
        )
    if not named:
        if required:
            raise InvalidRequest(
                "name a resource: --topic, --group, --subject, --transactional-id or --cluster"
            )
        return {"pattern_type": args.pattern_type} if args.pattern_type else {}
    kind, pattern = named[0]
    pattern_type = args.pattern_type
    if pattern_type is None and required:
        wildcard = pattern != WILDCARD and any(segment in ("*", ">") for segment in pattern.split("."))
        pattern_type = "match" if wildcard else "literal"
    if pattern_type == "match":
        check_match_pattern(pattern)
    found = {"resource_type": kind, "pattern": pattern}
    return {**found, "pattern_type": pattern_type} if pattern_type else found


def _operations(text: str) -> list[str]:
    operations = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not operations:
        raise InvalidRequest("name at least one operation: " + ", ".join(OPERATIONS))
    return operations


def _show(bindings: list[dict[str, str]], args: argparse.Namespace, verb: str) -> None:
    if args.format == "json":
        for entry in bindings:
            print(json.dumps(entry))
        return
    for entry in bindings:
        print(
            f"{verb}{entry['permission']}\t{entry['principal']}\t{entry['operation']}\t"
            f"{entry['resource_type']}\t{entry['pattern_type']}\t{entry['pattern']}"
        )


def acl_add(args: argparse.Namespace) -> int:
    if (args.allow is None) == (args.deny is None):
        raise InvalidRequest("give --allow OPERATIONS or --deny OPERATIONS (one of them)")
    permission, operations = ("allow", args.allow) if args.allow is not None else ("deny", args.deny)
    resource = _resource(args, required=True)
    bindings = [
        {"principal": args.principal, "operation": operation, "permission": permission, **resource}
        for operation in _operations(operations)
    ]
    added = _call(args)("acl_add", {"bindings": bindings})["added"]
    _show(added, args, "added ")
    if len(added) < len(bindings):
        print(f"({len(bindings) - len(added)} present already)")
    return 0


def _filter(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = _resource(args, required=False)
    if args.principal:
        body["principal"] = args.principal
    if args.operation:
        body["operation"] = args.operation
    if args.permission:
        body["permission"] = args.permission
    return body


def acl_list(args: argparse.Namespace) -> int:
    _show(_call(args)("acl_list", _filter(args))["bindings"], args, "")
    return 0


def acl_remove(args: argparse.Namespace) -> int:
    body = _filter(args)
    if not body:
        raise InvalidRequest("name what to remove (--principal, a resource, --operation or --permission)")
    removed = _call(args)("acl_remove", body)["removed"]
    _show(removed, args, "removed ")
    if not removed:
        print("no binding matched")
    return 0


def _resource_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", metavar="NAME", help="topics: a name, a prefix or a pattern ('orders.>')")
    parser.add_argument("--group", metavar="NAME", help="consumer groups (odradek and Kafka)")
    parser.add_argument("--subject", metavar="NAME", help="Schema Registry subjects")
    parser.add_argument(
        "--transactional-id", dest="transactional_id", metavar="NAME", help="Kafka transactional ids"
    )
    parser.add_argument(
        "--cluster", action="store_true", help="the cluster (Kafka's admin APIs, ACL management)"
    )
    parser.add_argument(
        "--pattern-type",
        choices=PATTERN_TYPES,
        help="literal, prefixed or match ('*' one segment, '>' the rest); default: match for a name with "
        "a '*' or '>' segment, else literal",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output (default text)")


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], server: argparse.ArgumentParser
) -> None:
    offline = argparse.ArgumentParser(add_help=False)
    offline.add_argument(
        "--data-dir",
        metavar="DIR",
        help="change the bindings of this data directory directly (the server stopped) "
        "instead of asking the server",
    )
    from odradek.cli.cluster import add_offline_etcd_arguments

    add_offline_etcd_arguments(offline, cluster_flag=False)  # (--cluster names a resource here)
    acl = sub.add_parser(
        "acl", help="add, list, remove access control bindings (with serve --auth --authorize)"
    )
    actions = acl.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add",
        parents=[server, offline],
        help="allow or deny a principal operations on resources",
        epilog="examples:\n"
        "  odradek acl add --principal alice --allow read,write --topic 'orders.>'\n"
        "  odradek acl add --principal alice --allow read --group billing\n"
        "  odradek acl add --principal 'User:*' --deny all --topic hr --pattern-type prefixed\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument(
        "--principal", required=True, metavar="P", help="User:NAME, NAME, or User:* for everyone"
    )
    add.add_argument("--allow", metavar="OPS", help="operations to allow: " + ",".join(OPERATIONS))
    add.add_argument("--deny", metavar="OPS", help="operations to deny (a deny wins over any allow)")
    _resource_flags(add)
    add.set_defaults(handler=acl_add)
    for name, handler, text in (
        ("list", acl_list, "list bindings, optionally only those matching the flags"),
        ("remove", acl_remove, "remove the bindings matching the flags (at least one)"),
    ):
        action = actions.add_parser(name, parents=[server, offline], help=text)
        action.add_argument("--principal", metavar="P", help="only this principal's bindings")
        action.add_argument("--operation", choices=OPERATIONS, help="only bindings of this operation")
        action.add_argument("--permission", choices=("allow", "deny"), help="only allows or denies")
        _resource_flags(action)
        action.set_defaults(handler=handler)
