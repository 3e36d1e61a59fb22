"""What people do to nodes: pick, edit (keeping revisions), prune, bookmark, tag.

Each action is written to the ``actions`` table (the pick log) in the same
transaction as the change it records.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ambient.errors import Conflict
from ambient.store.nodes import NodeStore
from ambient.store.rows import action_from_row, dumps, revision_from_row
from ambient.tree import Action, Node, Revision, Status, now


class ActionLog(NodeStore):
    """Human actions on nodes, the revisions table and the pick log."""

    def pick(self, node_id: str, data: dict[str, Any] | None = None) -> Node:
        """A person chose this node (its ancestors become picked too)."""
        path = self.ancestry(node_id)
        with self._tx() as db:
            version = self._next_version(db)
            for n in path:
                if n.status != Status.PICKED:
                    db.execute(
                        "UPDATE nodes SET status = 'picked', updated_at = ?, version = ? WHERE id = ?",
                        (now(), version, n.id),
                    )
            self._log(db, Action.PICK, path[-1], data)
        node = self.get_node(node_id)
        self._notify("updated", [node])
        return node

    def edit(self, node_id: str, text: str) -> Node:
        """Replace a node's text, keeping every earlier text as a revision."""
        node = self.get_node(node_id)
        if text == node.text:
            return node
        with self._tx() as db:
            rev = db.execute(
                "SELECT coalesce(max(rev), 0) FROM revisions WHERE node_id = ?", (node_id,)
            ).fetchone()[0]
            db.execute(
                "INSERT INTO revisions VALUES (?, ?, ?, ?)", (node_id, rev + 1, node.text, node.updated_at)
            )
            db.execute(
                "UPDATE nodes SET text = ?, tokens = NULL, updated_at = ?, version = ? WHERE id = ?",
                (text, now(), self._next_version(db), node_id),
            )
            self._log(db, Action.EDIT, node, {"before": node.text, "after": text})
        node = self.get_node(node_id)
        self._notify("updated", [node])
        return node

    def revisions(self, node_id: str) -> list[Revision]:
        self.get_node(node_id)
        rows = self._query("SELECT * FROM revisions WHERE node_id = ? ORDER BY rev", (node_id,))
        return [revision_from_row(r) for r in rows]

    def prune(self, node_id: str, pruned: bool = True) -> Node:
        node = self.get_node(node_id)
        if node.parent_id is None and pruned:
            raise Conflict("the root of a tree cannot be pruned: prune its children instead")
        status = Status.PRUNED if pruned else Status.OFFERED
        with self._tx() as db:
            db.execute(
                "UPDATE nodes SET status = ?, updated_at = ?, version = ? WHERE id = ?",
                (status, now(), self._next_version(db), node_id),
            )
            self._log(db, Action.PRUNE if pruned else Action.UNPRUNE, node, None)
        node = self.get_node(node_id)
        self._notify("updated", [node])
        return node

    def bookmark(self, node_id: str, on: bool = True) -> Node:
        node = self.get_node(node_id)
        with self._tx() as db:
            db.execute(
                "UPDATE nodes SET bookmarked = ?, updated_at = ? WHERE id = ?", (int(on), now(), node_id)
            )
            self._log(db, Action.BOOKMARK if on else Action.UNBOOKMARK, node, None)
        return self.get_node(node_id)

    def tag(self, node_id: str, tag: str, on: bool = True) -> Node:
        node = self.get_node(node_id)
        tags = [t for t in node.tags if t != tag] + ([tag] if on else [])
        with self._tx() as db:
            db.execute(
                "UPDATE nodes SET tags = ?, updated_at = ? WHERE id = ?", (dumps(tags), now(), node_id)
            )
            self._log(db, Action.TAG if on else Action.UNTAG, node, {"tag": tag})
        return self.get_node(node_id)

    def update_meta(self, node_id: str, meta: dict[str, Any]) -> Node:
        node = self.get_node(node_id)
        with self._tx() as db:
            db.execute("UPDATE nodes SET meta = ? WHERE id = ?", (dumps({**node.meta, **meta}), node_id))
        return self.get_node(node_id)

    def record(self, action: Action, node_id: str, data: dict[str, Any] | None = None) -> None:
        """Log an action taken outside the store (e.g. a continuation accepted into a note)."""
        node = self.get_node(node_id)
        with self._tx() as db:
            self._log(db, action, node, data)

    def _log(self, db: sqlite3.Connection, action: Action, node: Node, data: dict[str, Any] | None) -> None:
        db.execute(
            "INSERT INTO actions (at, action, node_id, offer_id, data) VALUES (?, ?, ?, ?, ?)",
            (now(), action, node.id, node.offer_id, dumps(data or {})),
        )

    def actions(self, offer_id: str | None = None) -> list[dict[str, Any]]:
        if offer_id is None:
            rows = self._query("SELECT * FROM actions ORDER BY id")
        else:
            rows = self._query("SELECT * FROM actions WHERE offer_id = ? ORDER BY id", (offer_id,))
        return [action_from_row(r) for r in rows]
