"""What every importer shares: draft trees, their checks, and writing them to the store in one go.

An importer turns a file into :class:`DraftTree` objects and never touches the
store; :func:`check_parents` refuses a missing parent or a cycle before anything
is written; :func:`write_trees` then creates each tree in one transaction (or
merges into the tree a previous import of the same file made) and, if a later
tree fails, forgets the ones it made, so a file is imported whole or not at all.

Ids: a tree's id and its nodes' ids are derived (uuid5) from a key the format
keeps stable across saves (its first root's id) and each node's own id, so
importing the same file again merges: new nodes are added, changed texts
edited (the old text kept as a revision).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ambient.errors import InvalidInput
from ambient.sampling.base import Token
from ambient.store import TreeStore
from ambient.tree import HUMAN, MODEL, Author, Node, Status, Tree, now

NAMESPACE = uuid.UUID("6c6f6f6d-616d-6269-656e-740000000002")

# How sure an importer is of who wrote a node (``meta["authorship"]``).
RECORDED = "recorded"  # the file says so
INFERRED = "inferred"  # the format's own behaviour implies it (``meta["authorship_reason"]`` says how)
UNKNOWN = "unknown"  # the file does not say; kept as model text (never passed off as the person's)


@dataclasses.dataclass
class DraftNode:
    """One node as the file has it, before it becomes an ambient :class:`Node`."""

    source_id: str  # the id in the file
    parent: str | None  # the parent's id in the file (None: a root)
    text: str
    author: Author
    authorship: str  # RECORDED, INFERRED or UNKNOWN
    chosen: bool = False  # on the path the person had chosen (Loom's current node, Tapestry's active path)
    bookmarked: bool = False
    created_at: float | None = None
    tokens: tuple[Token, ...] | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DraftTree:
    """One tree of a file: its nodes in any order (:func:`check_parents` orders them)."""

    key: str  # stable across saves of the same document: the tree's and nodes' ids derive from it
    title: str
    source: str  # Tree.source: "loomsidian", "tapestry"
    nodes: list[DraftNode]
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def tree_id(self) -> str:
        return uuid.uuid5(NAMESPACE, f"{self.key}/tree").hex

    def node_id(self, source_id: str | None) -> str:
        return uuid.uuid5(NAMESPACE, f"{self.key}/node/{source_id}").hex


@dataclasses.dataclass
class Imported:
    """What one import did: each tree with its counts, and what the file had that ambient does not keep."""

    format: str
    trees: list[tuple[Tree, dict[str, int]]]
    not_kept: list[str] = dataclasses.field(default_factory=list)

    def totals(self) -> dict[str, int]:
        keys = ("nodes", "added", "edited", "unchanged")
        return {k: sum(counts[k] for _, counts in self.trees) for k in keys}


# --------------------------------------------------------------------------- authorship
def unknown_author(is_root: bool) -> tuple[Author, str, str]:
    """Who wrote a node the file says nothing about: (author, authorship, reason).

    A root is the text the person started from. Any other node is kept as model
    text with ``authorship = "unknown"``: passing a model's words off as the
    person's is the worse mistake (retrieval and tuning treat a person's text as
    theirs), and a model node is never overwritten by an edit.
    """
    if is_root:
        return Author(HUMAN, ""), INFERRED, "a root is the text the person started from"
    return Author(MODEL, ""), UNKNOWN, "the file does not record who wrote it"


# --------------------------------------------------------------------------- checks
def check_parents(what: str, nodes: Sequence[DraftNode]) -> list[DraftNode]:
    """``nodes`` with every parent before its children; InvalidInput for a missing parent or a cycle.

    ``what`` names the document for the message ("notes/a.md in data.json").
    """
    by_id: dict[str, DraftNode] = {}
    for node in nodes:
        if node.source_id in by_id:
            raise InvalidInput(f"{what}: node {node.source_id} appears twice: the file is damaged")
        by_id[node.source_id] = node
    for node in nodes:
        if node.parent is not None and node.parent not in by_id:
            raise InvalidInput(
                f"{what}: the parent {node.parent} of node {node.source_id} is missing: the file is damaged"
            )
    ordered: list[DraftNode] = []
    done: set[str] = set()
    for node in nodes:
        path: list[DraftNode] = []
        on_path: set[str] = set()
        current: DraftNode | None = node
        while current is not None and current.source_id not in done:
            if current.source_id in on_path:
                cycle = [n.source_id for n in path[[n.source_id for n in path].index(current.source_id) :]]
                raise InvalidInput(
                    f"{what}: nodes {', '.join(cycle[:5])} are each other's ancestors (a cycle): "
                    "the file is damaged"
                )
            path.append(current)
            on_path.add(current.source_id)
            current = by_id[current.parent] if current.parent is not None else None
        for n in reversed(path):
            ordered.append(n)
            done.add(n.source_id)
    return ordered


def single_root(tree: DraftTree, ordered: list[DraftNode]) -> list[DraftNode]:
    """``ordered`` under one root: several roots hang under an empty root made for them.

    An ambient tree has one root; loomsidian notes and Tapestry weaves may have several.
    """
    roots = [n for n in ordered if n.parent is None]
    if len(roots) == 1:
        return ordered
    if not roots:
        raise InvalidInput(f"{tree.title!r} has no nodes: there is nothing to import")
    top = DraftNode(
        source_id=f"{tree.key}#root",
        parent=None,
        text="",
        author=Author(HUMAN, ""),
        authorship=INFERRED,
        chosen=True,
        meta={"synthetic_root": True, "roots": len(roots)},
    )
    for root in roots:
        root.parent = top.source_id
    return [top, *ordered]


# --------------------------------------------------------------------------- writing
def to_nodes(tree: DraftTree, ordered: Iterable[DraftNode], t: float) -> list[Node]:
    """The ambient nodes of ``tree`` (parents first), with status from authorship and the chosen path."""
    nodes = []
    for d in ordered:
        status = Status.PICKED if d.chosen or not d.author.is_model else Status.OFFERED
        meta = {**d.meta, "source_id": d.source_id, "authorship": d.authorship}
        nodes.append(
            Node(
                id=tree.node_id(d.source_id),
                tree_id=tree.tree_id,
                parent_id=tree.node_id(d.parent) if d.parent is not None else None,
                text=d.text,
                author=d.author,
                status=status,
                created_at=d.created_at or t,
                updated_at=t,
                bookmarked=d.bookmarked,
                tokens=d.tokens,
                meta=meta,
            )
        )
    return nodes


def write_trees(
    store: TreeStore, drafts: Sequence[tuple[DraftTree, list[DraftNode]]]
) -> list[tuple[Tree, dict[str, int]]]:
    """Create (or merge into) each tree; a tree made here is forgotten again if a later one fails.

    ``drafts`` pairs each tree with its nodes ordered by :func:`check_parents` and
    :func:`single_root`. Everything is checked before the first write.
    """
    t = now()
    plans = [_plan(store, tree, to_nodes(tree, ordered, t)) for tree, ordered in drafts]
    created: list[str] = []
    results: list[tuple[Tree, dict[str, int]]] = []
    try:
        for plan in sorted(plans, key=lambda p: p.existing is not None):  # new trees first, merges last
            results.append(plan.run(store))
            if plan.existing is None:
                created.append(plan.tree.id)
    except BaseException:
        if created:
            store.forget_trees(created)
        raise
    order = {p.tree.id: i for i, p in enumerate(plans)}
    return sorted(results, key=lambda r: order[r[0].id])


@dataclasses.dataclass
class _Plan:
    tree: Tree
    nodes: list[Node]
    existing: Mapping[str, Node] | None  # the nodes of the tree an earlier import made

    def run(self, store: TreeStore) -> tuple[Tree, dict[str, int]]:
        if self.existing is None:
            store.import_nodes(self.tree, self.nodes)
            return self.tree, {
                "nodes": len(self.nodes),
                "added": len(self.nodes),
                "edited": 0,
                "unchanged": 0,
            }
        new = [n for n in self.nodes if n.id not in self.existing]
        changed = [n for n in self.nodes if n.id in self.existing and self.existing[n.id].text != n.text]
        for node in changed:
            store.edit(node.id, node.text)
        if new:
            store.import_nodes_into(self.tree.id, new)
        counts = {
            "nodes": len(self.nodes),
            "added": len(new),
            "edited": len(changed),
            "unchanged": len(self.nodes) - len(new) - len(changed),
        }
        return store.get_tree(self.tree.id), counts


def _plan(store: TreeStore, draft: DraftTree, nodes: list[Node]) -> _Plan:
    t = nodes[0].updated_at
    tree = Tree(draft.tree_id, nodes[0].id, draft.title[:80], draft.source, t, t, draft.meta, scope="import")
    if store.tree_exists(tree.id):
        existing = {n.id: n for n in store.tree_nodes(tree.id)}
        clash = next((n for n in nodes if n.id not in existing and store.node_exists(n.id)), None)
    else:
        existing = None
        clash = next((n for n in nodes if store.node_exists(n.id)), None)
    if clash is not None:
        other = store.get_node(clash.id).tree_id
        raise InvalidInput(
            f"node {clash.meta['source_id']} of {draft.title!r} is already in tree {other[:12]}: "
            f"forget that tree first (`ambient forget --tree {other[:12]}`) to import it again"
        )
    return _Plan(tree, nodes, existing)


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
