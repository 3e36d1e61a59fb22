"""Trees and their nodes: creating, reading and walking them, and importing whole trees.

Every node write takes a new value of the ``node_version`` counter, so derived
views (the memory index) can catch up with :meth:`NodeStore.nodes_since`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from ambient.errors import InvalidInput, NotFound
from ambient.sampling.base import Token
from ambient.store.connection import StoreConnection
from ambient.store.rows import (
    NODE_COLUMNS,
    TREE_COLUMNS,
    dumps,
    node_from_row,
    node_to_row,
    tree_from_row,
    tree_to_row,
)
from ambient.tree import HUMAN, Author, Node, Status, Tree, new_id, now

_ID_CHARS = re.compile(r"[A-Za-z0-9-]+")


class NodeStore(StoreConnection):
    """The trees and nodes tables."""

    def _next_version(self, db: sqlite3.Connection) -> int:
        db.execute("UPDATE counters SET value = value + 1 WHERE name = 'node_version'")
        return int(db.execute("SELECT value FROM counters WHERE name = 'node_version'").fetchone()[0])

    # ------------------------------------------------------------------ trees
    def create_tree(
        self,
        text: str,
        *,
        title: str = "",
        source: str = "cli",
        scope: str = "cli",
        author: Author | None = None,
        meta: dict[str, Any] | None = None,
        tree_id: str | None = None,
        root_id: str | None = None,
    ) -> tuple[Tree, Node]:
        """A new tree whose root holds ``text`` (written by a person unless said otherwise).

        ``scope`` is the wall the tree stands behind (:mod:`ambient.scopes`), given by its place.
        """
        tree_id = tree_id or new_id()
        root_id = root_id or new_id()
        t = now()
        title = title or _title_from(text)
        with self._tx() as db:
            db.execute(
                f"INSERT INTO trees ({TREE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (tree_id, root_id, title, source, t, t, dumps(meta or {}), scope),
            )
            root = self._insert_node(
                db, tree_id, None, text, author or Author(HUMAN), Status.PICKED, node_id=root_id
            )
        self._notify("created", [root])
        return self.get_tree(tree_id), root

    def get_tree(self, tree_id: str) -> Tree:
        rows = self._query("SELECT * FROM trees WHERE id = ?", (tree_id,))
        if not rows:
            raise NotFound(f"no tree {tree_id!r}: list trees with `ambient show` or `ambient trees`")
        return tree_from_row(rows[0])

    def list_trees(self, source: str | None = None) -> list[Tree]:
        if source is None:
            rows = self._query("SELECT * FROM trees ORDER BY updated_at DESC")
        else:
            rows = self._query("SELECT * FROM trees WHERE source = ? ORDER BY updated_at DESC", (source,))
        return [tree_from_row(r) for r in rows]

    def find_tree(self, source: str) -> Tree | None:
        rows = self._query("SELECT * FROM trees WHERE source = ? ORDER BY created_at LIMIT 1", (source,))
        return tree_from_row(rows[0]) if rows else None

    def update_tree_meta(self, tree_id: str, meta: dict[str, Any]) -> Tree:
        tree = self.get_tree(tree_id)
        with self._tx() as db:
            db.execute(
                "UPDATE trees SET meta = ?, updated_at = ? WHERE id = ?",
                (dumps({**tree.meta, **meta}), now(), tree_id),
            )
        return self.get_tree(tree_id)

    def tree_nodes(self, tree_id: str) -> list[Node]:
        self.get_tree(tree_id)
        rows = self._query(
            f"SELECT {NODE_COLUMNS} FROM nodes WHERE tree_id = ? ORDER BY created_at, rowid", (tree_id,)
        )
        return [node_from_row(r) for r in rows]

    # ------------------------------------------------------------------ nodes
    def _insert_node(
        self,
        db: sqlite3.Connection,
        tree_id: str,
        parent_id: str | None,
        text: str,
        author: Author,
        status: Status,
        *,
        node_id: str | None = None,
        offer_id: str | None = None,
        branch: int | None = None,
        tokens: Sequence[Token] | None = None,
        provenance: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
        tags: Sequence[str] = (),
        bookmarked: bool = False,
        created_at: float | None = None,
    ) -> Node:
        t = created_at if created_at is not None else now()
        node = Node(
            id=node_id or new_id(),
            tree_id=tree_id,
            parent_id=parent_id,
            text=text,
            author=author,
            status=status,
            created_at=t,
            updated_at=t,
            offer_id=offer_id,
            branch=branch,
            bookmarked=bookmarked,
            tags=tuple(tags),
            tokens=tuple(tokens) if tokens is not None else None,
            provenance=provenance,
            meta=meta or {},
        )
        db.execute(
            f"INSERT INTO nodes ({NODE_COLUMNS}, version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (*node_to_row(node), self._next_version(db)),
        )
        db.execute("UPDATE trees SET updated_at = ? WHERE id = ?", (t, tree_id))
        return node

    def add_node(
        self,
        parent_id: str,
        text: str,
        *,
        author: Author | None = None,
        status: Status = Status.PICKED,
        meta: dict[str, Any] | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> Node:
        """A child written by a person (or imported) under ``parent_id``."""
        parent = self.get_node(parent_id)
        with self._tx() as db:
            node = self._insert_node(
                db,
                parent.tree_id,
                parent.id,
                text,
                author or Author(HUMAN),
                status,
                meta=meta,
                provenance=provenance,
            )
        self._notify("created", [node])
        return node

    def get_node(self, node_id: str) -> Node:
        rows = self._query(f"SELECT {NODE_COLUMNS} FROM nodes WHERE id = ?", (node_id,))
        if not rows:
            raise NotFound(f"no node {node_id!r}: check the id with `ambient show TREE`")
        return node_from_row(rows[0])

    def resolve_node_id(self, prefix: str) -> str:
        """Full id of the one node whose id starts with ``prefix`` (ids can be shortened)."""
        if len(prefix) < 4:
            raise InvalidInput(f"node id {prefix!r} is too short: give at least 4 characters")
        rows = self._query("SELECT id FROM nodes WHERE id LIKE ? LIMIT 2", (_like_prefix(prefix),))
        if not rows:
            raise NotFound(f"no node {prefix!r}: check the id with `ambient show TREE`")
        if len(rows) > 1:
            raise InvalidInput(f"node id {prefix!r} is ambiguous: give more characters")
        return str(rows[0][0])

    def resolve_tree_id(self, prefix: str) -> str:
        if len(prefix) < 4:
            raise InvalidInput(f"tree id {prefix!r} is too short: give at least 4 characters")
        rows = self._query("SELECT id FROM trees WHERE id LIKE ? LIMIT 2", (_like_prefix(prefix),))
        if len(rows) == 1:
            return str(rows[0][0])
        if rows:
            raise InvalidInput(f"tree id {prefix!r} is ambiguous: give more characters")
        raise NotFound(f"no tree {prefix!r}: list trees with `ambient trees`")

    def children(self, node_id: str, include_pruned: bool = True) -> list[Node]:
        self.get_node(node_id)
        sql = f"SELECT {NODE_COLUMNS} FROM nodes WHERE parent_id = ?"
        if not include_pruned:
            sql += " AND status != 'pruned'"
        rows = self._query(sql + " ORDER BY created_at, branch, rowid", (node_id,))
        return [node_from_row(r) for r in rows]

    def siblings(self, node_id: str) -> list[Node]:
        node = self.get_node(node_id)
        if node.parent_id is None:
            return []
        return [n for n in self.children(node.parent_id) if n.id != node_id]

    def ancestry(self, node_id: str) -> list[Node]:
        """The path from the root to ``node_id``, both included."""
        rows = self._query(
            f"""
            WITH RECURSIVE path(id, depth) AS (
                SELECT id, 0 FROM nodes WHERE id = ?
                UNION ALL
                SELECT n.parent_id, path.depth + 1 FROM nodes n JOIN path ON n.id = path.id
                WHERE n.parent_id IS NOT NULL
            )
            SELECT {NODE_COLUMNS} FROM nodes JOIN path USING (id) ORDER BY path.depth DESC
            """,
            (node_id,),
        )
        if not rows:
            raise NotFound(f"no node {node_id!r}: check the id with `ambient show TREE`")
        return [node_from_row(r) for r in rows]

    def full_text(self, node_id: str) -> str:
        """The text of the whole branch from the root down to ``node_id``."""
        return "".join(n.text for n in self.ancestry(node_id))

    def nodes_since(self, version: int, limit: int = 1000) -> list[tuple[int, Node]]:
        """Nodes created or changed after ``version`` (for incremental indexing)."""
        rows = self._query(
            f"SELECT version, {NODE_COLUMNS} FROM nodes WHERE version > ? ORDER BY version LIMIT ?",
            (version, limit),
        )
        return [(int(r["version"]), node_from_row(r)) for r in rows]

    def node_count(self) -> int:
        return int(self._query("SELECT count(*) FROM nodes")[0][0])

    def iter_nodes(self, batch: int = 1000) -> Iterator[Node]:
        last = ""
        while True:
            rows = self._query(
                f"SELECT {NODE_COLUMNS} FROM nodes WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
            )
            if not rows:
                return
            for r in rows:
                yield node_from_row(r)
            last = rows[-1]["id"]

    # ---------------------------------------------------------------- import
    def import_nodes(self, tree: Tree, nodes: Sequence[Node]) -> None:
        """Insert a whole tree at once (Loom import); parents come before children."""
        with self._tx() as db:
            db.execute(f"INSERT INTO trees ({TREE_COLUMNS}) VALUES ({', '.join('?' * 8)})", tree_to_row(tree))
            self._insert_rows(db, nodes)
        self._notify("created", nodes)

    def import_nodes_into(self, tree_id: str, nodes: Sequence[Node]) -> None:
        """Add nodes (parents before children) to an existing tree."""
        self.get_tree(tree_id)
        with self._tx() as db:
            self._insert_rows(db, nodes)
            db.execute("UPDATE trees SET updated_at = ? WHERE id = ?", (now(), tree_id))
        self._notify("created", nodes)

    def _insert_rows(self, db: sqlite3.Connection, nodes: Sequence[Node]) -> None:
        for node in nodes:
            db.execute(
                f"INSERT INTO nodes ({NODE_COLUMNS}, version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*node_to_row(node), self._next_version(db)),
            )

    def node_exists(self, node_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM nodes WHERE id = ?", (node_id,)))

    def tree_exists(self, tree_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM trees WHERE id = ?", (tree_id,)))


def _like_prefix(prefix: str) -> str:
    if not _ID_CHARS.fullmatch(prefix):
        raise InvalidInput(f"{prefix!r} is not an id: ids are letters, digits and '-'")
    return prefix + "%"


def _title_from(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first[:80] or "untitled"
