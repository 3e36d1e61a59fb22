"""Notes commands: ``ambient accept NODE`` and ``ambient offers NOTE``.

``accept`` is the one way (with the web UI's button) a continuation enters a
note, and only because a person asked: see :mod:`integrations.notes.accept`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ambient.app import App
from ambient.errors import NotFound
from ambient.store import TreeStore
from ambient.tree import Action, Node, Offer, Tree
from integrations.notes.accept import accept_node
from integrations.notes.history import NoteHistory, tree_source
from integrations.notes.notes import line_col
from integrations.notes.walls import Walls


def register(sub: Any) -> None:
    p = sub.add_parser(
        "accept",
        help="take an offered continuation into its note",
        description="Insert an offered continuation into its note, at the point it was offered for "
        "(an atomic write that keeps the file's mode). Refuses, changing nothing, if the note has changed "
        "around that point since, if it is saved at that very moment, or if it is not in a watched folder "
        "([sources.notes] folders).",
    )
    p.add_argument("node", help="node id of the continuation (a prefix of at least 4 characters is enough)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_accept)

    p = sub.add_parser(
        "offers",
        help="the current offers for a note",
        description="List the continuations offered at the point where the note was last being written.",
    )
    p.add_argument("note", help="path of the note")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_offers)


def cmd_accept(args: argparse.Namespace, app: App) -> int:
    node_id = app.store.resolve_node_id(args.node)
    result = accept_node(app.store, node_id, Walls.from_config(app.config))
    if args.json:
        print(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
        return 0
    moved = "; the point had moved and was found again" if result.relocated else ""
    print(
        f"accepted {node_id[:12]} into {result.path} at line {result.line}, column {result.column} "
        f"({len(result.inserted)} characters{moved})"
    )
    return 0


def cmd_offers(args: argparse.Namespace, app: App) -> int:
    store = app.store
    tree = find_note_tree(store, args.note)
    payload = offers_payload(store, tree)
    if args.json:
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return 0
    _print_offers(payload)
    return 0


def find_note_tree(store: TreeStore, note: str) -> Tree:
    """The tree of the note at ``note`` (as the daemon named it: its folder's real path)."""
    path = Path(note).expanduser()
    candidates = [
        Path(os.path.realpath(path.parent)) / path.name,
        Path(os.path.realpath(path)),
        Path(os.path.abspath(path)),
    ]
    for candidate in dict.fromkeys(str(c) for c in candidates):
        tree = store.find_tree(tree_source(candidate))
        if tree is not None:
            return tree
    raise NotFound(
        f"no offers for {note} yet: it must be in a watched folder ([sources.notes] folders) and saved "
        "while `ambient run` is running"
    )


def offers_payload(store: TreeStore, tree: Tree) -> dict[str, Any]:
    point, offers = NoteHistory(store).current_offers(tree)
    payload: dict[str, Any] = {"note": tree.meta.get("path"), "tree_id": tree.id, "point": None, "offers": []}
    if point is None:
        return payload
    before = "".join(n.text for n in store.ancestry(point.id))
    line, column = line_col(before, len(before))
    payload["point"] = {
        "node_id": point.id,
        "at": point.meta.get("point"),
        "line": line,
        "column": column,
        "version": point.meta.get("version"),
        "before": before[-80:],
    }
    payload["offers"] = [_offer_payload(store, offer) for offer in offers]
    return payload


def _offer_payload(store: TreeStore, offer: Offer) -> dict[str, Any]:
    accepted = {a["node_id"] for a in store.actions(offer.id) if a["action"] == Action.ACCEPT}
    nodes: list[Node] = [store.get_node(i) for i in offer.node_ids]
    return {
        "offer_id": offer.id,
        "state": str(offer.state),
        "created_at": offer.created_at,
        "continuations": [
            {"node_id": n.id, "text": n.text, "status": str(n.status), "accepted": n.id in accepted}
            for n in nodes
        ],
    }


def _print_offers(payload: dict[str, Any]) -> None:
    point = payload["point"]
    if point is None or not payload["offers"]:
        print(f"{payload['note']}: no offers yet (save the note while `ambient run` is running)")
        return
    print(f"{payload['note']}  version {point['version']}, at line {point['line']}, column {point['column']}")
    for offer in payload["offers"]:
        state = "" if offer["state"] == "done" else f" ({offer['state']})"
        for c in offer["continuations"]:
            mark = " [accepted]" if c["accepted"] else ""
            print(f"\n── {c['node_id'][:12]}{state}{mark} " + "─" * 40)
            print(c["text"])
    print("\ntake one into the note with: ambient accept NODE")
