"""``odradek quota set|list|remove``: client quotas (docs/security.md, decision 0021).

Against a running server through the native door (the caller's credentials must name an
admin principal; a server without authentication serves them on its loopback doors),
or, with ``--data-dir DIR``, on the data directory's settings directly while the server
is stopped, or, with ``--etcd URLS [--cluster NAME]``, on a cluster's settings in its
etcd, as ``odradek user`` does.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from odradek.cli.security import admin_call
from odradek.errors import InvalidRequest

if TYPE_CHECKING:
    from odradek.security.actions import Call

_EPILOG = """\
entities (Kafka's): user=NAME, client-id=ID, user=NAME,client-id=ID; <default> for any
other user or client id (user=<default>, user=NAME,client-id=<default>...); a tenant's:
tenant=NAME or tenant=<default>, alone.
quotas: producer_byte_rate and consumer_byte_rate (bytes/s), request_rate (requests/s);
storage_bytes (bytes a tenant's topics may store: appends are refused at it; tenants only).

examples:
  odradek quota set user=alice --producer-byte-rate 1048576 --consumer-byte-rate 2097152
  odradek quota set 'user=<default>' --request-rate 1000
  odradek quota set client-id=batch-loader --producer-byte-rate 10485760 --data-dir ./odradek-data
  odradek quota set tenant=acme --storage-bytes 10737418240
  odradek quota list
  odradek quota remove user=alice --key producer_byte_rate"""

_KEYS = ("producer_byte_rate", "consumer_byte_rate", "request_rate", "storage_bytes")


def _call(args: argparse.Namespace) -> Call:
    def local(data_dir: str) -> Call:
        from odradek.security.quota_admin import local_call
        from odradek.security.quotas import QuotaSettings

        return local_call(QuotaSettings.open(data_dir))

    def in_etcd(documents: Any) -> Call:
        from odradek.security.quota_admin import local_call
        from odradek.security.quotas import DOCUMENT, QuotaSettings

        return local_call(QuotaSettings(documents.persistence(DOCUMENT)))

    return admin_call(args, local, in_etcd)


def _print(entity: dict[str, Any], output_format: str) -> None:
    if output_format == "json":
        print(json.dumps(entity))
        return
    quotas = " ".join(f"{key}={value:g}" for key, value in sorted(entity["quotas"].items()))
    print(f"{entity['entity']}\t{quotas or '-'}")


def quota_set(args: argparse.Namespace) -> int:
    quotas = {key: getattr(args, key) for key in _KEYS if getattr(args, key) is not None}
    if not quotas:
        raise InvalidRequest(
            "name at least one quota: --producer-byte-rate, --consumer-byte-rate, --request-rate, "
            "--storage-bytes"
        )
    _print(_call(args)("quota_set", {"entity": args.entity, "quotas": quotas}), args.format)
    return 0


def quota_list(args: argparse.Namespace) -> int:
    body = {"entity": args.entity} if args.entity else {}
    for entity in _call(args)("quota_list", body)["entities"]:
        _print(entity, args.format)
    return 0


def quota_remove(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"entity": args.entity}
    if args.key:
        body["keys"] = args.key
    result = _call(args)("quota_remove", body)
    _print(result, args.format)
    return 0


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], server: argparse.ArgumentParser
) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        metavar="DIR",
        help="change the quota settings of this data directory directly (the server stopped) "
        "instead of asking the server",
    )
    from odradek.cli.cluster import add_offline_etcd_arguments

    add_offline_etcd_arguments(common)
    common.add_argument("--format", choices=("text", "json"), default="text", help="output (default text)")
    quota = sub.add_parser(
        "quota",
        help="set, list, remove client quotas (bytes/s, requests/s per user, client id and tenant; "
        "a tenant's stored bytes)",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = quota.add_subparsers(dest="action", metavar="ACTION", required=True)
    setter = actions.add_parser("set", parents=[server, common], help="set an entity's quotas (others kept)")
    setter.add_argument("entity", help="user=NAME, client-id=ID, both, tenant=NAME, or <default> names")
    for key in _KEYS:
        unit = {"request_rate": "requests/s", "storage_bytes": "bytes"}.get(key, "bytes/s")
        setter.add_argument(
            f"--{key.replace('_', '-')}", dest=key, type=float, metavar=unit.upper().replace("/", "_PER_")
        )
    setter.set_defaults(handler=quota_set)
    listing = actions.add_parser("list", parents=[server, common], help="list quotas (all, or one entity's)")
    listing.add_argument("entity", nargs="?", help="only this entity's")
    listing.set_defaults(handler=quota_list)
    remove = actions.add_parser("remove", parents=[server, common], help="remove an entity's quotas")
    remove.add_argument("entity")
    remove.add_argument(
        "--key", action="append", choices=_KEYS, help="only this quota (repeatable; default all of them)"
    )
    remove.set_defaults(handler=quota_remove)
