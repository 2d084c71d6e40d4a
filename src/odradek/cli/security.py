"""``odradek user``, ``odradek token`` and ``odradek tenant``: users, API tokens and
tenants (docs/security.md).

Both work against a running server through the native door (the caller's credentials
must name an admin principal; a server without authentication serves them on its
loopback doors), or, with ``--data-dir DIR``, on the data directory's credential store
directly while the server is stopped (how the first admin is made before the server
starts with ``--auth``), or, with ``--etcd URLS [--cluster NAME]``, on a cluster's store
in its etcd directly (how a cluster's first admin is made; decision 0029). A password is
read from ``--password-file``, else from stdin when it is not a terminal (the first
line), else from a prompt: never from a flag, which any user of the machine could read
in ``ps``.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from odradek import limits
from odradek.errors import InvalidRequest

if TYPE_CHECKING:
    from odradek.security.actions import Call


def admin_call(
    args: argparse.Namespace,
    local: Callable[[str], Call],
    in_etcd: Callable[[Any], Call] | None = None,
) -> Call:
    """The administration actions through the server's native door, with
    ``--data-dir`` those of ``local(data_dir)`` on the stopped server's data, or with
    ``--etcd`` those of ``in_etcd(documents)`` on a cluster's documents in its etcd
    (cluster/documents.py)."""
    data_dir = getattr(args, "data_dir", None)
    etcd = getattr(args, "etcd", None)
    if data_dir and etcd:
        raise InvalidRequest("give --data-dir (a server's data directory) or --etcd (a cluster's), not both")
    if data_dir:
        return local(data_dir)
    if etcd and in_etcd is not None:
        from odradek.cli.cluster import etcd_documents

        documents = etcd_documents(args)

        def in_cluster(action: str, body: dict[str, Any]) -> dict[str, Any]:
            try:
                return in_etcd(documents)(action, body)
            finally:
                documents.close()

        return in_cluster
    from odradek.cli.commands import client_for
    from odradek.protocols.flight import messages

    client = client_for(args)

    def call(action: str, body: dict[str, Any]) -> dict[str, Any]:
        with client:
            result: dict[str, Any] = messages.load(client._action(action, body), f"result of {action}")
        return result

    return call


def _call(args: argparse.Namespace) -> Call:
    def local(data_dir: str) -> Call:
        from odradek.security.admin import local_call
        from odradek.security.credentials import CredentialStore

        return local_call(CredentialStore.open(data_dir))

    def in_etcd(documents: Any) -> Call:
        from odradek.security.admin import local_call
        from odradek.security.credentials import DOCUMENT, CredentialStore

        return local_call(CredentialStore(documents.persistence(DOCUMENT)))

    return admin_call(args, local, in_etcd)


def read_password(args: argparse.Namespace) -> str:
    """The new user's password (see the module docstring)."""
    if args.password_file:
        try:
            with open(args.password_file, "rb") as handle:
                raw = handle.read(limits.security_password_bytes_max + 2)
        except OSError as exc:
            raise InvalidRequest(f"--password-file {args.password_file}: {exc.strerror or exc}") from None
        password = raw.decode("utf-8", "replace").rstrip("\r\n")
    elif not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise InvalidRequest("the two passwords differ")
    if not password:
        raise InvalidRequest("the password is empty")
    return password


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds")


def user_add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "name": args.name,
        "password": read_password(args),
        "admin": args.admin,
        "replace": args.replace,
    }
    if args.tenant:
        body["tenant"] = args.tenant
    if args.mechanism:
        body["mechanisms"] = [args.mechanism]
    user = _call(args)("user_add", body)
    print(f"{'changed' if args.replace else 'added'} user {user['name']}")
    return 0


def user_list(args: argparse.Namespace) -> int:
    for user in _call(args)("user_list", {})["users"]:
        flags = " admin" if user["admin"] else ""
        print(f"{user['name']}\ttenant={user['tenant'] or '-'}{flags}\t{','.join(user['mechanisms'])}")
    return 0


def user_remove(args: argparse.Namespace) -> int:
    result = _call(args)("user_remove", {"name": args.name})
    print(f"removed user {result['name']} and {result['tokens_revoked']} token(s)")
    return 0


def token_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"user": args.user}
    if args.expires:
        body["expires"] = args.expires
    result = _call(args)("token_create", body)
    sys.stderr.write(
        f"token {result['id']} of {result['user']}, expires {_when(result['expires'])}; "
        "it is shown this once (stored hashed)\n"
    )
    print(result["token"])
    return 0


