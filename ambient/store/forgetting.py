"""Forgetting: removing a node, a subtree or whole trees from the store, with every trace of their text.

What goes with a node: its row, its revisions (earlier texts), the pick-log
rows that name it (an edit's row holds the text before and after), and the
offers made at it when its subtree goes too. A node forgotten alone is spliced
out: its children (and the offers made at it) move up to its parent, and get a
new version so that derived data (the memory index) rebuilds them. A root is
its tree: forget the tree. Each call is one transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Iterable, Iterator, Sequence

from ambient.errors import Conflict
from ambient.store.nodes import NodeStore
from ambient.tree import now


@dataclasses.dataclass
class Forgotten:
    """What one forgetting removed (ids), and what it changed."""

    node_ids: list[str] = dataclasses.field(default_factory=list)
    tree_ids: list[str] = dataclasses.field(default_factory=list)  # trees removed whole
    moved_ids: list[str] = dataclasses.field(default_factory=list)  # children moved up to the parent
    touched_tree_ids: list[str] = dataclasses.field(default_factory=list)  # trees that lost nodes
    offers: int = 0
    actions: int = 0
    revisions: int = 0

    def add(self, other: Forgotten) -> None:
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            setattr(self, field.name, mine + theirs)


class Forgetting(NodeStore):
    """Removing nodes and trees (layered on the nodes table)."""

    def forget_node(self, node_id: str, *, subtree: bool = False) -> Forgotten:
        """Remove one node (spliced out) or, with ``subtree``, the node and everything below it."""
        node = self.get_node(node_id)
        if node.parent_id is None:
            raise Conflict(
                f"node {node_id[:12]} is the root of its tree: forget the tree instead "
                "(ambient forget --tree)"
            )
        with self._scrubbing(), self._tx() as db:
            if subtree:
                ids = _subtree(db, node_id)
                done = _remove_nodes(db, ids)
            else:
                done = _splice(db, node_id, node.parent_id, self._next_version(db))
            done.touched_tree_ids = [node.tree_id]
        return done

    def forget_trees(self, tree_ids: Iterable[str]) -> Forgotten:
        """Remove whole trees (their nodes, offers, revisions and pick-log rows)."""
        ids = list(dict.fromkeys(tree_ids))
        for tree_id in ids:
            self.get_tree(tree_id)  # an unknown id is a NotFound naming the fix
        done = Forgotten()
        with self._scrubbing(), self._tx() as db:
            for tree_id in ids:
                nodes = [r[0] for r in db.execute("SELECT id FROM nodes WHERE tree_id = ?", (tree_id,))]
                done.add(_remove_nodes(db, nodes))
                done.offers += db.execute("DELETE FROM offers WHERE tree_id = ?", (tree_id,)).rowcount
                db.execute("DELETE FROM trees WHERE id = ?", (tree_id,))
                done.tree_ids.append(tree_id)
        return done

    @contextlib.contextmanager
    def _scrubbing(self) -> Iterator[None]:
        """Deleted text is overwritten in the file, and the write-ahead log emptied, once forgotten."""
        with self._lock:
            self._db.execute("PRAGMA secure_delete = ON")
            try:
                yield
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.execute("PRAGMA secure_delete = OFF")

    def trees_of_place(self, place: str) -> list[str]:
        """The trees of a place: those whose source is ``place``, or whose scope is ``place``."""
        rows = self._query(
            "SELECT id FROM trees WHERE source = ? OR scope = ? ORDER BY created_at", (place, place)
        )
        return [r[0] for r in rows]


def _subtree(db: sqlite3.Connection, node_id: str) -> list[str]:
    rows = db.execute(
        "WITH RECURSIVE below(id) AS (SELECT ? UNION ALL "
        "SELECT n.id FROM nodes n JOIN below b ON n.parent_id = b.id) SELECT id FROM below",
        (node_id,),
    )
    return [r[0] for r in rows]


def _splice(db: sqlite3.Connection, node_id: str, parent_id: str, version: int) -> Forgotten:
    moved = [r[0] for r in db.execute("SELECT id FROM nodes WHERE parent_id = ?", (node_id,))]
    db.execute(
        "UPDATE nodes SET parent_id = ?, version = ?, updated_at = ? WHERE parent_id = ?",
        (parent_id, version, now(), node_id),
    )
    db.execute("UPDATE offers SET parent_id = ? WHERE parent_id = ?", (parent_id, node_id))
    done = _remove_nodes(db, [node_id], keep_offers=True)
    done.moved_ids = moved
    return done


def _remove_nodes(db: sqlite3.Connection, ids: Sequence[str], keep_offers: bool = False) -> Forgotten:
    """Delete ``ids`` (children before parents) with their revisions and the pick-log rows naming them."""
    done = Forgotten(node_ids=list(ids))
    db.execute("PRAGMA defer_foreign_keys = ON")  # parents, children and their offers go together
    for chunk in _chunks(ids):
        marks = ", ".join("?" * len(chunk))
        done.revisions += db.execute(f"DELETE FROM revisions WHERE node_id IN ({marks})", chunk).rowcount
        done.actions += db.execute(f"DELETE FROM actions WHERE node_id IN ({marks})", chunk).rowcount
        for node_id in chunk:  # an edit's row names the new node in its data, with both texts
            done.actions += db.execute("DELETE FROM actions WHERE data LIKE ?", (f'%"{node_id}"%',)).rowcount
        if not keep_offers:
            done.offers += db.execute(f"DELETE FROM offers WHERE parent_id IN ({marks})", chunk).rowcount
    for chunk in _chunks(ids):
        db.execute(f"DELETE FROM nodes WHERE id IN ({', '.join('?' * len(chunk))})", chunk)
    return done


def _chunks(ids: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]
