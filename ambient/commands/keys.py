"""``ambient keys add|list|remove``: one key per client app (a Loom, a plugin, a chat app), each a place.

The secret is printed once, at ``add``; only its hash is kept (:mod:`ambient.keys`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from ambient.app import App
from ambient.keys import Key, KeyStore


def register(sub: Any) -> None:
    p = sub.add_parser(
        "keys",
        help="keys for other apps: Loom, loomsidian, SillyTavern on the daemon's /v1; chat apps through "
        "`ambient mcp`",
        description="One key per client app. Each app is a place: its requests become trees with the "
        "source key:NAME, behind its own wall unless --scope says otherwise. The secret is shown once; "
        "only its hash is kept in $AMBIENT_HOME/keys.json. Completion apps use it on /v1 "
        "(docs/clients.md); chat apps that speak MCP run `ambient mcp` with it in AMBIENT_KEY "
        "(docs/mcp.md).",
    )
    keys = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    add = keys.add_parser("add", help="a new key (its secret is printed once)")
    add.add_argument("name", help="the app's name: 1-64 letters, digits, '_', '.' or '-' (e.g. loom)")
    add.add_argument(
        "--scope",
        help="the scope its trees stand in: key:NAME (default: a wall of its own, it sees only its own "
        "trees) or a bare name such as loom (behind your private wall, beside your notes and the UI)",
    )
    add.add_argument(
        "--retrieve",
        action="store_true",
        help="retrieve memory (within its scope's walls) into its prompts; off by default: the app "
        "owns its prompt",
    )
    add.add_argument("--json", action="store_true", help="print the key and its secret as JSON")
    add.set_defaults(func=cmd_add)

    ls = keys.add_parser("list", help="every key (never a secret)")
    ls.add_argument("--json", action="store_true", help="print as JSON")
    ls.set_defaults(func=cmd_list)

    rm = keys.add_parser("remove", help="refuse a key from now on (its trees stay)")
    rm.add_argument("name", help="the key's name")
    rm.add_argument("--json", action="store_true", help="print the removed key as JSON")
    rm.set_defaults(func=cmd_remove)


def cmd_add(args: argparse.Namespace, app: App) -> int:
    key, secret = KeyStore(app.config.home).add(args.name, scope=args.scope, retrieve=args.retrieve)
    if args.json:
        print(json.dumps({"key": key.as_dict(), "secret": secret}, indent=2))
        return 0
    port = app.config.server.port
    print(f"key {key.name} added: {describe(key)}")
    print("its secret, shown this once (only its hash is kept; put it in the app's settings):")
    print(secret)
    print(f"point the app at http://127.0.0.1:{port}/v1 with this key as its API key (docs/clients.md),")
    print("or, for a chat app that speaks MCP (Claude Desktop), have it start `ambient mcp` with this key in")
    print("its environment as AMBIENT_KEY, never on the command line (docs/mcp.md)")
    return 0


def cmd_list(args: argparse.Namespace, app: App) -> int:
    keys = KeyStore(app.config.home).list()
    if args.json:
        print(json.dumps({"keys": [k.as_dict() for k in keys]}, indent=2))
        return 0
    if not keys:
        print("no keys yet: add one with `ambient keys add NAME`")
    for key in keys:
        made = dt.datetime.fromtimestamp(key.created_at).strftime("%Y-%m-%d %H:%M")
        print(f"{key.name}  {key.hint}…  added {made}  {describe(key)}")
    return 0


def cmd_remove(args: argparse.Namespace, app: App) -> int:
    key = KeyStore(app.config.home).remove(args.name)
    if args.json:
        print(json.dumps({"removed": key.as_dict()}, indent=2))
        return 0
    print(
        f"key {key.name} removed: its secret is refused from now on; its trees stay "
        f"(forget them with `ambient forget --place {key.tree_source}`)"
    )
    return 0


def describe(key: Key) -> str:
    wall = "a wall of its own" if ":" in key.scope else "behind your private wall"
    memory = "memory retrieved into its prompts" if key.retrieve else "no retrieval into its prompts"
    return f"trees {key.tree_source}, scope {key.scope} ({wall}), {memory}"