def token_list(args: argparse.Namespace) -> int:
    body = {"user": args.user} if args.user else {}
    for token in _call(args)("token_list", body)["tokens"]:
        print(
            f"{token['id']}\t{token['user']}\tcreated={_when(token['created'])}\texpires={_when(token['expires'])}"
        )
    return 0


def token_revoke(args: argparse.Namespace) -> int:
    token = _call(args)("token_revoke", {"id": args.id})
    print(f"revoked token {token['id']} of {token['user']}")
    return 0


def tenant_create(args: argparse.Namespace) -> int:
    result = _call(args)("tenant_create", {"name": args.name})
    print(f"created tenant {result['name']}")
    return 0


def tenant_list(args: argparse.Namespace) -> int:
    for tenant in _call(args)("tenant_list", {})["tenants"]:
        print(f"{tenant['name']}\tusers={tenant['users']}\tcreated={_when(tenant['created'])}")
    return 0


def tenant_delete(args: argparse.Namespace) -> int:
    result = _call(args)("tenant_delete", {"name": args.name})
    print(f"deleted tenant {result['name']}")
    return 0


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], server: argparse.ArgumentParser
) -> None:
    offline = argparse.ArgumentParser(add_help=False)
    offline.add_argument(
        "--data-dir",
        metavar="DIR",
        help="change the credential store of this data directory directly (the server stopped) "
        "instead of asking the server",
    )
    from odradek.cli.cluster import add_offline_etcd_arguments

    add_offline_etcd_arguments(offline)
    user = sub.add_parser("user", help="add, list, remove users (SCRAM credentials)")
    actions = user.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add",
        parents=[server, offline],
        help="add a user; the password from --password-file, stdin or a prompt",
    )
    add.add_argument("name")
    add.add_argument(
        "--tenant",
        metavar="T",
        help="the tenant the user belongs to (made first with odradek tenant create); "
        "default none: the default namespace, or with --admin a cluster admin",
    )
    add.add_argument(
        "--admin", action="store_true", help="a cluster admin (manages users and tokens; not with --tenant)"
    )
    add.add_argument(
        "--mechanism",
        choices=("SCRAM-SHA-256", "SCRAM-SHA-512"),
        help="keep credentials for this SCRAM mechanism only (default both)",
    )
    add.add_argument("--password-file", metavar="FILE", help="read the password from FILE (first line)")
    add.add_argument("--replace", action="store_true", help="change an existing user's password and settings")
    add.set_defaults(handler=user_add)
    listing = actions.add_parser("list", parents=[server, offline], help="list users (never credentials)")
    listing.set_defaults(handler=user_list)
    remove = actions.add_parser("remove", parents=[server, offline], help="remove a user and its tokens")
    remove.add_argument("name")
    remove.set_defaults(handler=user_remove)

    token = sub.add_parser("token", help="create, list, revoke API tokens")
    token_actions = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = token_actions.add_parser(
        "create", parents=[server, offline], help="make an API token of a user; printed once"
    )
    create.add_argument("user")
    create.add_argument("--expires", metavar="DURATION", help="e.g. 30d, 12h (default: never)")
    create.set_defaults(handler=token_create)
    tokens = token_actions.add_parser("list", parents=[server, offline], help="list tokens (never secrets)")
    tokens.add_argument("--user", help="only this user's")
    tokens.set_defaults(handler=token_list)
    revoke = token_actions.add_parser("revoke", parents=[server, offline], help="revoke a token by its id")
    revoke.add_argument("id")
    revoke.set_defaults(handler=token_revoke)

    tenant = sub.add_parser("tenant", help="create, list, delete tenants (namespaces of topics and groups)")
    tenant_actions = tenant.add_subparsers(dest="action", metavar="ACTION", required=True)
    make = tenant_actions.add_parser("create", parents=[server, offline], help="make a tenant (instant)")
    make.add_argument("name")
    make.set_defaults(handler=tenant_create)
    tenants = tenant_actions.add_parser(
        "list", parents=[server, offline], help="list tenants and their users"
    )
    tenants.set_defaults(handler=tenant_list)
    drop = tenant_actions.add_parser(
        "delete",
        parents=[server],
        help="delete a tenant once no user, topic or group is left in it (through the server)",
    )
    drop.add_argument("name")
    drop.set_defaults(handler=tenant_delete)
