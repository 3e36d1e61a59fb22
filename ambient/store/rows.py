"""Row mapping: SQLite rows to and from the data classes of :mod:`ambient.tree`.

JSON columns (author, tags, tokens, provenance, meta, settings, data) are
written compactly and without ASCII escaping.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from ambient.sampling.base import Token
from ambient.tree import Author, Node, Offer, OfferState, Revision, Status, Tree

# The ``nodes`` columns every node query selects, in the order of :func:`node_to_row`
# (``version`` is kept apart: it is the store's change counter, not part of a Node).
NODE_COLUMNS = (
    "id, tree_id, parent_id, text, author, status, offer_id, branch, bookmarked, tags, "
    "tokens, provenance, meta, created_at, updated_at"
)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


TREE_COLUMNS = "id, root_id, title, source, created_at, updated_at, meta, scope"


def tree_to_row(tree: Tree) -> tuple[Any, ...]:
    """The values of a ``trees`` row, in column order."""
    return (
        tree.id,
        tree.root_id,
        tree.title,
        tree.source,
        tree.created_at,
        tree.updated_at,
        dumps(tree.meta),
        tree.scope,
    )


def tree_from_row(r: sqlite3.Row) -> Tree:
    return Tree(
        id=r["id"],
        root_id=r["root_id"],
        title=r["title"],
        source=r["source"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        meta=json.loads(r["meta"]),
        scope=r["scope"],
    )


def node_to_row(node: Node) -> tuple[Any, ...]:
    """The values of :data:`NODE_COLUMNS` for ``node``."""
    return (
        node.id,
        node.tree_id,
        node.parent_id,
        node.text,
        dumps(node.author.as_dict()),
        str(node.status),
        node.offer_id,
        node.branch,
        int(node.bookmarked),
        dumps(list(node.tags)),
        dumps([t.as_dict() for t in node.tokens]) if node.tokens is not None else None,
        dumps(node.provenance) if node.provenance is not None else None,
        dumps(node.meta),
        node.created_at,
        node.updated_at,
    )


def node_from_row(r: sqlite3.Row) -> Node:
    return Node(
        id=r["id"],
        tree_id=r["tree_id"],
        parent_id=r["parent_id"],
        text=r["text"],
        author=Author.from_dict(json.loads(r["author"])),
        status=Status(r["status"]),
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        offer_id=r["offer_id"],
        branch=r["branch"],
        bookmarked=bool(r["bookmarked"]),
        tags=tuple(json.loads(r["tags"])),
        tokens=tuple(Token.from_dict(t) for t in json.loads(r["tokens"])) if r["tokens"] else None,
        provenance=json.loads(r["provenance"]) if r["provenance"] else None,
        meta=json.loads(r["meta"]),
    )


def offer_from_row(r: sqlite3.Row, node_ids: tuple[str, ...]) -> Offer:
    return Offer(
        id=r["id"],
        tree_id=r["tree_id"],
        parent_id=r["parent_id"],
        state=OfferState(r["state"]),
        settings=json.loads(r["settings"]),
        created_at=r["created_at"],
        finished_at=r["finished_at"],
        error=r["error"],
        meta=json.loads(r["meta"]),
        node_ids=node_ids,
    )


def revision_from_row(r: sqlite3.Row) -> Revision:
    return Revision(r["node_id"], r["rev"], r["text"], r["edited_at"])


def action_from_row(r: sqlite3.Row) -> dict[str, Any]:
    """A pick-log entry as a dict of its columns, with ``data`` decoded."""
    return {**dict(r), "data": json.loads(r["data"])}
