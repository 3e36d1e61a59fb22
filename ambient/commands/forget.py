"""``ambient forget``: remove a node, a subtree, a tree or a whole place from everything ambient keeps."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ambient import places
from ambient.app import App
from ambient.forgetting import PlaceCleanup, Target, forget


def register(sub: Any) -> None:
    p = sub.add_parser(
        "forget",
        help="remove a node, a subtree, a tree or a place from the store, memory and sidecars",
        description="Forget for good: the text leaves the store (with its earlier versions and pick-log "
        "rows), the memory index and the places' own files (sidecars). A node alone is taken out and "
        "what was below it moves up to its parent; --subtree takes everything below it too.",
    )
    p.add_argument("node", nargs="?", help="node id (a prefix of at least 4 characters is enough)")
    p.add_argument("--subtree", action="store_true", help="with NODE: everything below it too")
    p.add_argument("--tree", action="append", default=[], metavar="TREE", help="a whole tree (repeatable)")
    p.add_argument(
        "--place",
        help="every tree of a place: as trees name their source (note:PATH, discord:SERVER/CHANNEL, "
        "speech:SESSION) or a scope (notes, speech, discord:SERVER)",
    )
    p.add_argument("--json", action="store_true", help="print what was removed as JSON")
    p.set_defaults(func=cmd_forget)


def cleanups() -> list[PlaceCleanup]:
    """Every installed place's clean-up of what it derived (sidecars and the like)."""
    return [cls.forgotten for cls in places.installed().values()]


def cmd_forget(args: argparse.Namespace, app: App) -> int:
    Target(node_id=args.node, subtree=args.subtree, tree_ids=tuple(args.tree), place=args.place).check()
    store = app.store  # ids may be given by a prefix, as everywhere on the command line
    node_id = store.resolve_node_id(args.node) if args.node else None
    trees = tuple(store.resolve_tree_id(t) for t in args.tree)
    target = Target(node_id=node_id, subtree=args.subtree, tree_ids=trees, place=args.place)
    report = forget(app, target, cleanups())
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    print("\n".join(report.lines()))
    return 0
