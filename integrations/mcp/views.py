"""What a client key may see, and the store work behind the MCP routes.

A key sees what an offer made in its scope may retrieve (:func:`ambient.scopes.view_for`): its
own wall (``key:NAME`` by default: only the key's own trees), plus whatever the person opened to
it in ``[memory.share]`` (e.g. ``"key:claude" = ["notes"]``). A key added with a bare scope
(``ambient keys add NAME --scope NAME``) stands behind the private wall and so sees the person's
notes, speech and typed text: that too is the person's explicit choice.

A node or tree outside the view is answered exactly like one that does not exist, so a key cannot
even learn that it is there. Blocking (SQLite): call these from a worker thread.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ambient.config import MemorySection
from ambient.errors import NotFound
from ambient.keys import Key
from ambient.scopes import View, view_for, wall_of
from ambient.store import TreeStore
from ambient.tree import HUMAN, Author, Node, Offer, Tree

VIA = "mcp"  # recorded in the meta of the trees `offer_continuations` starts
ID_HINT = "take ids from search_multiverse, list_trees or offer_continuations"


def view_of(key: Key, memory: MemorySection) -> View:
    """What ``key`` may see: its scope's walls and what ``[memory.share]`` opens to it."""
    return view_for(key.scope, memory.share, memory.include_pruned)


def sees(view: View, scope: str) -> bool:
    """Whether a tree in ``scope`` stands within ``view`` (the same rule as :func:`ambient.scopes.where`)."""
    return wall_of(scope) in view.walls or scope in view.scopes


def no_node(node_id: str) -> NotFound:
    return NotFound(f"no node {node_id!r} that this key may see: {ID_HINT}")


# ------------------------------------------------------------------ trees
def tree_brief(tree: Tree) -> dict[str, Any]:
    return {
        "id": tree.id,
        "title": tree.title,
        "root_id": tree.root_id,
        "source": tree.source,
        "scope": tree.scope,
        "created_at": tree.created_at,
        "updated_at": tree.updated_at,
    }


def visible_trees(store: TreeStore, view: View, limit: int) -> dict[str, Any]:
    """The trees ``view`` sees, most recently changed first: the first ``limit``, and how many in all."""
    trees = [t for t in store.list_trees() if sees(view, t.scope)]
    return {"trees": [tree_brief(t) for t in trees[:limit]], "total": len(trees)}


# ------------------------------------------------------------------ nodes
def node_brief(node: Node) -> dict[str, Any]:
    return {
        "id": node.id,
        "parent_id": node.parent_id,
        "text": node.text,
        "author": node.author.kind,
        "status": str(node.status),
        "created_at": node.created_at,
    }


def node_view(store: TreeStore, view: View, node_id: str) -> dict[str, Any]:
    """A node the key may see, with its tree, the path from the root to it, its children and provenance."""
    try:
        node = store.get_node(node_id)
        tree = store.get_tree(node.tree_id)
    except NotFound:
        raise no_node(node_id) from None
    if not sees(view, tree.scope):
        raise no_node(node_id)  # the same answer as for no node at all
    path = store.ancestry(node_id)
    full = node.as_dict(tokens=False)
    full["author"] = node.author.as_dict()
    return {
        "tree": tree_brief(tree),
        "node": {**full, "provenance": provenance(node.provenance, view)},
        "ancestry": [node_brief(n) for n in path[:-1]],  # root first, the node's parent last
        "children": [node_brief(c) for c in store.children(node_id)],
    }


def provenance(recorded: dict[str, Any] | None, view: View) -> dict[str, Any] | None:
    """How the node came to be, less any retrieved fragment from a place the key may not see now."""
    if not recorded:
        return recorded
    shown = dict(recorded)
    if isinstance(shown.get("retrieved"), list):
        shown["retrieved"] = _visible_records(shown["retrieved"], view)
    cut = shown.get("cut")
    if isinstance(cut, dict) and isinstance(cut.get("fragments"), list):
        shown["cut"] = {**cut, "fragments": _visible_records(cut["fragments"], view)}
    return shown


def _visible_records(records: list[Any], view: View) -> list[Any]:
    return [r for r in records if isinstance(r, dict) and sees(view, str(r.get("scope", "")))]


# ------------------------------------------------------------------ offers
def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def tree_for(store: TreeStore, key: Key, text: str) -> tuple[Tree, Node]:
    """The key's tree whose root is ``text`` (asked again, offered again there), or a new one.

    It stands in the key's place: source ``key:NAME`` and the key's scope, written by the key.
    """
    digest = _digest(text)
    for tree in store.list_trees(key.tree_source):
        if tree.scope == key.scope and tree.meta.get("text_sha256") == digest:
            root = store.get_node(tree.root_id)
            if root.text == text:
                return tree, root
    return store.create_tree(
        text,
        source=key.tree_source,
        scope=key.scope,
        author=Author(HUMAN, key.tree_source),
        meta={"client": key.name, "via": VIA, "text_sha256": digest},
    )


def offered(store: TreeStore, tree: Tree, offer: Offer) -> dict[str, Any]:
    """What an offer gives the person to read: its continuations, each with its node id."""
    nodes = [store.get_node(i) for i in offer.node_ids]
    return {
        "tree_id": tree.id,
        "parent_id": offer.parent_id,
        "offer_id": offer.id,
        "continuations": [{"node_id": n.id, "branch": n.branch, "text": n.text} for n in nodes],
    }
