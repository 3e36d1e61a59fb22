"""Memory commands: search (find past fragments by meaning) and reindex (rebuild from the trees)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ambient import places
from ambient.app import App
from ambient.commands.progress import nodes_bar, shown
from ambient.context import Fragment
from ambient.errors import MemoryUnavailable, NotFound
from ambient.memory_api import MemoryIndexProtocol
from ambient.scopes import view_for
from ambient.tree import Node


def register(sub: Any) -> None:
    p = sub.add_parser(
        "search",
        help="find past fragments by meaning",
        description="Find nodes of every tree (picked, offered, pruned, imported) by what they mean.",
    )
    p.add_argument("query", help="what to look for, in any words (at most 2000 characters)")
    p.add_argument("-k", type=int, default=5, help="how many results (1..200, default 5)")
    p.add_argument("--status", choices=["picked", "offered", "pruned"], help="only nodes with this status")
    p.add_argument("--source", help="only trees from this source (e.g. loom, cli, note:PATH)")
    p.add_argument(
        "--scope",
        metavar="PLACE",
        help="only what an offer made in PLACE could retrieve, PLACE written as trees name their source "
        "(e.g. note:PATH, discord:SERVER/CHANNEL, speech:SESSION, ui, cli)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "reindex",
        help="rebuild the memory index from the trees",
        description="Rebuild the memory index from the SQLite store; a damaged index folder is moved aside.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_reindex)


def _memory(app: App) -> MemoryIndexProtocol:
    return app.require_memory()


def cmd_search(args: argparse.Namespace, app: App) -> int:
    from ambient.memory import check_query

    query = check_query(args.query)
    memory = _memory(app)
    app.index_pending()  # nodes written since the last sync become findable first
    view = None
    if args.scope is not None:
        share, pruned = app.config.memory.share, app.config.memory.include_pruned
        view = view_for(places.scope_of(args.scope, app.config.home), share, pruned)
    fragments = memory.search(query, args.k, status=args.status, source=args.source, view=view)
    results = [r for r in (_result(app, f) for f in fragments) if r is not None]
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
        return 0
    if app.memory_warning:
        print(f"warning: {app.memory_warning}", file=sys.stderr)
    if not results:
        print("nothing found: import or write some trees first, or try other words")
    for i, r in enumerate(results, 1):
        print(
            f"{i}. {r['score']:.3f}  node {r['node_id'][:12]}  tree {r['tree_id'][:12]}  "
            f"{r['status']}  {r['source']}  [{r['scope']}]"
        )
        print("   path: " + " > ".join(a[:8] for a in r["ancestry"]))
        print("   " + _preview(r["lead"], r["text"]))
    return 0


def _result(app: App, fragment: Fragment) -> dict[str, Any] | None:
    """A search result with its path from the root, read from the store (the source of truth)."""
    try:
        ancestry: list[Node] = app.store.ancestry(fragment.node_id)
    except NotFound:  # deleted since it was indexed; `ambient reindex` drops such entries
        return None
    node = ancestry[-1]
    return {
        "node_id": node.id,
        "tree_id": node.tree_id,
        "text": node.text,
        "score": round(fragment.score, 4),
        "ancestry": [n.id for n in ancestry],
        "status": str(node.status),
        "source": fragment.source,
        "scope": fragment.scope,
        "lead": fragment.lead,
    }


def _preview(lead: str, text: str, width: int = 160) -> str:
    flat_text = " ".join(text.split())
    flat_lead = " ".join(lead.split())
    if len(flat_text) >= width:
        return flat_text[: width - 1] + "…"
    room = width - len(flat_text) - 4
    before = ("…" + flat_lead[-room:] + " ") if flat_lead and room > 10 else ""
    return f"{before}[[{flat_text}]]"


def cmd_reindex(args: argparse.Namespace, app: App) -> int:
    from ambient.memory import reindex

    if not app.config.memory.enabled:
        raise MemoryUnavailable("memory is off (memory.enabled = false): set it to true to build the index")
    store = app.store
    total = store.node_count()

    with nodes_bar(total, "indexing", shown(args.json)) as progress:
        result = reindex(app.config, store, progress)
    if args.json:
        payload = {
            "nodes": result.nodes,
            "embedded": result.embedded,
            "seconds": round(result.seconds, 2),
            "moved_aside": str(result.moved_aside) if result.moved_aside else None,
        }
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return 0
    if result.moved_aside:
        print(f"moved the damaged index aside to {result.moved_aside} (delete it when you no longer need it)")
    where = app.config.memory.url or app.config.memory_dir
    print(f"rebuilt the memory index in {where}: {result.nodes} nodes, {result.embedded} embedded")
    return 0
