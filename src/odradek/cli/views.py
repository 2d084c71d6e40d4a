"""``odradek view ...``: the parser of the view commands (docs/cli.md, "view").

Light on purpose, as main.py: the handlers (view_commands.py) are imported only when a
command runs, so ``odradek view --help`` loads no Arrow or Flight client.
"""

from __future__ import annotations

import argparse

from odradek.cli import lazy

handlers = lazy.Handlers("odradek.cli.view_commands")

_EPILOG = """\
examples:
  odradek view create orders_by_customer 'orders.>' myapp.reducers:orders --key myapp.reducers:customer
  odradek view create last_order 'orders.>' odradek.views.reducers:latest
  odradek view get orders_by_customer c-17          # the state, as it is (exit 1 if none)
  odradek view scan orders_by_customer c-1 --format jsonl
  odradek view describe orders_by_customer          # JSON: status, error, offsets, lag, keys
  odradek view list
  odradek view delete orders_by_customer

A reducer (and a key function) is an import path the server can import; see
docs/snapshots-and-views.md."""


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], server: argparse.ArgumentParser
) -> None:
    def command(name: str, help_text: str, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        return actions.add_parser(
            name,
            parents=parents,
            help=help_text,
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    view = sub.add_parser(
        "view",
        help="materialized key views: create, get, scan, describe, list, delete",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = view.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = command("create", "define a view kept up to date from the topics of PATTERN", [server])
    create.add_argument("name")
    create.add_argument("pattern", help="a topic name or pattern (orders.>)")
    create.add_argument("reducer", help="import path of the reducer, package.module:function")
    create.add_argument(
        "--key", metavar="FUNCTION", help="import path of the key function (default: record key)"
    )
    create.add_argument("--exist-ok", action="store_true", help="no error if the same view exists")
    create.add_argument(
        "--value-format",
        choices=("typed", "json"),
        default=None,
        help="a schema'd topic's values as the reducer gets them: typed (new views' default) or json text",
    )
    create.set_defaults(handler=handlers.view_create)
    get = command("get", "print a key's state in a view (exit 1 if it has none)", [server])
    get.add_argument("name")
    get.add_argument("key")
    get.set_defaults(handler=handlers.view_get)
    scan = command("scan", "print the keys of a view starting with PREFIX, in key order", [server])
    scan.add_argument("name")
    scan.add_argument("prefix", nargs="?", default="")
    scan.add_argument("--limit", type=int, default=None, metavar="N", help="rows at most (default 100,000)")
    scan.add_argument(
        "--format",
        choices=("text", "jsonl"),
        default="text",
        help="KEY<TAB>STATE lines (default) or JSON lines",
    )
    scan.set_defaults(handler=handlers.view_scan)
    describe = command("describe", "a view's definition, status, error, offsets and lag as JSON", [server])
    describe.add_argument("name")
    describe.set_defaults(handler=handlers.view_describe)
    listing = command("list", "one view name a line", [server])
    listing.set_defaults(handler=handlers.view_list)
    delete = command("delete", "delete a view and its table", [server])
    delete.add_argument("name")
    delete.set_defaults(handler=handlers.view_delete)
