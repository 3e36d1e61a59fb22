"""Where a client's prompt goes in its trees: a Loom session becomes one tree, not a pile of requests.

A Loom sends the whole text every time: the prompt it sent before, one of the choices it got
back, maybe the person's own words after it. So a new prompt is followed down the key's trees
(source ``key:NAME``) as far as it matches, node by node:

* from a tree whose root text begins the prompt, into the child whose text continues it (the
  longest such child), and so on;
* a prompt that stops inside a choice whose rest is only whitespace (clients that strip trailing
  spaces) ends in that choice;
* the deepest node reached is where the offer goes; if that node is a choice the model offered,
  the client went on from it: that is recorded as an implicit pick (``via: key:NAME``);
* what is left of the prompt (text the person wrote) becomes a node of its own under it;
* a prompt no tree begins starts a new tree, in the key's scope.

Nothing else is ever picked on the client's behalf. Blocking: SQLite; run it in a worker thread.
"""

from __future__ import annotations

import dataclasses
import hashlib

from ambient.keys import Key
from ambient.store import TreeStore
from ambient.tree import HUMAN, Author, Node, Status


@dataclasses.dataclass(frozen=True)
class Placed:
    """Where a prompt went: the node to offer at, and what placing it did."""

    node_id: str
    tree_id: str
    new_tree: bool = False
    picked: str | None = None  # the offered choice the prompt went on from (now picked)
    written: str | None = None  # the node holding the text the prompt adds after the match


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def place(store: TreeStore, key: Key, prompt: str) -> Placed:
    """Put ``prompt`` into ``key``'s trees (see the module docstring)."""
    author = Author(HUMAN, key.tree_source)
    found = _deepest(store, key, prompt)
    if found is None:
        meta = {"client": key.name, "root_sha256": _digest(prompt), "root_chars": len(prompt)}
        tree, root = store.create_tree(
            prompt, source=key.tree_source, scope=key.scope, author=author, meta=meta
        )
        return Placed(root.id, tree.id, new_tree=True)
    node, rest = found
    picked = None
    if node.author.is_model and node.status == Status.OFFERED:
        store.pick(node.id, {"via": key.tree_source, "implicit": True})
        picked = node.id
    if not rest:
        return Placed(node.id, node.tree_id, picked=picked)
    written = store.add_node(node.id, rest, author=author)
    return Placed(written.id, node.tree_id, picked=picked, written=written.id)


def _deepest(store: TreeStore, key: Key, prompt: str) -> tuple[Node, str] | None:
    """The deepest node whose text from its root begins ``prompt``, and the rest of the prompt."""
    best: tuple[Node, str] | None = None
    for tree in store.list_trees(key.tree_source):
        chars = tree.meta.get("root_chars")
        if not isinstance(chars, int) or chars > len(prompt):
            continue
        if tree.meta.get("root_sha256") != _digest(prompt[:chars]):
            continue
        root = store.get_node(tree.root_id)
        if not prompt.startswith(root.text):  # edited since: its hash no longer says what it holds
            continue
        found = _walk(store, root, prompt)
        if best is None or len(found[1]) < len(best[1]):
            best = found
    return best


def _walk(store: TreeStore, node: Node, prompt: str) -> tuple[Node, str]:
    at = len(node.text)
    while True:
        children = [c for c in store.children(node.id) if c.text]
        fits = [c for c in children if prompt.startswith(c.text, at)]
        if not fits:
            rest = prompt[at:]
            inside = [
                c for c in children if rest and c.text.startswith(rest) and not c.text[len(rest) :].strip()
            ]
            if inside:  # the prompt stops inside a choice, before whitespace only
                return _preferred(inside), ""
            return node, rest
        node = _preferred(fits)
        at += len(node.text)


def _preferred(nodes: list[Node]) -> Node:
    """The longest; then a person's choice over an offer; then the newest."""
    return max(nodes, key=lambda n: (len(n.text), n.status == Status.PICKED, n.created_at))
